"""Sorted sets with Redis ZSET semantics on the ringkv key-value API.

    from search.sortedset import SortedSet
    zs = SortedSet(ring.open("data"), "board")     # or SortedSet(ring.connect("h:p,..."), ...)
    zs.add("ada", 10.0)                  # True: new member; nx= xx= gt= lt= as in ZADD
    zs.incr("ada", 2.5)                  # 12.5 (ZINCRBY; creates the member if absent)
    zs.score("ada"); zs.rank("ada"); zs.rank("ada", reverse=True); len(zs)
    zs.range(0, -1)                      # [(b"ada", 12.5), ...] by rank, stop inclusive (ZRANGE)
    zs.range_by_score(0, 100, limit=10, offset=0, reverse=False)   # both bounds inclusive
    zs.pop_min(2); zs.pop_max(); zs.remove("ada"); zs.repair()

Members are bytes or str (str is stored as UTF-8); members are always *returned* as bytes.
Scores are floats (ints accepted; NaN refused, +-inf allowed); ties are ordered by member bytes.
Only ``get_versioned``, ``put`` (with contexts), ``delete`` and ``scan`` are used, so the same
code runs on ``ring.open(...)`` and on ``ring.connect(...)``.

Records (``search._zkeys`` has the layout, ``search._zrecords`` the encodings and merges)
--------------------------------------------------------------------------------------------
* **member record** ``m<member>`` — the truth about a member: its ``set`` register (the last
  add or remove, versioned by hybrid timestamp + writer id: highest version wins, everywhere),
  per-writer ``incr`` counters on top of that version, and a *ledger* of what it contributed to
  the count tree;
* **index key** ``i<score8><member>`` (empty value) — ``score8`` is the 8-byte order-preserving
  encoding of the score, so a ``scan`` walks members in (score, member) order;
* **count-tree nodes** ``t<level><digits>`` — a fixed-shape radix-256 tree over the first four
  bytes of ``score8`` (levels 0..3: the root, then one node per 1, 2, 3-byte prefix). A node
  holds, per child byte, the number of index keys below it, as per-writer counters (each writer
  adds its own changes to its own mark; siblings merge by the newest mark per writer, so
  concurrent changes all count). Keys that share all four bytes (scores within a relative
  2**-20 of each other, and ties) form one *bucket*, counted by scanning.

How ranks are counted
---------------------
``rank`` = the counts left of the key's path at each of the 4 nodes (4 reads) + the index keys
before it in its bucket (one scan). ``range(start, stop)`` descends by counts to the bucket that
holds rank ``start`` (4 reads) and scans from there. ``len`` is one read (the root).

Writes: an operation reads the member record, computes the new state, and applies, in this
order: (1) put the new index key, (2) add the change (+1 new key, -1 old key) to the nodes of
both paths (a read and a write each; shared nodes once), (3) write the member record with the
context it was read with — the **commit point** — carrying a ledger entry naming the tree
change it made, (4) delete the old index key, with the context of a read made before (1), so a
writer that puts that key again after reading this commit keeps it. A crash before (3) leaves
the operation undone (an index key no member record agrees with, which no read returns, and
counts off by one until ``repair``); a crash after it leaves the operation done.

Concurrency
-----------
Concurrent writers on different nodes (or threads interleaving on one store) produce siblings of
any record they both write. Every read is ``get_versioned`` and merges siblings
deterministically (``search._zrecords``); every rewrite and every delete carries the context
it read (a delete without one would lose to a replica that had not received the key yet).

* ``incr``: each writer (one thread of one ``SortedSet``) keeps its own running total on top of
  the current ``set`` version; siblings keep the newest total per writer, so concurrent
  increments all count (a PN-counter), through any nodes.
* ``add``/``remove``: a new ``set`` version above everything the writer saw; among concurrent
  ones the highest (timestamp, writer) wins on every node. An add or remove **supersedes every
  increment made on an older version, concurrent ones included**: an ``incr`` concurrent with an
  ``add`` is ordered before it. ``gt``/``lt``/``nx``/``xx`` are judged on the state the writer
  read (a concurrent add elsewhere is not seen).
* adds of different members touch different member and index keys and meet only in tree nodes,
  which are per-writer counters: all are kept and counted.
* the tree: two writers that move one member from the same state each apply their own change,
  so the tree briefly holds both moves. The member record's ledger records every change applied
  (siblings merge by the union of changes), so whoever next reads the member — any operation on
  it, ``score`` included, or a range that meets one of its stale index keys — sees that the
  tree's contribution differs from {its key: 1}, applies the difference and records it. Ranks,
  ``len`` and rank ranges are exact once every member written concurrently has been read again
  (or after ``repair``); scores are exact at once. Ranges verify every returned item against
  its member record and skip index keys it no longer agrees with (the losing side of a
  concurrent add, a crashed operation).

``pop_min``/``pop_max`` read the lowest (highest) members and remove each one whose score is
still the one read, returning those it removed, lowest (highest) first. Concurrent pops through
one store (threads) may still pop the same member twice if their reads interleave, and pops
through different nodes may each pop it: a pop is **at-least-once**, not exactly-once, and a
member added concurrently may or may not be popped. Each returned pair was a member with that
score when it was removed.

Costs (store calls + items scanned; at 20,000 members no call exceeds 60, see the tests)
-------------------------------------------------------------------------------------------
``add``/``incr``/``remove``: 1 read + 1 put of the member, 1 index put, 1 read + 1 delete of
the old index key, and a read + write of each distinct tree node on the old and new paths
(≤ 8): ≤ 21. ``score``: 1.
Every index key a read scans is verified with one member read. ``rank``: 1 + 4 + 1 scan +
2 per key before it in its bucket. ``range``: 4 + 1 scan + 2 per item scanned (the offset in
the bucket + k). ``range_by_score``: 1 scan + 2 per item (offset + k; the offset is skipped by
scanning: O(offset)). ``len``: 1. Measured maxima at 20,000 members: range of 10 35,
range_by_score of 10 21, add 19, rank 18, incr 15, remove 12. ``repair``: a scan of the
members, the index keys and the tree nodes, a read per member and per node (a write where one
is wrong), a read + delete per index key no member agrees with (the read gives the delete its
context: before, a bare delete), a put per missing one.
Many members in one bucket (equal or nearly equal scores) make ``rank`` and ``range`` scan the
bucket: linear in its size. A member record holds the ledger entries of its last 16 changes or
its last 2 seconds, whichever are more (a very hot member's record grows with its rate), and
one increment mark per writer since the last add; a tree node one mark per writer that
ever changed it (``repair`` folds them into a base).

Exactness assumptions (as feeds): a writer reads its own writes (embedded; R + W > N); one
thread per writer id; concurrent writes of one member meet before 16 newer changes of it *and*
2 seconds have passed, and within 15 minutes. ``repair`` rebuilds index keys and counts from the
member records and must run with no concurrent writers; it also drops the records of removed
members.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ring.common import KVStore
from ring.errors import InvalidInput
from search._zkeys import (
    LEVELS,
    MAX_MEMBER_BYTES,
    ZKeys,
    check_score,
    decode_score,
    encode_score,
    prefix_end,
    to_name,
)
from search._zrecords import (
    EMPTY_NODE,
    FOLD_GRACE_US,
    LEDGER_LIMIT,
    Entry,
    Inc,
    MemberRec,
    NodeRec,
    delta_of,
    encode_member,
    encode_node,
    fold,
    merge_member,
    merge_node,
)

__all__ = ["RepairReport", "SortedSet"]

WRITER_BYTES = 8


@dataclass(frozen=True, slots=True)
class RepairReport:
    members: int  # live members found
    records_fixed: int  # member records rewritten (siblings, or a ledger not equal to the truth)
    records_dropped: int  # records of removed members deleted
    entries_deleted: int  # index keys no member agreed with
    entries_added: int  # index keys that were missing
    nodes_fixed: int  # count-tree nodes whose counts were wrong


@dataclass(slots=True)
class _View:
    rec: MemberRec
    context: bytes
    siblings: int

    @property
    def target(self) -> bytes | None:
        s = self.rec.score()
        return None if s is None else encode_score(s)

    @property
    def clean(self) -> bool:
        if self.siblings > 1:
            return False
        t = self.target
        return self.rec.contribution() == ({t: 1} if t is not None else {})


def wall_clock_us() -> int:
    return time.time_ns() // 1000


class _Writer:
    __slots__ = ("id", "last")

    def __init__(self, writer_id: bytes) -> None:
        self.id = writer_id
        self.last = 0


class SortedSet:
    """A sorted set named ``name`` in ``store`` (see the module docstring)."""

    def __init__(
        self,
        store: KVStore,
        name: object,
        *,
        writer: bytes | None = None,
        clock: Callable[[], int] | None = None,
        ledger_limit: int = LEDGER_LIMIT,
        fold_grace_us: int = FOLD_GRACE_US,
    ) -> None:
        """``writer`` (tests): a fixed writer id for every thread — then use one thread only.
        ``clock``: microseconds of wall time (tests)."""
        self.store = store
        self.keys = ZKeys(name)
        self._now = clock or wall_clock_us
        self._fixed = _Writer(writer) if writer is not None else None
        self._local = threading.local()
        self._limit = ledger_limit
        self._grace = fold_grace_us

    # --- writer identity and time -------------------------------------------------------------

    def _me(self) -> _Writer:
        if self._fixed is not None:
            return self._fixed
        w: _Writer | None = getattr(self._local, "writer", None)
        if w is None:
            w = self._local.writer = _Writer(os.urandom(WRITER_BYTES))
        return w

    def _tick(self, observed: int = 0) -> int:
        w = self._me()
        hts = max(self._now(), w.last + 1, observed + 1)
        w.last = hts
        return hts

    # --- reads --------------------------------------------------------------------------------

    def _member_arg(self, member: object) -> bytes:
        return to_name(member, "member", MAX_MEMBER_BYTES)

    def _read(self, m: bytes) -> _View:
        v = self.store.get_versioned(self.keys.member(m))
        rec = merge_member(v.values, self._limit, self._grace)
        return _View(rec, v.context, len(v.values))

    def _read_node(self, level: int, digits: bytes) -> tuple[NodeRec, bytes]:
        v = self.store.get_versioned(self.keys.node(level, digits))
        return (merge_node(v.values) if v.values else EMPTY_NODE), v.context

    def _counts(self, level: int, digits: bytes) -> dict[int, int]:
        return self._read_node(level, digits)[0].counts()

    # --- the one write path ---------------------------------------------------------------------

    def _commit(self, m: bytes, view: _View, new: MemberRec, hts: int) -> None:
        """Move member ``m`` from what ``view`` read to ``new`` (see "Writes" above)."""
        me = self._me().id
        have = view.rec.contribution()
        s = new.score()
        target = None if s is None else encode_score(s)
        want = {target: 1} if target is not None else {}
        change = {k: want.get(k, 0) - have.get(k, 0) for k in have.keys() | want.keys()}
        change = {k: n for k, n in change.items() if n}
        if change:
            new = replace(new, entries=(*new.entries, Entry(hts, me, delta_of(change))))
            new = fold(new, self._limit, self._grace)
        # Old index keys are deleted with the context read now, before this commit: a writer
        # that puts one of them again after reading this commit keeps it (a concurrent put).
        stale = []
        for k in sorted(have):
            if k != target:
                v = self.store.get_versioned(self.keys.entry(k, m))
                if v.values:
                    stale.append((k, v.context))
        if target is not None and (change or view.siblings > 1):
            self.store.put(self.keys.entry(target, m), hts.to_bytes(8, "big"))
        if change:
            self._apply_tree(change, hts)
        self.store.put(self.keys.member(m), encode_member(new), context=view.context)
        for k, ctx in stale:
            self.store.delete(self.keys.entry(k, m), context=ctx)

    def _apply_tree(self, change: dict[bytes, int], hts: int) -> None:
        me = self._me().id
        per_node: dict[tuple[int, bytes], dict[bytes, int]] = {}
        for k, n in change.items():
            for level in range(LEVELS):
                d = per_node.setdefault((level, k[:level]), {})
                c = k[level : level + 1]
                d[c] = d.get(c, 0) + n
        for (level, digits), d in sorted(per_node.items()):
            if not any(d.values()):
                continue
            node, ctx = self._read_node(level, digits)
            mark = node.mark_of(me)
            for c, n in d.items():
                mark[c] = mark.get(c, 0) + n
            marks = [x for x in node.marks if x[0] != me]
            marks.append((me, hts, delta_of(mark)))
            marks.sort(key=lambda x: x[0])
            new = NodeRec(node.base_v, node.base, tuple(marks))
            self.store.put(self.keys.node(level, digits), encode_node(new), context=ctx)

    def _settle(self, m: bytes, view: _View) -> None:
        """Write back a member read with siblings or a ledger that is not exact."""
        if not view.clean:
            self._commit(m, view, view.rec, self._tick(view.rec.newest_hts()))

    # --- the API ------------------------------------------------------------------------------

    def add(
        self,
        member: object,
        score: object,
        *,
        nx: bool = False,
        xx: bool = False,
        gt: bool = False,
        lt: bool = False,
    ) -> bool:
        """ZADD of one member: True if it is new. ``nx``: only add new members; ``xx``: only
        update existing ones; ``gt``/``lt``: update an existing member only if the new score is
        greater/less (new members are still added). nx with xx, gt or lt, and gt with lt, are
        refused (``ring.InvalidInput``), as by Redis."""
        if nx and xx:
            raise InvalidInput("nx and xx options at the same time are not compatible")
        if (gt and lt) or (nx and (gt or lt)):
            raise InvalidInput("gt, lt, and/or nx options at the same time are not compatible")
        m = self._member_arg(member)
        value = check_score(score)
        view = self._read(m)
        cur = view.rec.score()
        if cur is None:
            if xx:
                self._settle(m, view)
                return False
        elif (
            nx
            or (gt and not value > cur)
            or (lt and not value < cur)
            or (value == cur and view.clean)
        ):
            self._settle(m, view)
            return False
        hts = self._tick(view.rec.newest_hts())
        new = replace(view.rec, set_v=(hts, self._me().id), set_score=value, incs=())
        self._commit(m, view, new, hts)
        return cur is None

    def incr(self, member: object, by: object) -> float:
        """ZINCRBY: add ``by`` to the member's score (a new member starts at 0); the new
        score. Concurrent increments through any nodes all count."""
        m = self._member_arg(member)
        delta = check_score(by, "increment")
        view = self._read(m)
        rec = view.rec
        if math.isnan((rec.score() or 0.0) + delta):
            raise InvalidInput("resulting score is not a number (NaN)")
        hts = self._tick(rec.newest_hts())
        me = self._me().id
        mine = rec.inc_of(me)
        total = (mine.total if mine is not None else 0.0) + delta
        incs = sorted(
            [*(i for i in rec.incs if i.writer != me), Inc(me, rec.set_v, hts, total)],
            key=lambda i: i.writer,
        )
        new = replace(rec, incs=tuple(incs))
        score = new.score()
        if score is None or math.isnan(score):
            raise InvalidInput("resulting score is not a number (NaN)")
        self._commit(m, view, new, hts)
        return score

    def remove(self, member: object) -> bool:
        """ZREM of one member: True if it was there."""
        m = self._member_arg(member)
        view = self._read(m)
        if view.rec.score() is None:
            self._settle(m, view)
            return False
        hts = self._tick(view.rec.newest_hts())
        new = replace(view.rec, set_v=(hts, self._me().id), set_score=None, incs=())
        self._commit(m, view, new, hts)
        return True

    def score(self, member: object) -> float | None:
        """ZSCORE: the member's score, or None. (Settles a member written concurrently.)"""
        m = self._member_arg(member)
        view = self._read(m)
        self._settle(m, view)
        return view.rec.score()

    def __len__(self) -> int:
        """ZCARD: one read of the count tree's root."""
        return max(sum(self._counts(0, b"").values()), 0)

    def rank(self, member: object, reverse: bool = False) -> int | None:
        """ZRANK (ZREVRANK with ``reverse``): the 0-based rank, or None."""
        m = self._member_arg(member)
        view = self._read(m)
        self._settle(m, view)
        k = view.target
        if k is None:
            return None
        r = 0
        total = 0
        for level in range(LEVELS):
            counts = self._counts(level, k[:level])
            if level == 0:
                total = sum(counts.values())
            r += sum(n for c, n in counts.items() if c < k[level])
        bucket = self.keys.index + k[:LEVELS]
        for key, value in self.store.scan(prefix=bucket, stop=self.keys.entry(k, m)):
            r += self._check(key, value) is not None
        return total - 1 - r if reverse else r

    def range(self, start: int, stop: int, reverse: bool = False) -> list[tuple[bytes, float]]:
        """ZRANGE start stop [REV]: members by rank, ``stop`` inclusive, negative indexes counted
        from the end."""
        if isinstance(start, bool) or isinstance(stop, bool):
            raise InvalidInput("start and stop are ints")
        if not isinstance(start, int) or not isinstance(stop, int):
            raise InvalidInput("start and stop are ints")
        root = self._counts(0, b"")
        n = max(sum(root.values()), 0)
        if start < 0:
            start += n
        if stop < 0:
            stop += n
        start = max(start, 0)
        stop = min(stop, n - 1)
        if start > stop:
            return []
        if reverse:
            start, stop = n - 1 - stop, n - 1 - start
        out = self._from_rank(root, start, stop - start + 1)
        return out[::-1] if reverse else out

    def _from_rank(self, root: dict[int, int], r: int, want: int) -> list[tuple[bytes, float]]:
        digits = b""
        counts = root
        for level in range(LEVELS):
            if level:
                counts = self._counts(level, digits)
            for c in sorted(counts):
                n = max(counts[c], 0)
                if r < n:
                    digits += bytes([c])
                    break
                r -= n
            else:
                return []  # the counts are behind the index (a crash): repair() fixes them
        start = self.keys.index + digits
        return self._collect(start, None, False, r, want)

    def range_by_score(
        self,
        min: object,
        max: object,
        *,
        limit: int | None = None,
        offset: int = 0,
        reverse: bool = False,
    ) -> list[tuple[bytes, float]]:
        """ZRANGEBYSCORE min max [LIMIT offset count]: members with min <= score <= max in
        (score, member) order; ``reverse`` lists from ``max`` down (ZREVRANGEBYSCORE)."""
        lo, hi = check_score(min, "min"), check_score(max, "max")
        if limit is not None and limit < 0:
            limit = None  # Redis: a negative count means all
        if offset < 0 or lo > hi or limit == 0:
            return []
        start = self.keys.index + encode_score(lo)
        stop = prefix_end(self.keys.index + encode_score(hi))
        return self._collect(start, stop, reverse, offset, limit)

    def _collect(
        self, start: bytes, stop: bytes | None, reverse: bool, skip: int, want: int | None
    ) -> list[tuple[bytes, float]]:
        """Index keys from ``start`` (forward) or from ``stop`` (reverse) that their member
        records agree with: ``skip`` of them passed, then up to ``want``."""
        out: list[tuple[bytes, float]] = []
        prefix = self.keys.index
        lo, hi = start, stop if stop is not None else prefix_end(prefix)
        while want is None or len(out) < want:
            page = None if want is None else skip + want - len(out)
            n = 0
            last = None
            for key, value in self.store.scan(start=lo, stop=hi, reverse=reverse, limit=page):
                n += 1
                last = key
                score = self._check(key, value)
                if score is None:
                    continue
                if skip:
                    skip -= 1
                    continue
                out.append((self.keys.split_entry(key)[1], score))
                if want is not None and len(out) >= want:
                    break
            if page is None or n < page or last is None:
                break
            if reverse:
                hi = last
            else:
                lo = last + b"\x00"
        return out

    def _check(self, key: bytes, value: bytes) -> float | None:
        """The score of index key ``key`` if its member record agrees with it, else None.
        Settles the member if it was written concurrently; deletes the key if the record does
        not count it and has seen the operation that put it or a later one. (An operation still
        in flight that put it read an older record than this one: its commit will be a sibling
        of this record, and whoever merges them puts the key again.)"""
        s8, m = self.keys.split_entry(key)
        view = self._read(m)
        self._settle(m, view)
        if view.target == s8:
            return decode_score(s8)
        put_at = int.from_bytes(value[:8], "big") if len(value) >= 8 else 0
        if s8 not in view.rec.contribution() and put_at <= view.rec.newest_hts():
            v = self.store.get_versioned(key)
            if v.values:
                self.store.delete(key, context=v.context)
        return None

    def pop_min(self, count: int = 1) -> list[tuple[bytes, float]]:
        """ZPOPMIN: remove and return up to ``count`` lowest members, lowest first
        (at-least-once under concurrency: see the module docstring)."""
        return self._pop(count, reverse=False)

    def pop_max(self, count: int = 1) -> list[tuple[bytes, float]]:
        """ZPOPMAX: remove and return up to ``count`` highest members, highest first."""
        return self._pop(count, reverse=True)

    def _pop(self, count: int, reverse: bool) -> list[tuple[bytes, float]]:
        out: list[tuple[bytes, float]] = []
        for _ in range(count + 8):
            if len(out) >= count:
                break
            batch = self.range(0, count - len(out) - 1, reverse=reverse)
            if not batch:
                break
            for m, s in batch:
                view = self._read(m)
                if view.rec.score() != s:
                    continue  # changed since the range read it
                hts = self._tick(view.rec.newest_hts())
                new = replace(view.rec, set_v=(hts, self._me().id), set_score=None, incs=())
                self._commit(m, view, new, hts)
                out.append((m, s))
        return out

    # --- repair ---------------------------------------------------------------------------------

    def repair(self) -> RepairReport:
        """Rebuild index keys and counts from the member records (run with no concurrent
        writers): merges sibling member records, resets ledgers, deletes index keys no member
        agrees with (each read first: the delete carries its context) and adds missing ones,
        sets each tree node's base so its counts are exact, and deletes the records of removed
        members."""
        me = self._me().id
        hts = self._tick()
        targets: dict[bytes, bytes] = {}
        fixed = dropped = 0
        n = len(self.keys.members)
        for key, _ in list(self.store.scan(prefix=self.keys.members)):
            m = key[n:]
            view = self._read(m)
            k = view.target
            if k is None:
                self.store.delete(key, context=view.context)
                dropped += 1
                continue
            targets[m] = k
            if not view.clean:
                hts = self._tick(view.rec.newest_hts())
                rec = replace(view.rec, until=(hts, me), base=((k, 1),), entries=())
                self.store.put(key, encode_member(rec), context=view.context)
                fixed += 1
        deleted = added = 0
        present: set[bytes] = set()
        for key, _ in list(self.store.scan(prefix=self.keys.index)):
            s8, m = self.keys.split_entry(key)
            if targets.get(m) == s8:
                present.add(m)
                continue
            v = self.store.get_versioned(key)  # the delete supersedes what it read
            if v.values:
                self.store.delete(key, context=v.context)
                deleted += 1
        for m, k in targets.items():
            if m not in present:
                self.store.put(self.keys.entry(k, m), hts.to_bytes(8, "big"))
                added += 1
        truth: dict[tuple[int, bytes], dict[bytes, int]] = {}
        for k in targets.values():
            for level in range(LEVELS):
                d = truth.setdefault((level, k[:level]), {})
                c = k[level : level + 1]
                d[c] = d.get(c, 0) + 1
        nodes = set(truth)
        nodes.update(self.keys.split_node(k) for k, _ in self.store.scan(prefix=self.keys.nodes))
        nodes_fixed = 0
        hts = self._tick(hts)
        for level, digits in sorted(nodes):
            node, ctx = self._read_node(level, digits)
            want = truth.get((level, digits), {})
            if {c: v for c, v in node.counts().items() if v} == {c[0]: v for c, v in want.items()}:
                continue
            base = dict(want)
            for _, _, delta in node.marks:
                for c, n in delta:
                    base[c] = base.get(c, 0) - n
            new = NodeRec((hts, me), delta_of(base), node.marks)
            self.store.put(self.keys.node(level, digits), encode_node(new), context=ctx)
            nodes_fixed += 1
        return RepairReport(len(targets), fixed, dropped, deleted, added, nodes_fixed)
