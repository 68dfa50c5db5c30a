"""Group commit: the writes a node makes while handling one batch of network input reach the
disk as one atomic RocksDB write batch, before any reply to them leaves the process.

The core writes synchronously (``put``, ``write``): the writes only gather in a *pending* batch
in memory. The runtime's flush step, once per loop iteration and before it writes any frame,
calls :meth:`start_commit`:

* without ``sync`` (the default) it *seals* the pending batch and writes it at once, on the
  caller's thread: a write-ahead-log append into the page cache, a few microseconds, so the
  loop does it itself. It returns None: the batch is in the log when it returns;
* with ``sync`` the batches are written and fsynced by one worker thread, because an fsync may
  take milliseconds (or, on a sick disk, seconds) that must not stall the event loop and get
  the node suspected by its peers. At most one batch is in flight: while it is, new writes keep
  gathering in the pending batch, and the worker seals and writes all of them as soon as it is
  done — so each fsync covers everything that arrived during the one before (real group
  commit). ``start_commit`` returns a ``concurrent.futures.Future`` that completes once every
  write made so far is durable; the runtime holds the frames of that iteration until then.

Invariants:

* batches are written in the order they were sealed, one at a time: by the worker alone with
  ``sync``, by the caller alone without. So a future that completed means every batch sealed
  before its own is durable too;
* reads see every write made, durable or not: ``get`` looks at the pending batch, then the
  sealed ones newest first, then the base store; ``scan`` merges the pending and sealed batches
  over the base store's scan, so it never waits for the disk;
* a sealed batch stays readable here until it is in the base store (it leaves ``_sealed`` only
  after it is written);
* after a failed write nothing more is written: every later commit fails with
  :class:`CommitFailed`, so no batch is made durable around a hole. The writes not written were
  never acknowledged (the runtime holds their frames), so dropping them breaks no promise.

Threads (``sync`` only): the caller (the event loop) adds to ``_pending``; the worker seals it.
Both happen under ``_lock``, so no write lands in a batch already sealed. A seal appends the
batch to ``_sealed`` *before* it replaces ``_pending``, and readers, who take no lock, read
``_pending`` *before* ``_sealed``: a reader sees a batch once or twice, never not at all.
``_sealed`` is a tuple, replaced and never changed; a sealed batch is never changed.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from ring.core.layout import Storage
from ring.storage.base import scan_bounds

_DELETED = object()

Batch = dict[bytes, object]  # key -> value (bytes), or _DELETED


class CommitFailed(Exception):
    """A commit after an earlier one failed (the cause): nothing more is written."""


class GroupCommitStorage:
    def __init__(self, base: Storage, *, sync: bool = False) -> None:
        self.base = base
        self.sync = sync
        self._pending: Batch = {}
        self._sealed: tuple[Batch, ...] = ()  # sealed, not yet in the base store; oldest first
        self._lock = threading.Lock()
        # With sync: the future of the pending batch (made when a caller first waits for it),
        # of the newest sealed one, and whether the worker is writing.
        self._next: Future[None] | None = None
        self._newest: Future[None] | None = None
        self._draining = False
        self._worker: ThreadPoolExecutor | None = None
        self.error: BaseException | None = None  # the first failed write; nothing after it
        self.commits = 0
        self._closed = False

    # --- reads ---------------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        value = self._pending.get(key)
        if value is None:
            sealed = self._sealed
            if sealed:
                value = _newest_in(sealed, key)
            if value is None:
                return self.base.get(key)
        return None if value is _DELETED else value  # type: ignore[return-value]

    def scan(
        self,
        prefix: bytes | None = None,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        overlay = self._overlay(*scan_bounds(prefix, start, stop), reverse)
        if not overlay:
            return self.base.scan(prefix, start, stop, reverse, limit)
        # Without a limit on the base scan: some of its keys may be deleted in the overlay.
        merged = _merge(self.base.scan(prefix, start, stop, reverse), overlay, reverse)
        return _live(merged, limit)

    def _overlay(
        self, lower: bytes | None, upper: bytes | None, reverse: bool
    ) -> list[tuple[bytes, object]]:
        """The writes not yet in the base store within ``[lower, upper)``, newest value per
        key, in scan order."""
        pending = self._pending  # before _sealed: see the module docstring
        newest: Batch = {}
        for batch in (*self._sealed, pending):  # oldest first: newer values overwrite
            for key, value in batch.items():
                if (lower is None or key >= lower) and (upper is None or key < upper):
                    newest[key] = value
        return sorted(newest.items(), key=operator.itemgetter(0), reverse=reverse)

    # --- writes --------------------------------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> None:
        if self.sync:
            with self._lock:
                self._pending[key] = value
        else:
            self._pending[key] = value

    def write(
        self,
        puts: Iterable[tuple[bytes, bytes]],
        deletes: Iterable[bytes] = (),
        *,
        sync: bool = False,
    ) -> None:
        with self._lock:
            pending = self._pending
            for key in deletes:
                pending[key] = _DELETED
            for key, value in puts:
                pending[key] = value
        if sync:
            # A write that asks to be on disk when it returns (node identity) does not wait for
            # the next flush step: it goes, with everything pending, in one synced batch.
            self._commit_now(sync=True)

    # --- commits -------------------------------------------------------------------------------

    def start_commit(self) -> Future[None] | None:
        """Start making every write made so far durable (the runtime's flush step).

        Returns None when that is done already: without ``sync`` the writes are in the log on
        return; with ``sync`` when nothing is pending or in flight. Otherwise a future that
        completes when every write made so far is durable, or fails with the write's error (the
        same future for every call until the worker seals the pending batch). Raises if the
        write done here fails, and :class:`CommitFailed` after a failure.
        """
        if not self.sync:
            self._commit_now(sync=False)
            return None
        if self.error is not None:
            raise CommitFailed("an earlier commit failed; nothing more is written") from self.error
        with self._lock:
            if not self._pending:
                newest = self._newest
                return newest if newest is not None and not newest.done() else None
            if self._next is None:
                self._next = Future()
            future, start = self._next, not self._draining
            self._draining = True
        if start:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="ringkv-commit")
            self._worker.submit(self._drain)
        return future

    def commit(self) -> None:
        """Make every write made so far durable before returning (with ``sync``, by the worker,
        waiting for it)."""
        self._commit_now(sync=self.sync)

    def _commit_now(self, *, sync: bool) -> None:
        if self.sync:
            future = self.start_commit()
            if future is not None:
                future.result()
            return
        batch = self._seal()
        if batch is not None:
            self._write(batch, sync)
        elif self.error is not None:
            raise CommitFailed("an earlier commit failed; nothing more is written") from self.error

    def _drain(self) -> None:
        """The worker: seal and write the pending batch until none is left (each write covers
        everything that arrived during the one before), completing each batch's future."""
        while True:
            with self._lock:
                batch = self._pending
                if not batch:
                    self._draining = False
                    return
                done = self._next if self._next is not None else Future()
                self._sealed = (*self._sealed, batch)
                self._pending, self._next, self._newest = {}, None, done
            try:
                self._write(batch, True)
            except Exception as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)

    def _seal(self) -> Batch | None:
        with self._lock:
            pending = self._pending
            if not pending:
                return None
            self._sealed = (*self._sealed, pending)
            self._pending = {}
        return pending

    def _write(self, batch: Batch, sync: bool) -> None:
        """Write the oldest sealed batch to the base store, then stop keeping it here."""
        if self.error is not None:
            raise CommitFailed("an earlier commit failed; nothing more is written") from self.error
        puts = [(k, v) for k, v in batch.items() if v is not _DELETED]
        deletes = [k for k, v in batch.items() if v is _DELETED]
        try:
            self.base.write(puts, deletes, sync=sync)  # type: ignore[arg-type]
        except Exception as exc:
            self.error = exc
            raise
        with self._lock:
            assert self._sealed[0] is batch, "batches are written in the order they were sealed"
            self._sealed = self._sealed[1:]
        self.commits += 1

    def close(self) -> None:
        """Write everything pending and in flight, stop the worker, close the base store.

        After a failed commit, the writes that were not written are dropped (see the module
        docstring) and the base store is closed all the same."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.error is None:
                self.commit()
        finally:
            if self._worker is not None:
                self._worker.shutdown(wait=True)  # after a failure: the worker's last round
            self.base.close()


def _newest_in(sealed: tuple[Batch, ...], key: bytes) -> object | None:
    for batch in reversed(sealed):
        value = batch.get(key)
        if value is not None:
            return value
    return None


def _merge(
    base: Iterator[tuple[bytes, bytes]],
    overlay: list[tuple[bytes, object]],
    reverse: bool,
) -> Iterator[tuple[bytes, object]]:
    """Merge two streams sorted in scan order; on equal keys the overlay's value wins."""
    ahead = operator.gt if reverse else operator.lt
    i, n = 0, len(overlay)
    for key, value in base:
        while i < n and ahead(overlay[i][0], key):
            yield overlay[i]
            i += 1
        if i < n and overlay[i][0] == key:
            yield overlay[i]
            i += 1
        else:
            yield key, value
    yield from overlay[i:]


def _live(
    items: Iterator[tuple[bytes, object]], limit: int | None
) -> Iterator[tuple[bytes, bytes]]:
    """The items that are not deletions, at most ``limit`` of them."""
    if limit is not None and limit <= 0:
        return
    n = 0
    for key, value in items:
        if value is _DELETED:
            continue
        yield key, value  # type: ignore[misc]
        n += 1
        if limit is not None and n >= limit:
            return
