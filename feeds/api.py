"""``Feeds``: the public operations. The rules they keep are in the package docstring.

Store operations per call on a feed whose records have no siblings (``tests/feeds`` counts
them; ``benchmarks/feeds.py`` prints them):

======================  ==============================================  =======
operation               reads, then writes                              total
======================  ==============================================  =======
add / append            header, end entry; new entry, header, end       2 + 3
add to an empty feed    header; new entry, header                       1 + 2
remove                  entry, header; entry (flag), header             2 + 2
get                     entry                                           1
count                   header                                          1
walk k entries          header, k entries                               k + 1
======================  ==============================================  =======

Siblings, removed entries still linked, or a crash's leftovers cost extra reads (and the writes
that repair them) on the next call that meets them, bounded by how many writers overlapped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from feeds import ids
from feeds.counter import LOG_LIMIT, Mark, Op, add_op, fix_op, remove_op
from feeds.records import EntryRecord, HeaderRecord, candidates, with_own
from feeds.repair import RepairReport, repair_feed
from feeds.storeio import FeedIO, KVStore
from feeds.walk import Walk
from ring.errors import InvalidInput

REAP_AFTER_S = 600.0


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a feed: its id (24 hex digits) and its data."""

    id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Page:
    """A page of a walk; pass ``next`` as ``cursor`` to get the following page (``None`` at
    the end)."""

    entries: list[Entry]
    next: str | None


