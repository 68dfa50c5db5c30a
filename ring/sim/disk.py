"""A simulated disk that loses what a real one loses.

``ringd`` writes through a group-commit buffer (``ring.storage.group``) into RocksDB: a write
the core makes sits in memory until the runtime commits the loop iteration's batch to the
write-ahead log, just before any frame goes out; without ``--sync`` the log is in the page cache
until the operating system writes it back; with ``--sync`` each batch is fsynced. ``SimDisk``
keeps the same three layers, so the simulator can take from a node exactly what each fault
takes:

* **crash** (the process dies, ``kill -9``): the uncommitted buffer is lost; everything committed
  to the log survives;
* **power loss** (the machine dies): the buffer is lost, and so is a suffix of the batches
  committed since the last write-back (none, with ``sync``);
* **wipe** (the disk is lost): everything is lost — the world gives the node a new disk.

Reads see the buffer, then the committed state; a scan merges the buffer over the committed
state without committing it, as ``GroupCommitStorage.scan`` does. ``committed()`` is the state a
crash would leave, which is what the checkers call "held durably".
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator

from ring.storage.base import scan_bounds
from ring.storage.memory import MemoryStorage

_DELETED = None


class SimDisk:
    def __init__(self, *, sync: bool = False) -> None:
        self.sync = sync
        self._state = MemoryStorage()  # the committed state (what the log holds)
        self._synced = MemoryStorage()  # what a power loss leaves, before replaying the log tail
        self._unsynced: list[list[tuple[bytes, bytes | None]]] = []  # batches since write-back
        self._pending: dict[bytes, bytes | None] = {}
        self.commits = 0
        self.on_commit: Callable[[], None] = lambda: None  # told of every commit

    # --- the Storage protocol (what the node sees) ---------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        if key in self._pending:
            return self._pending[key]
        return self._state.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._pending[key] = value

    def write(
        self,
        puts: Iterable[tuple[bytes, bytes]],
        deletes: Iterable[bytes] = (),
        *,
        sync: bool = False,
    ) -> None:
        for key in deletes:
            self._pending[key] = _DELETED
        for key, value in puts:
            self._pending[key] = value
        if sync:
            # A write that must be on disk when it returns (node identity): the buffer before it
            # is committed with it, and the log is synced up to here.
            self.commit()
            self.write_back()

    def scan(
        self,
        prefix: bytes | None = None,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        # The buffer over the committed state, without committing it (as GroupCommitStorage).
        lower, upper = scan_bounds(prefix, start, stop)
        merged = dict(self._state.scan(prefix, start, stop))
        for key, value in self._pending.items():
            if (lower is None or key >= lower) and (upper is None or key < upper):
                merged[key] = value  # type: ignore[assignment]
        keys = sorted((k for k, v in merged.items() if v is not None), reverse=reverse)
        if limit is not None:
            keys = keys[:limit]
        return iter([(k, merged[k]) for k in keys])

    def close(self) -> None:
        self.commit()

    # --- what the world does with it -----------------------------------------------------------

    def commit(self) -> None:
        """The runtime's group commit: the buffer becomes one batch in the log."""
        if not self._pending:
            return
        batch, self._pending = list(self._pending.items()), {}
        _apply(self._state, batch)
        self._unsynced.append(batch)
        self.commits += 1
        self.on_commit()
        if self.sync:
            self.write_back()

    def write_back(self) -> None:
        """The log reaches the platter (an fsync, or the operating system's write-back)."""
        for batch in self._unsynced:
            _apply(self._synced, batch)
        self._unsynced = []

    def crash(self) -> None:
        self._pending = {}

    def power_loss(self, rng: random.Random) -> int:
        """Lose the buffer and a suffix of the batches not yet written back; returns how many
        batches were lost."""
        self._pending = {}
        keep = rng.randint(0, len(self._unsynced))
        lost = len(self._unsynced) - keep
        for batch in self._unsynced[:keep]:
            _apply(self._synced, batch)
        self._unsynced = []
        self._state = MemoryStorage()
        _apply(self._state, list(self._synced.scan()))
        return lost

    def committed(self) -> MemoryStorage:
        """The state a crash would leave: read-only use, please."""
        return self._state


def _apply(target: MemoryStorage, batch: Iterable[tuple[bytes, bytes | None]]) -> None:
    for key, value in batch:
        if value is None:
            target.write((), [key])
        else:
            target.put(key, value)
