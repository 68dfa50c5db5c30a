"""Moving partitions between members: transfers in, pages out, and cleaning up — pure.

The table (``ring.core.table``) says what each member must copy (``Table.inbound``: source ->
partitions) and what it must delete (``Table.to_clean``). This module does it:

* **Receiving** (pull). For each source a member still has to copy from, it asks for pages
  (``HandoffRequest``: the partitions, a cursor, a byte budget); the source answers a page of its
  records of those partitions in key order (``HandoffPage``), and the receiver merges each
  record with ``reconcile`` (clocks and siblings survive; a record it already has costs
  nothing), then asks for the next page after the cursor. Pages are throttled to
  ``rate_bytes_s``. A source that does not answer in ``PAGE_TIMEOUT_MS`` is asked again later
  from the same cursor (its records are durable; a restarted source resumes the stream); a
  receiver that restarts copies again from the start (merging is idempotent). When a source's
  stream ends, the receiver has every record the source held when it answered — and every write
  since, because writes go to the receiver too while the partition is pending. A partition
  copied from all its sources is reported to the claimant (``TransferDone``) until the table
  shows it.
* **Sending** (``page``): one page of the partitions asked for, in key order after the cursor:
  at most about ``max_bytes`` of records and ``SCAN_KEYS_PER_PAGE`` keys looked at.
* **Cleaning up**: a member in a partition's ``cleanup`` list deletes its copy (records of the
  partition it neither owns nor receives: checked again at every deletion), a bounded number of
  keys per tick, then reports it (``CleanupDone``) until the table shows it. Before it deletes
  anything the node takes a new actor epoch (``on_delete``): if a partition comes back to it,
  its copy comes from other replicas, which may lack its newest writes of a key, and a counter
  of the old actor reused for a new write would pass for one a replica already holds (kv679,
  as for a wiped disk).

Keys are stored by user key, not by partition, so a stream (and a cleanup pass) walks the whole
key space once, keeping the keys of its partitions; one stream per source carries all the
partitions it sends to this member.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ring.core import aae
from ring.core import messages as m
from ring.core.layout import DATA, Storage
from ring.core.table import Table

PAGE_BYTES = 1024 * 1024  # a page holds about this much
SCAN_KEYS_PER_PAGE = 20_000  # keys a source looks at for one page, at most
PAGE_TIMEOUT_MS = 1_500  # a page not answered by then is asked again (from the same cursor)
REPORT_EVERY_MS = 1_000  # how often an unacknowledged report is repeated
CLEAN_KEYS_PER_TICK = 5_000  # keys a cleanup pass looks at per tick
PROGRESS_LOG_MS = 10_000  # how often a node copying partitions logs its progress

Send = Callable[[str, Any, list[m.Effect]], None]
Merge = Callable[[bytes, bytes, list[m.Effect]], bool]
Delete = Callable[[list[tuple[bytes, bytes]]], None]


@dataclass(slots=True)
class Stream:
    source: str
    parts: set[int]
    after: bytes | None = None  # the last key the source looked at
    op_id: int = 0  # the page asked for, 0 when none is in flight
    asked_ms: int = 0
    done: bool = False


@dataclass(slots=True)
class Cleanup:
    parts: set[int]
    epoch: int  # the table the pass runs under
    after: bytes | None = None
    done: bool = False
    deleted: int = 0
    announced: bool = False  # on_delete was called


@dataclass(slots=True)
class Stats:
    received_bytes: int = 0
    received_records: int = 0
    sent_bytes: int = 0
    deleted_records: int = 0
    refused: int = 0  # records in pages that did not decode (skipped)
    log: list[m.Log] = field(default_factory=list)


def page(
    storage: Storage, partitions: set[int], table_partitions: int, after: bytes | None,
    max_bytes: int, segments: list[Any] | None = None,
) -> tuple[list[Any], bytes | None, bool]:  # fmt: skip
    """A source's page: ``([key, record, ...], cursor, finished)`` — of whole partitions (a
    transfer), or of some of their segments (``segments``, one bitmap per partition in sorted
    order: anti-entropy). The one stream of records both use (``ring.core.aae.page``)."""
    parts = sorted(partitions)
    if segments is None or len(segments) != len(parts):
        filt: dict[int, frozenset[int] | None] = dict.fromkeys(parts)
    else:
        filt = {p: aae.bits_segments(b) for p, b in zip(parts, segments)}
    return aae.page(storage, filt, table_partitions, after, max_bytes, SCAN_KEYS_PER_PAGE)


class Handoff:
    def __init__(
        self,
        name: str,
        storage: Storage,
        *,
        rate_bytes_s: int,
        first_op_id: int,
        send: Send,
        merge: Merge,
        delete: Delete,
        hold_cleanup: Callable[[], bool] = lambda: False,
        on_delete: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        # Called before a cleanup deletes its first record: the node takes a new actor epoch,
        # since a partition that comes back must not see it reuse counters it no longer has.
        self.on_delete = on_delete
        # While this returns true, deleted copies are not reported (a leaving member reports its
        # last ones once it handed off its hints: the claimant lets it go when it holds nothing).
        self.hold_cleanup = hold_cleanup
        self.storage = storage
        self.rate_bytes_s = max(1, rate_bytes_s)
        self.send = send
        self.merge = merge
        self.delete = delete  # (storage key, record) pairs, deleted through the replica
        self._next_op = first_op_id
        self.streams: dict[str, Stream] = {}  # source -> its stream to us
        self.copied: dict[str, set[int]] = {}  # source -> partitions fully copied from it
        self.cleanup: Cleanup | None = None
        # Partitions whose copy we deleted -> the epoch of the table we did it under (reported
        # until the table shows it; dropped if the partition's routing changed since).
        self.cleaned: dict[int, int] = {}
        self._next_page_ms = 0
        self._next_report_ms = 0
        self._next_progress_ms = 0
        self._epoch = 0
        self.stats = Stats()

    # --- the table changed ---------------------------------------------------------------------

    def refresh(self, table: Table) -> None:
        """Bring the work in line with ``table``: what is still to copy, and from whom."""
        self._epoch = table.epoch
        wanted = table.inbound(self.name)
        for source in list(self.streams):
            s = self.streams[source]
            s.parts &= wanted.get(source, set())
            if not s.parts:
                del self.streams[source]
        for source in list(self.copied):
            self.copied[source] &= wanted.get(source, set())
            if not self.copied[source]:
                del self.copied[source]
        for source, parts in sorted(wanted.items()):
            todo = parts - self.copied.get(source, set())
            stream = self.streams.get(source)
            if stream is None:
                if todo:
                    self.streams[source] = Stream(source, todo)
            elif todo - stream.parts:
                # New partitions for a stream under way: it starts again from the first key
                # (its keys before the cursor were not looked at for them); a page still in
                # flight is ignored.
                stream.parts |= todo
                stream.after, stream.op_id = None, 0
        to_clean = table.to_clean(self.name)
        self.cleaned = {
            p: e for p, e in self.cleaned.items() if p in to_clean and table.changed[p] <= e
        }
        to_clean -= self.cleaned.keys()
        if not to_clean:
            self.cleanup = None
        elif self.cleanup is None or not to_clean <= self.cleanup.parts:
            self.cleanup = Cleanup(to_clean, table.epoch)
        else:
            self.cleanup.parts &= to_clean

    def busy(self) -> bool:
        return bool(self.streams or self.cleanup)

    # --- timers --------------------------------------------------------------------------------

    def tick(
        self,
        now_ms: int,
        table: Table,
        alive: Callable[[str], bool],
        effects: list[m.Effect],
    ) -> None:
        for s in self.streams.values():
            if s.op_id and now_ms - s.asked_ms >= PAGE_TIMEOUT_MS:
                s.op_id = 0  # asked again below, from the same cursor
            if not s.op_id and not s.done and alive(s.source) and now_ms >= self._next_page_ms:
                self._ask(s, now_ms, effects)
        self._clean(table, effects)
        if self.streams and now_ms >= self._next_progress_ms:
            if self._next_progress_ms:
                waiting = ", ".join(
                    f"{len(s.parts)} from {s.source}" for s in self.streams.values()
                )
                st = self.stats
                text = (
                    f"transfers in progress ({waiting} partition(s)): "
                    f"{st.received_records} records, {st.received_bytes} bytes received so far"
                )
                fields = {
                    "partitions": waiting,
                    "received_records": st.received_records,
                    "received_bytes": st.received_bytes,
                }
                st.log.append(m.Log("info", text, "transfer_progress", fields))
            self._next_progress_ms = now_ms + PROGRESS_LOG_MS
        elif not self.streams:
            self._next_progress_ms = 0
        if now_ms >= self._next_report_ms:
            self._next_report_ms = now_ms + REPORT_EVERY_MS
            self._report(table, effects, force=True)

    def _ask(self, s: Stream, now_ms: int, effects: list[m.Effect]) -> None:
        self._next_op += 1
        s.op_id, s.asked_ms = self._next_op, now_ms
        if s.after is None:
            text = f"transfer from {s.source}: {len(s.parts)} partition(s), starting"
            fields = {"source": s.source, "partitions": len(s.parts)}
            self.stats.log.append(m.Log("info", text, "transfer_start", fields))
        msg = m.HandoffRequest(s.op_id, self._epoch, sorted(s.parts), s.after, PAGE_BYTES)
        self.send(s.source, msg, effects)

    # --- pages ---------------------------------------------------------------------------------

    def on_page(
        self, src: str, msg: m.HandoffPage, now_ms: int, table: Table, effects: list[m.Effect]
    ) -> None:
        s = self.streams.get(src)
        if s is None or s.op_id != msg.op_id or not isinstance(msg.items, list):
            return  # late, or for a stream that ended
        s.op_id = 0
        items = msg.items
        size = 0
        for key, raw in zip(items[0::2], items[1::2]):
            if not isinstance(key, bytes) or not isinstance(raw, bytes):
                self.stats.refused += 1
                continue
            p = table.partition_of(key)
            if p in s.parts and self.name in table.write_list(p):
                try:
                    self.merge(DATA + key, raw, effects)
                except ValueError:
                    # The source's copy does not decode: skipped (the other replicas of the key
                    # are whole; the transfer goes on rather than asking for it forever).
                    self.stats.refused += 1
                    continue
                size += len(key) + len(raw)
        self.stats.received_bytes += size
        self.stats.received_records += len(items) // 2
        s.after = msg.after if isinstance(msg.after, bytes) else s.after
        # Throttle: the next page waits as long as this one takes at the rate.
        self._next_page_ms = max(self._next_page_ms, now_ms) + size * 1000 // self.rate_bytes_s
        if msg.done is True:
            self.copied.setdefault(src, set()).update(s.parts)
            st = self.stats
            text = (
                f"transfer from {src}: {len(s.parts)} partition(s) copied "
                f"({st.received_records} records, {st.received_bytes} bytes received so far)"
            )
            fields = {
                "source": src,
                "partitions": len(s.parts),
                "received_records": st.received_records,
                "received_bytes": st.received_bytes,
            }
            st.log.append(m.Log("info", text, "transfer_done", fields))
            del self.streams[src]
            self._report(table, effects, force=False)
        elif now_ms >= self._next_page_ms:
            self._ask(s, now_ms, effects)

    def _report(self, table: Table, effects: list[m.Effect], *, force: bool) -> None:
        """Tell the claimant which partitions are copied from all their sources (and, with
        ``force``, which are cleaned), until the table shows it."""
        complete = [
            p
            for p in sorted(table.pending)
            if self.name in table.receivers(p)
            and self.name not in table.done.get(p, frozenset())
            and all(p in self.copied.get(src, ()) for src in table.sources(p, self.name))
        ]
        if complete:
            self.send(table.claimant, m.TransferDone(table.epoch, complete), effects)
        if force and self.cleaned and not self.hold_cleanup():
            self._report_cleaned(table, effects)

    def _report_cleaned(self, table: Table, effects: list[m.Effect]) -> None:
        by_epoch: dict[int, list[int]] = {}
        for p, e in sorted(self.cleaned.items()):
            by_epoch.setdefault(e, []).append(p)
        for e, parts in sorted(by_epoch.items()):
            self.send(table.claimant, m.CleanupDone(e, parts), effects)

    # --- cleanup -------------------------------------------------------------------------------

    def _clean(self, table: Table, effects: list[m.Effect]) -> None:
        c = self.cleanup
        if c is None or c.done:
            return
        start = DATA if c.after is None else DATA + c.after + b"\x00"
        deletes: list[tuple[bytes, bytes]] = []
        looked = 0
        for skey, raw in self.storage.scan(DATA, start, None, False, CLEAN_KEYS_PER_TICK):
            looked += 1
            key = skey[1:]
            c.after = key
            p = table.partition_of(key)
            if p in c.parts and self.name not in table.write_list(p):
                deletes.append((skey, raw))
        if deletes:
            if not c.announced:
                c.announced = True
                self.on_delete()
            self.delete(deletes)
            c.deleted += len(deletes)
            self.stats.deleted_records += len(deletes)
        if looked < CLEAN_KEYS_PER_TICK:
            c.done = True
            for p in c.parts:
                self.cleaned[p] = c.epoch
            text = (
                f"cleanup: deleted {c.deleted} record(s) of {len(c.parts)} partition(s) that "
                "moved away"
            )
            fields = {"deleted_records": c.deleted, "partitions": len(c.parts)}
            self.stats.log.append(m.Log("info", text, "cleanup_done", fields))
            if not self.hold_cleanup():
                self._report_cleaned(table, effects)
            self.cleanup = None
