"""The feed layer's view of a store: typed reads and writes of one feed's records.

Every read is ``get_versioned``, so every sibling is seen and merged (``feeds.records``), and
every rewrite of an existing record carries the context of the read it is based on, so it
supersedes exactly what was read — a concurrent write it did not see survives as a sibling.

Reading an entry has three outcomes, and the difference matters: a record (live or removed); a
*tombstone* (the key was deleted: the store still knows it, so the entry is known to be gone);
or *nothing known* — on a cluster, possibly an entry whose record has not reached the replicas
this read asked. Only the first two let a writer drop a link to that entry (see ``walk``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from feeds.counter import Judge, Op, add_op, remove_op
from feeds.ids import FeedKeys, hts_of
from feeds.records import (
    EMPTY_HEADER,
    EntryRecord,
    HeaderRecord,
    decode_entry,
    encode_entry,
    encode_header,
    merge_entry,
    merge_header,
)
from ring.common import KVStore, Versioned

_GONE = EntryRecord(None, (), (), removed=1)
_UNKNOWN = Versioned((), b"", None)
READ_AHEAD_MIN = 16
READ_AHEAD_MAX = 512


@dataclass(slots=True)
class Node:
    """An entry as read: its merged record, the context to write back with, and how many
    siblings it had (0 for a tombstone: a deleted record)."""

    id: bytes
    rec: EntryRecord
    context: bytes
    siblings: int

    @property
    def deleted(self) -> bool:
        return self.siblings == 0


@dataclass(slots=True)
class HeaderView:
    rec: HeaderRecord
    context: bytes
    siblings: int


class FeedIO:
    """Reads and writes the records of one feed."""

    def __init__(self, store: KVStore, keys: FeedKeys, log_limit: int) -> None:
        self.store = store
        self.keys = keys
        self.log_limit = log_limit
        # Read-ahead (``read_ahead``): entries read by one versioned scan, not yet asked for.
        self._scan = getattr(store, "scan_versioned", None)
        self._forward: bool | None = None
        self._ahead: dict[bytes, Versioned] = {}
        self._ahead_n = READ_AHEAD_MIN

    def read_ahead(self, forward: bool, limit: int | None = None) -> None:
        """Read entries ahead in walk order from here on, where the store can scan with
        versions (the embedded store): an entry asked for that was not read ahead starts a scan
        from it of the next 16 entries, doubling up to 512 while the walk uses up each run it
        read. Each entry is then what the store held at that scan, which is what a
        lookup at that moment would have returned: a walk's reads were never one snapshot.
        The walk's own writes drop what they change. ``limit``: the walk
        reads about that many entries."""
        if self._scan is not None:
            self._forward = forward
            self._ahead_n = READ_AHEAD_MIN if limit is None else max(1, min(READ_AHEAD_MIN, limit))

    def _read_ahead(self, entry_id: bytes) -> Versioned:
        assert self._scan is not None
        ahead, prefix = self._ahead, self.keys.entries
        if ahead:  # the walk left the run it was reading: start small again
            self._ahead_n = READ_AHEAD_MIN
            ahead.clear()
        if self._forward:
            pairs = self._scan(
                prefix=prefix, start=prefix + entry_id, limit=self._ahead_n, tombstones=True
            )
        else:
            pairs = self._scan(
                prefix=prefix,
                stop=prefix + entry_id + b"\x00",
                reverse=True,
                limit=self._ahead_n,
                tombstones=True,
            )
        n = len(prefix)
        for key, v in pairs:
            ahead[key[n:]] = v
        got = ahead.pop(entry_id, _UNKNOWN)
        self._ahead_n = min(READ_AHEAD_MAX, self._ahead_n * 2)
        return got

    def read_entry(self, entry_id: bytes) -> Node | None:
        """The entry's record; a removed-looking node for a tombstone; ``None`` if the store
        knows nothing of the key."""
        if self._forward is None:
            v = self.store.get_versioned(self.keys.entries + entry_id)
        else:
            got = self._ahead.pop(entry_id, None)
            v = self._read_ahead(entry_id) if got is None else got
        values = v.values
        if len(values) == 1:
            return Node(entry_id, decode_entry(values[0]), v.context, 1)
        if not values:
            return Node(entry_id, _GONE, v.context, 0) if v.context else None
        return Node(entry_id, merge_entry(values), v.context, len(values))

    def read_header(self) -> HeaderView:
        v = self.store.get_versioned(self.keys.header)
        if not v.values:
            return HeaderView(EMPTY_HEADER, v.context, 0)
        return HeaderView(merge_header(v.values, self.log_limit), v.context, len(v.values))

    def new_entry(self, entry_id: bytes, rec: EntryRecord) -> None:
        # A fresh id names a key nobody has written: a put without context is exact here.
        self._ahead.pop(entry_id, None)
        self.store.put(self.keys.entries + entry_id, encode_entry(rec))

    def write_entry(self, node: Node, rec: EntryRecord) -> None:
        self._ahead.pop(node.id, None)
        self.store.put(self.keys.entries + node.id, encode_entry(rec), context=node.context)

    def write_header(self, view: HeaderView, rec: HeaderRecord) -> None:
        self.store.put(self.keys.header, encode_header(rec), context=view.context)

    def delete_entry(self, node: Node) -> None:
        self._ahead.pop(node.id, None)
        self.store.delete(self.keys.entries + node.id, context=node.context)

    def scan_ids(self, after: bytes | None, forward: bool) -> Iterator[bytes]:
        """Ids of the stored entry records strictly after ``after`` in walk order."""
        prefix, n = self.keys.entries, len(self.keys.entries)
        if forward:
            start = None if after is None else prefix + after + b"\x00"
            items = self.store.scan(prefix=prefix, start=start)
        else:
            stop = None if after is None else prefix + after
            items = self.store.scan(prefix=prefix, stop=stop, reverse=True)
        for key, _ in items:
            yield key[n:]


def count_ops(header: HeaderRecord, nodes: Iterable[Node], judge: Judge | None = None) -> list[Op]:
    """Operations the header has not counted although their effect is in the entry records —
    the traces of an add or remove that stopped between its writes (or has not written its
    header yet: naming the same operation, it will not be counted twice)."""
    judge = judge or header.tally.judge()
    ops = []
    for n in nodes:
        if n.deleted:
            continue
        op = add_op(n.id, hts_of(n.id))
        if not judge.knows(op):
            ops.append(op)
        if n.rec.removed:
            op = remove_op(n.id, n.rec.remover, n.rec.removed)
            if not judge.knows(op):
                ops.append(op)
    return ops
