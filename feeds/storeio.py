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
    encode_entry,
    encode_header,
    merge_entry,
    merge_header,
)
from ring.common import KVStore

_GONE = EntryRecord(None, (), (), removed=1)


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

    def read_entry(self, entry_id: bytes) -> Node | None:
        """The entry's record; a removed-looking node for a tombstone; ``None`` if the store
        knows nothing of the key."""
        v = self.store.get_versioned(self.keys.entries + entry_id)
        if not v.values:
            return Node(entry_id, _GONE, v.context, 0) if v.context else None
        return Node(entry_id, merge_entry(v.values), v.context, len(v.values))

    def read_header(self) -> HeaderView:
        v = self.store.get_versioned(self.keys.header)
        if not v.values:
            return HeaderView(EMPTY_HEADER, v.context, 0)
        return HeaderView(merge_header(v.values, self.log_limit), v.context, len(v.values))

    def new_entry(self, entry_id: bytes, rec: EntryRecord) -> None:
        # A fresh id names a key nobody has written: a put without context is exact here.
        self.store.put(self.keys.entries + entry_id, encode_entry(rec))

    def write_entry(self, node: Node, rec: EntryRecord) -> None:
        self.store.put(self.keys.entries + node.id, encode_entry(rec), context=node.context)

    def write_header(self, view: HeaderView, rec: HeaderRecord) -> None:
        self.store.put(self.keys.header, encode_header(rec), context=view.context)

    def delete_entry(self, node: Node) -> None:
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