def _data(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise InvalidInput(f"entry data must be bytes or str, not {type(data).__name__}")


MARKS_REMEMBERED = 4096


class _Author(threading.local):
    """One thread's identity as a writer: a random id, and per feed its mark — the newest of
    its own operations on the feed's count and their sum (``feeds.counter``). Knowing its mark
    itself, an author never needs to read its own header writes back, and an operation whose
    header write failed is still counted by its next one."""

    def __init__(self, fixed: bytes | None) -> None:
        self.id = fixed or ids.new_writer_id()
        self.marks: OrderedDict[bytes, Mark] = OrderedDict()

    def remember(self, feed: bytes, mark: Mark) -> None:
        self.marks[feed] = mark
        self.marks.move_to_end(feed)
        if len(self.marks) > MARKS_REMEMBERED:
            self.marks.popitem(last=False)


class Feeds:
    """Feeds stored in ``store`` (``ring.open(...)`` or ``ring.connect(...)``).

    Safe to share between threads; each thread writes as its own *author* (a random 4-byte id
    in the ids of the entries it makes), since an author's operations must be sequential.
    ``clock`` (microseconds) and ``writer`` (a fixed 4-byte author id) are for tests.
    """

    def __init__(
        self,
        store: KVStore,
        *,
        writer: bytes | None = None,
        clock: Callable[[], int] | None = None,
        log_limit: int = LOG_LIMIT,
        repair_on_walk: bool = True,
        reap_after_s: float = REAP_AFTER_S,
    ) -> None:
        if writer is not None and (not isinstance(writer, bytes) or len(writer) != 4):
            raise InvalidInput("writer must be 4 bytes")
        self.store = store
        self._author = _Author(writer)
        self.clock = ids.HybridClock(clock)
        self.log_limit = log_limit
        self.repair_on_walk = repair_on_walk
        self.reap_after_s = reap_after_s

    @property
    def writer(self) -> bytes:
        """The calling thread's author id."""
        return self._author.id

    def _io(self, feed_id: object) -> FeedIO:
        return FeedIO(self.store, ids.FeedKeys(feed_id), self.log_limit)

    def _count_own(self, io: FeedIO, rec: HeaderRecord, op: Op) -> HeaderRecord:
        """``rec`` with this author's operation counted. The author remembers its new mark
        before the header is written: the operation's entry write is done, so it counts."""
        me, feed = self._author, io.keys.header
        new, mark = with_own(rec, op, me.marks.get(feed), self.log_limit)
        me.remember(feed, mark)
        return new

    # --- writing -------------------------------------------------------------------------------

    def add(self, feed_id: object, data: Any) -> str:
        """Add an entry at the head (it becomes the first: newest first). Returns its id."""
        return self._insert(feed_id, _data(data), at_head=True)

    def append(self, feed_id: object, data: Any) -> str:
        """Add an entry at the tail (it becomes the last). Returns its id."""
        return self._insert(feed_id, _data(data), at_head=False)

    def _insert(self, feed_id: object, data: bytes, at_head: bool) -> str:
        io = self._io(feed_id)
        header = io.read_header()
        # The live entry at this end, with every end witness on this side linked in first.
        walk = Walk(io, header, forward=at_head, repair=True)
        end = walk.settle()
        observed = max(header.rec.hts_max, 0 if end is None else ids.hts_of(end.id))
        hts = self.clock.tick(observed)
        me = self.writer
        new_id = ids.head_id(hts, me) if at_head else ids.tail_id(hts, me)
        end_id = None if end is None else end.id
        # Unknown evidence (entries this store could not read) stays in the gap it lies in.
        if at_head:
            rec = EntryRecord(
                data,
                candidates([None, *walk.gap(None, new_id)]),
                candidates([end_id, *walk.gap(new_id, end_id)]),
            )
        else:
            rec = EntryRecord(
                data,
                candidates([end_id, *walk.gap(end_id, new_id)]),
                candidates([None, *walk.gap(new_id, None)]),
            )
        # Order: the entry, then the header, then the old end's back-link. A crash after the
        # first write leaves an unlinked entry (walks do not see it; repair links it in); after
        # the second, a link the next walk verifies and fixes. Either way the feed walks.
        io.new_entry(new_id, rec)
        h = header.rec
        if at_head:
            firsts = walk.witnesses(new_id, h.firsts, None, new_id)
            lasts = h.lasts if end else walk.witnesses(new_id, h.lasts, new_id, None)
        else:
            lasts = walk.witnesses(new_id, h.lasts, new_id, None)
            firsts = h.firsts if end else walk.witnesses(new_id, h.firsts, None, new_id)
        new_header = replace(h, firsts=firsts, lasts=lasts)
        io.write_header(header, self._count_own(io, new_header, add_op(new_id, hts)))
        if end is not None:
            # Only the link towards the new entry changes; the other side is written back as
            # read (a union loses nothing).
            if at_head:
                prevs, _ = walk.links(end, new_id, None)
                io.write_entry(end, replace(end.rec, prevs=prevs))
            else:
                _, nexts = walk.links(end, None, new_id)
                io.write_entry(end, replace(end.rec, nexts=nexts))
        return ids.to_text(new_id)

    def remove(self, feed_id: object, entry_id: str) -> bool:
        """Remove an entry. Returns False if it was not there (or already removed)."""
        io = self._io(feed_id)
        eid = ids.from_text(entry_id)
        node = io.read_entry(eid)
        if node is None or not node.rec.live:
            return False
        header = io.read_header()
        hts = self.clock.tick(header.rec.hts_max)
        # The flag first: from this write on the entry is gone for every reader. Its links stay
        # as they were, so walks that reach it pass through it (and unlink it as they go).
        me = self.writer
        io.write_entry(node, replace(node.rec, data=None, removed=hts, remover=me))
        io.write_header(header, self._count_own(io, header.rec, remove_op(eid, me, hts)))
        return True

    def delete_feed(self, feed_id: object) -> int:
        """Delete every record of a feed; returns how many entry records were deleted. Writers
        still adding to the feed meanwhile may leave entries behind."""
        io = self._io(feed_id)
        n = 0
        for eid in list(io.scan_ids(None, True)):
            io.store.delete(io.keys.entries + eid)
            n += 1
        io.store.delete(io.keys.header)
        return n

    def repair(self, feed_id: object, *, reap: bool = True, recount: bool = False) -> RepairReport:
        """Relink a feed from its entry records (the ground truth) and count what interrupted
        operations left uncounted. Linear in the number of entry records; safe while other
        writers work on the feed.

        ``reap`` also deletes the records of entries removed over ``reap_after_s`` ago.
        ``recount`` sets the count to the number of live entries this store shows, whatever
        the header says — for when the counter's assumptions were broken (see the package
        docs); only use it where the store has seen every write (an embedded store, or a
        cluster after anti-entropy).
        """
        reap_before = None
        if reap:
            reap_before = self.clock.tick() - int(self.reap_after_s * 1_000_000)
        io = self._io(feed_id)
        fix = None
        if recount:

            def fix(rec: HeaderRecord, delta: int) -> HeaderRecord:
                op = fix_op(self.writer, self.clock.tick(rec.hts_max), delta)
                return self._count_own(io, rec, op)

        return repair_feed(io, reap_before, fix)

    # --- reading ---------------------------------------------------------------------------------

    def get(self, feed_id: object, entry_id: str) -> Entry | None:
        """The entry, or None if it does not exist or was removed."""
        node = self._io(feed_id).read_entry(ids.from_text(entry_id))
        if node is None or not node.rec.live or node.rec.data is None:
            return None
        return Entry(entry_id.lower(), node.rec.data)

    def count(self, feed_id: object) -> int:
        """How many entries the feed has (one read; an unknown feed has 0)."""
        return max(0, self._io(feed_id).read_header().rec.count)

    def entries(
        self,
        feed_id: object,
        start: str | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[Entry]:
        """Walk the feed from the newest entry (the oldest with ``reverse``), or from entry
        ``start`` (inclusive; if it was removed, from where it was). At most ``limit``."""
        if limit is not None and limit < 0:
            raise InvalidInput("limit must be zero or more")
        io = self._io(feed_id)
        first = None if start is None else ids.from_text(start)
        return self._walk(io, first, not reverse, limit)

    def _walk(
        self, io: FeedIO, start: bytes | None, forward: bool, limit: int | None
    ) -> Iterator[Entry]:
        if limit == 0:
            return
        header = io.read_header()
        io.read_ahead(forward, limit)
        walk = Walk(io, header, forward, repair=self.repair_on_walk)
        for node in walk.walk(start, limit):
            yield Entry(ids.to_text(node.id), node.rec.data or b"")
        walk.finish()

    def page(
        self, feed_id: object, cursor: str | None = None, limit: int = 100, reverse: bool = False
    ) -> Page:
        """One page of a walk: up to ``limit`` entries from ``cursor`` (from the start when
        ``None``) and the cursor of the next page."""
        if limit < 1:
            raise InvalidInput("a page holds at least one entry")
        items = list(islice(self.entries(feed_id, cursor, reverse, limit + 1), limit + 1))
        more = items[limit].id if len(items) > limit else None
        return Page(items[:limit], more)
