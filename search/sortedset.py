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
* **count-tree nodes** ``t<level><digits>`` — a fixed-shape tree over the 18-byte *tree key*
  ``score8 + member[:10]`` (zero-padded), in 12 levels (``search._zkeys``: the root counts by
  2 bytes — sign, exponent, top mantissa bits — then 6 levels of 1 score byte, then 5 levels
  of 2 member bytes). A node holds, per child, the number of index keys below it, as
  per-writer counters (each writer adds its own changes to its own mark; siblings merge by the
  newest mark per writer, so concurrent changes all count). Index keys that share a tree key
  — equal scores *and* equal first 10 member bytes — form one *bucket*, counted by scanning.
  Clustered scores (Unix times a few ms apart) spread over the score levels; ties spread over
  the member levels (``user00001`` .. ``user20000`` at one score: buckets of 1).

How ranks are counted
---------------------
``rank`` = the counts left of the key's path at each of the 12 nodes (12 reads) + the index
keys before it in its bucket (one scan). ``range(start, stop)`` descends by counts to the
bucket that holds rank ``start`` (12 reads) and scans from there. ``range_by_score`` counts the
keys below ``min`` the same way, then descends to rank (that + offset): its offset costs
O(log n), and its scan starts at a live key (never stepping over the tombstones of deleted
index keys before it). ``len`` is one read (the root).

Writes: an operation reads the member record, computes the new state, and applies, in this
order: (1) read the root and write it with its part of the tree change and the operation's
**intent** (member, change) in the writer's mark; (2) put the new index key; (3) add the change
(+1 new key, -1 old key) to the other nodes of both paths (a read and a write each; shared
nodes once); (4) write the member record with the context it was read with — the **commit
point** — carrying a ledger entry naming the tree change it made; (5) delete the old index
key, with the context of a read made before (1), so a writer that puts that key again after
reading this commit keeps it; (6) clear the intent (read + write of the root).

A crash between (1) and (6) leaves the intent pending in the root, which every rank, range,
``len`` and pop reads first: the reader **finishes** it — applies the rest of the tree change
(per node, only if the writer's mark there has not got it: idempotent, and beside the writer's
own counts, which a reader's copy may hold stale), records the change in the member's ledger,
settles the member (which undoes the change if the crash came before the commit) and clears
the intent. So no read ever uses a half-changed tree: ``len``, ranks, rank ranges and pops are
exact at once after a crash at any write point, before any ``repair``. A reader finishes an
intent at once if its writer's operation raised in this process, never while its writer is
at work in this process, and otherwise (a writer in another process) once it is
``help_after_us`` (2 s) old: until then that one change may be missing from counts, as a
concurrent write's is.

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
  concurrent add, a crashed operation). A commit corrects what the tree holds beyond the
  member's key by at most one per key: writers that all applied the whole correction from one
  state would overshoot k - 1 times, and the next round more (a hot member's counts ran away
  under 6 threads); so the error stays within the number of concurrent writers and a settle
  repeats until the member is exact.
* ``incr`` computes the new score as the score it read + ``by``, one double addition as Redis
  (``1e16 + 1 == 1e16``), and records it beside its running total: when the newest increment
  saw every other writer's mark there is, its score is the score; when concurrent increments
  met, the score is the exact sum of the set score and every writer's total (all count).

``pop_min``/``pop_max`` read the lowest (highest) members and remove each one whose score is
still the one read, returning those it removed, lowest (highest) first. Concurrent pops through
one store (threads) may still pop the same member twice if their reads interleave, and pops
through different nodes may each pop it: a pop is **at-least-once**, not exactly-once, and a
member added concurrently may or may not be popped. Each returned pair was a member with that
score when it was removed.

Costs (store calls + items scanned; at 20,000 members no call exceeds 60, see the tests)
-------------------------------------------------------------------------------------------
``add``/``incr``/``remove``: 1 read + 1 put of the member, 1 index put, 1 read + 1 delete of
the old index key, 2 root calls for the intent and 2 to clear it, and a read + write of each
other distinct node the change touches on the old and new paths (≤ 2 x 11): ≤ 53. ``score``:
1. Every index key a read scans is verified with one member read. ``rank``: 1 + 12 + 1 scan +
2 per key before it in its bucket. ``range``: 12 + 1 scan + 2 per item scanned (the offset
in the bucket + k). ``range_by_score``: ≤ 24 (two descents sharing their top) + 1 scan + 2 per
item (+ 1 scan when reversed). ``pop_min(1)``: a range of 1 + a remove. ``len``: 1. Measured
maxima at 20,000 members (``tests/search/test_sortedset_cost.py``), for random scores /
Unix-time scores 50 ms apart / 20,000 ties ``user00000``..: add and incr 53 / 47 / 53,
range_by_score of 10 47 / 43 / 47, pop_min 45 / 45 / 45, range of 10 35 / 35 / 33, remove 30,
add of a new member 29, rank 14 / 16 / 14, score and len 1.
**Not O(log n): equal scores whose members share their first 10 bytes** form one bucket, and
``rank``, ``range`` and ``range_by_score`` scan it: 2 calls per member before the wanted one in
the bucket (20,000 members ``leaderboard:user:00000``.. at one score: a rank in the middle
touches about 20,000 records). Writes stay bounded (≤ 53).
``repair``: a scan of the members, the index keys and the tree nodes, a read per member and
per node (a write where one is wrong or holds per-writer marks, a delete where it counts
nothing), a read + delete per index key no member agrees with, a put per missing one.
Record sizes: writer ids are pooled per process (an operation takes one and gives it back), so
a tree node holds a mark per writer id that changed it — about the number of writers ever at
work at once per process, not one per thread or per ``SortedSet``; ``repair`` folds them into
one base. A member record holds the ledger entries of its last 16 changes or its last 2
seconds, whichever are more (a very hot member's record grows with its rate), and one
increment mark per writer id since the last add; ``repair`` folds them into one score.
Index keys are rewritten only when the score's encoding changes; each move leaves a tombstone
that scans step over until the store reaps it. Rank ranges and score ranges start at a live
key found by the tree, so only tombstones *between* the keys they return cost time (review
r12: after 5,000 increments of one member, a ``range_by_score`` + ``range`` pair took 2.10 ms,
now 0.56 ms; 0.06 ms before the increments with the old 4-level tree, 0.26 - 0.98 ms now, as
a score range now reads up to 24 nodes).

Exactness assumptions (as feeds): a writer reads its own writes (embedded; R + W > N); one
thread per writer id; concurrent writes of one member meet before 16 newer changes of it *and*
2 seconds have passed, and within 15 minutes. ``repair`` rebuilds index keys and counts from the
member records and must run with no concurrent writers; it also drops the records of removed
members and the tree nodes that count nothing. An intent is recorded in the member's ledger by
whoever finishes it; if 16 newer changes of the member and 2 seconds passed before anyone did,
the ledger has folded past it and the change stays counted until ``repair``.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ring.common import KVStore
from ring.errors import InvalidInput
from search._zkeys import (
    LEVELS,
    MAX_MEMBER_BYTES,
    MEMBER_PREFIX,
    SCORE_BYTES,
    ZKeys,
    check_score,
    decode_score,
    encode_score,
    prefix_end,
    to_name,
    tree_key,
    tree_path,
)
from search._zrecords import (
    EMPTY_NODE,
    FOLD_GRACE_US,
    LEDGER_LIMIT,
    Entry,
    Inc,
    Intent,
    Mark,
    MemberRec,
    NodeRec,
    delta_of,
    encode_member,
    encode_node,
    fold,
    merge_member,
    merge_node,
    seen_digest,
)

__all__ = ["RepairReport", "SortedSet"]

WRITER_BYTES = 8
ROOT = (0, b"")
NodeId = tuple[int, bytes]  # (level, digits)
PerNode = dict[NodeId, dict[bytes, int]]  # node -> child -> signed change


@dataclass(frozen=True, slots=True)
class RepairReport:
    members: int  # live members found
    records_fixed: int  # member records rewritten (siblings, or a ledger not equal to the truth)
    records_dropped: int  # records of removed members deleted
    entries_deleted: int  # index keys no member agreed with
    entries_added: int  # index keys that were missing
    nodes_fixed: int  # count-tree nodes whose counts were wrong (or held a pending intent)
    records_folded: int = 0  # exact member records whose increment marks and ledger were folded
    nodes_folded: int = 0  # exact count-tree nodes whose per-writer marks were folded
    nodes_dropped: int = 0  # count-tree nodes that counted nothing, deleted


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
    __slots__ = ("began", "id", "last")

    def __init__(self, writer_id: bytes) -> None:
        self.id = writer_id
        self.last = 0
        self.began = False  # the operation under way has written its intent


# Writer ids of this process not in use. An operation takes one and gives it back when it is
# done, so the marks a record ever holds are about as many as the writers ever at work at once,
# not one per thread or per SortedSet. An id whose operation raised after writing its intent is
# never reused: the intent may still be pending in the root (a crash), for the next reader to
# finish. One whose operation raised before (arguments refused, a read that failed) goes back:
# else every rejected call would add a writer to the records.
_FREE_WRITERS: list[_Writer] = []
_FREE_LOCK = threading.Lock()
# Writer ids of this process inside an operation now (their intents are in flight: a reader
# leaves them alone), and ids whose operation raised (a reader finishes their intents at once).
_LIVE: dict[bytes, int] = {}
_DEAD: set[bytes] = set()
HELP_AFTER_US = 2_000_000
SETTLE_ROUNDS = 16  # a pending intent of another process's writer this old is finished

F = TypeVar("F", bound=Callable[..., Any])


def _operation(fn: F) -> F:
    """Run a public method as one writer (a pooled id, or the fixed one)."""

    @functools.wraps(fn)
    def run(self: SortedSet, *args: Any, **kwargs: Any) -> Any:
        with self._writer():
            return fn(self, *args, **kwargs)

    return run  # type: ignore[return-value]


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
        help_after_us: int = HELP_AFTER_US,
    ) -> None:
        """``writer`` (tests): a fixed writer id for every thread — then use one thread only.
        ``clock``: microseconds of wall time (tests). ``help_after_us``: how old a pending
        intent of another process's writer must be before a reader finishes it."""
        self.store = store
        self.keys = ZKeys(name)
        self._now = clock or wall_clock_us
        self._fixed = _Writer(writer) if writer is not None else None
        self._local = threading.local()
        self._limit = ledger_limit
        self._grace = fold_grace_us
        self._help_after = help_after_us

    # --- writer identity and time -------------------------------------------------------------

    @contextlib.contextmanager
    def _writer(self) -> Iterator[None]:
        if getattr(self._local, "writer", None) is not None:
            yield  # an operation nested in one (pops read ranges; a reader settles a member)
            return
        if self._fixed is not None:
            w = self._fixed
        else:
            with _FREE_LOCK:
                w = _FREE_WRITERS.pop() if _FREE_WRITERS else _Writer(os.urandom(WRITER_BYTES))
        self._local.writer = w
        with _FREE_LOCK:
            _LIVE[w.id] = _LIVE.get(w.id, 0) + 1
            _DEAD.discard(w.id)
        w.began = False
        failed = True
        try:
            yield
            failed = False
        finally:
            self._local.writer = None
            with _FREE_LOCK:
                _LIVE[w.id] -= 1
                if not _LIVE[w.id]:
                    del _LIVE[w.id]
                if failed and w.began:
                    _DEAD.add(w.id)
                elif self._fixed is None:
                    _FREE_WRITERS.append(w)

    def _me(self) -> _Writer:
        w: _Writer | None = getattr(self._local, "writer", None)
        if w is None:  # pragma: no cover - every entry point is an _operation
            raise RuntimeError("sorted set operation outside a writer scope")
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

    def _read_node(self, node: NodeId) -> tuple[NodeRec, bytes]:
        v = self.store.get_versioned(self.keys.node(*node))
        return (merge_node(v.values) if v.values else EMPTY_NODE), v.context

    def _root(self) -> dict[bytes, int]:
        """The root's counts, after finishing every operation whose intent is pending in it
        (a writer that crashed between its first tree write and its last, or one still at
        work): so a read never uses a tree that is half-way through a change."""
        root, _ = self._read_node(ROOT)
        pending = [(w, i) for w, i in root.pending() if self._stalled(w, i)]
        if not pending:
            return root.counts()
        for writer, intent in pending:
            self._finish(writer, intent)
        return self._read_node(ROOT)[0].counts()

    def _stalled(self, writer: bytes, intent: Intent) -> bool:
        """Whether to finish a pending intent: this writer's own (it crashed before), one of a
        writer of this process whose operation raised, or one of another process's writer
        older than ``help_after_us``. Never one in flight in this process: a reader that
        finished operations still at work would race their writers (and many readers settling
        one member at once overshoot)."""
        if writer == self._me().id:
            return True
        with _FREE_LOCK:
            if writer in _LIVE:
                return False
            if writer in _DEAD:
                return True
        return self._now() - intent.hts >= self._help_after

    # --- the one write path ---------------------------------------------------------------------

    @staticmethod
    def _per_node(m: bytes, change: dict[bytes, int]) -> PerNode:
        """What a change of member ``m``'s index keys (score8 -> +-n) does to each node."""
        per: PerNode = {}
        for k, n in change.items():
            for level, digits, child in tree_path(tree_key(k, m)):
                d = per.setdefault((level, digits), {})
                d[child] = d.get(child, 0) + n
        return {node: d for node, d in per.items() if any(d.values())}

    def _commit(self, m: bytes, view: _View, new: MemberRec, hts: int) -> None:
        """Move member ``m`` from what ``view`` read to ``new`` (see "Writes" above)."""
        me = self._me().id
        have = view.rec.contribution()
        s = new.score()
        target = None if s is None else encode_score(s)
        change = _change(have, view.target, target)
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
        per = self._per_node(m, change)
        if change:
            self._begin(me, Intent(hts, m, delta_of(change)), per.pop(ROOT, {}))
        if target is not None and (change or view.siblings > 1):
            self.store.put(self.keys.entry(target, m), hts.to_bytes(8, "big"))
        if change:
            self._apply(me, hts, per)
        self.store.put(self.keys.member(m), encode_member(new), context=view.context)
        for k, ctx in stale:
            self.store.delete(self.keys.entry(k, m), context=ctx)
        if change:
            self._clear(me, hts)

    def _begin(self, me: bytes, intent: Intent, root_change: dict[bytes, int]) -> None:
        """The first tree write: the root's part of the change together with the intent."""
        self._me().began = True
        root, ctx = self._read_node(ROOT)
        mine = root.mark_of(me)
        own = mine.pending()
        if own is not None and own.hts != intent.hts:  # this id's earlier operation crashed
            self._finish(me, own)
            root, ctx = self._read_node(ROOT)
            mine = root.mark_of(me)
        cum = self._folded(mine)
        for c, n in root_change.items():
            cum[c] = cum.get(c, 0) + n
        mark = Mark(me, root.base_v, intent.hts, delta_of(cum), (), intent, mine.cleared)
        self.store.put(self.keys.node(*ROOT), encode_node(root.with_mark(mark)), context=ctx)

    @staticmethod
    def _folded(mark: Mark) -> dict[bytes, int]:
        """A writer's own cumulative counts with what helpers applied for it folded in."""
        cum = dict(mark.cum)
        for _, delta in mark.helped:
            for c, n in delta:
                cum[c] = cum.get(c, 0) + n
        return cum

    def _apply(self, writer: bytes, hts: int, per: PerNode) -> None:
        """Apply writer ``writer``'s operation ``hts`` to the nodes of ``per`` where it is not
        applied yet (idempotent: the writer itself and any number of helpers may run it)."""
        me = self._me().id
        for node_id, d in sorted(per.items()):
            if node_id == ROOT:
                continue
            node, ctx = self._read_node(node_id)
            mark = node.mark_of(writer)
            if mark.applied(hts):
                continue
            if writer == me:
                cum = self._folded(mark)
                for c, n in d.items():
                    cum[c] = cum.get(c, 0) + n
                mark = Mark(me, node.base_v, hts, delta_of(cum))
            else:  # beside the writer's own counts, which this copy may have stale
                helped = tuple(sorted((*mark.helped, (hts, delta_of(d)))))
                mark = replace(mark, epoch=node.base_v, helped=helped)
            self.store.put(self.keys.node(*node_id), encode_node(node.with_mark(mark)), context=ctx)

    def _clear(self, writer: bytes, hts: int) -> None:
        root, ctx = self._read_node(ROOT)
        mark = root.mark_of(writer)
        if mark.cleared >= hts or mark.intent is None:
            return
        mark = replace(mark, cleared=hts)
        self.store.put(self.keys.node(*ROOT), encode_node(root.with_mark(mark)), context=ctx)

    def _finish(self, writer: bytes, intent: Intent) -> None:
        """Finish writer ``writer``'s operation from its pending intent: apply the rest of its
        tree change, record the change in the member's ledger (so the ledger again says what
        the tree holds for the member), settle the member (which undoes the change if the
        operation never committed), and clear the intent."""
        m = intent.member
        change = dict(intent.change)
        self._apply(writer, intent.hts, self._per_node(m, change))
        view = self._read(m)
        rec = view.rec
        eid = (intent.hts, writer)
        if eid > rec.until and all(e.id != eid for e in rec.entries):
            entries = sorted((*rec.entries, Entry(intent.hts, writer, intent.change)), key=_eid)
            rec = replace(rec, entries=tuple(entries))
            self._commit(m, _View(rec, view.context, view.siblings), rec, self._tick(intent.hts))
        else:
            self._settle(m, view)
        self._clear(writer, intent.hts)

    def _settle(self, m: bytes, view: _View) -> None:
        """Write back a member read with siblings or a ledger that is not exact (until it is:
        a commit corrects each key by at most one, see ``_change``)."""
        for _ in range(SETTLE_ROUNDS):
            if view.clean:
                return
            self._commit(m, view, view.rec, self._tick(view.rec.newest_hts()))
            view = self._read(m)

    # --- the API ------------------------------------------------------------------------------

    @_operation
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

    @_operation
    def incr(self, member: object, by: object) -> float:
        """ZINCRBY: add ``by`` to the member's score (a new member starts at 0) in one double
        addition, as Redis; the new score. Concurrent increments through any nodes all count."""
        m = self._member_arg(member)
        delta = check_score(by, "increment")
        view = self._read(m)
        rec = view.rec
        score = (rec.score() or 0.0) + delta
        if math.isnan(score):
            raise InvalidInput("resulting score is not a number (NaN)")
        hts = self._tick(rec.newest_hts())
        me = self._me().id
        mine = rec.inc_of(me)
        total = (mine.total if mine is not None else 0.0) + delta
        seen = seen_digest(rec.incs, me)
        incs = sorted(
            [*(i for i in rec.incs if i.writer != me), Inc(me, rec.set_v, hts, total, score, seen)],
            key=lambda i: i.writer,
        )
        new = replace(rec, incs=tuple(incs))
        self._commit(m, view, new, hts)
        return score

    @_operation
    def remove(self, member: object) -> bool:
        """ZREM of one member: True if it was there."""
        m = self._member_arg(member)
        view = self._read(m)
        if view.rec.score() is None:
            self._settle(m, view)
            return False
        self._remove(m, view)
        return True

    def _remove(self, m: bytes, view: _View) -> None:
        hts = self._tick(view.rec.newest_hts())
        new = replace(view.rec, set_v=(hts, self._me().id), set_score=None, incs=())
        self._commit(m, view, new, hts)

    @_operation
    def score(self, member: object) -> float | None:
        """ZSCORE: the member's score, or None. (Settles a member written concurrently.)"""
        m = self._member_arg(member)
        view = self._read(m)
        self._settle(m, view)
        return view.rec.score()

    @_operation
    def __len__(self) -> int:
        """ZCARD: one read of the count tree's root."""
        return max(sum(self._root().values()), 0)

    def _node_counts(self, node: NodeId, cache: dict[NodeId, dict[bytes, int]]) -> dict[bytes, int]:
        got = cache.get(node)
        if got is None:
            got = cache[node] = self._root() if node == ROOT else self._read_node(node)[0].counts()
        return got

    def _before(self, tkey: bytes, cache: dict[NodeId, dict[bytes, int]]) -> int:
        """How many index keys the tree counts below tree key ``tkey``."""
        r = 0
        for level, digits, child in tree_path(tkey):
            counts = self._node_counts((level, digits), cache)
            r += sum(n for c, n in counts.items() if c < child)
        return r

    @_operation
    def rank(self, member: object, reverse: bool = False) -> int | None:
        """ZRANK (ZREVRANK with ``reverse``): the 0-based rank, or None."""
        m = self._member_arg(member)
        view = self._read(m)
        self._settle(m, view)
        k = view.target
        if k is None:
            return None
        cache: dict[NodeId, dict[bytes, int]] = {}
        tk = tree_key(k, m)
        r = self._before(tk, cache)
        total = sum(cache[ROOT].values())
        for key, value in self.store.scan(start=self.keys.bucket(tk), stop=self.keys.entry(k, m)):
            r += self._check(key, value) is not None
        return total - 1 - r if reverse else r

    @_operation
    def range(self, start: int, stop: int, reverse: bool = False) -> list[tuple[bytes, float]]:
        """ZRANGE start stop [REV]: members by rank, ``stop`` inclusive, negative indexes counted
        from the end."""
        if isinstance(start, bool) or isinstance(stop, bool):
            raise InvalidInput("start and stop are ints")
        if not isinstance(start, int) or not isinstance(stop, int):
            raise InvalidInput("start and stop are ints")
        cache: dict[NodeId, dict[bytes, int]] = {}
        n = max(sum(self._node_counts(ROOT, cache).values()), 0)
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
        out = self._from_rank(start, stop - start + 1, None, cache)
        return out[::-1] if reverse else out

    def _locate(self, r: int, cache: dict[NodeId, dict[bytes, int]]) -> tuple[bytes, int] | None:
        """The bucket that holds rank ``r`` and the rank's offset in it."""
        digits = b""
        for level in range(LEVELS):
            counts = self._node_counts((level, digits), cache)
            for c in sorted(counts):
                n = max(counts[c], 0)
                if r < n:
                    digits += c
                    break
                r -= n
            else:
                return None  # the counts are behind the index: repair() fixes them
        return self.keys.bucket(digits), r

    def _from_rank(
        self, r: int, want: int | None, stop: bytes | None, cache: dict[NodeId, dict[bytes, int]]
    ) -> list[tuple[bytes, float]]:
        at = self._locate(r, cache)
        if at is None:
            return []
        return self._collect(at[0], stop, False, at[1], want)

    @_operation
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
        (score, member) order; ``reverse`` lists from ``max`` down (ZREVRANGEBYSCORE). The
        first item is found by rank in the count tree, so the offset costs O(log n)."""
        lo, hi = check_score(min, "min"), check_score(max, "max")
        if limit is not None and limit < 0:
            limit = None  # Redis: a negative count means all
        if offset < 0 or lo > hi or limit == 0:
            return []
        lo8, hi8 = encode_score(lo), encode_score(hi)
        first = self.keys.index + lo8
        stop = prefix_end(self.keys.index + hi8)
        cache: dict[NodeId, dict[bytes, int]] = {}
        pad = bytes(MEMBER_PREFIX)
        if not reverse:
            r = self._before(lo8 + pad, cache) + offset
            at = self._locate(r, cache)
            if at is None:
                return []
            return self._collect(builtins.max(at[0], first), stop, False, at[1], limit)
        above = self._before(_succ(hi8) + pad, cache) if hi8 != b"\xff" * SCORE_BYTES else None
        if above is None:
            above = sum(self._node_counts(ROOT, cache).values())
        r = above - 1 - offset
        if r < 0:
            return []
        at = self._locate(r, cache)
        if at is None:
            return []
        top = self._collect(at[0], stop, False, at[1], 1)
        if not top:
            return []
        last = self.keys.entry(encode_score(top[0][1]), top[0][0]) + b"\x00"
        return self._collect(first, last, True, 0, limit)

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
        newest = view.rec.newest_hts()
        if s8 not in view.rec.contribution() and _put_at(value) <= newest:
            # Read again for the context, and delete only if every version read is one the
            # member record has seen: the key may have been put again since the scan.
            v = self.store.get_versioned(key)
            if v.values and all(_put_at(x) <= newest for x in v.values):
                self.store.delete(key, context=v.context)
        return None

    @_operation
    def pop_min(self, count: int = 1) -> list[tuple[bytes, float]]:
        """ZPOPMIN: remove and return up to ``count`` lowest members, lowest first
        (at-least-once under concurrency: see the module docstring)."""
        return self._pop(count, reverse=False)

    @_operation
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
                self._remove(m, view)
                out.append((m, s))
        return out

    # --- repair ---------------------------------------------------------------------------------

    @_operation
    def repair(self) -> RepairReport:
        """Rebuild index keys and counts from the member records (run with no concurrent
        writers): merges sibling member records and folds their increment marks and ledgers
        into one score and one base, deletes index keys no member agrees with (each read first:
        the delete carries its context) and adds missing ones, rewrites each tree node as one
        base holding the true counts (no per-writer marks, no pending intents), deletes nodes
        that count nothing, and deletes the records of removed members."""
        me = self._me().id
        hts = self._tick()
        targets: dict[bytes, bytes] = {}
        fixed = dropped = folded = 0
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
            rec = view.rec
            if view.clean and not rec.incs and not rec.entries:
                continue
            hts = self._tick(rec.newest_hts())
            new = replace(rec, until=(hts, me), base=((k, 1),), entries=())
            if rec.incs:
                new = replace(new, set_v=(hts, me), set_score=rec.score(), incs=())
            self.store.put(key, encode_member(new), context=view.context)
            if view.clean:
                folded += 1
            else:
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
        truth: PerNode = {}
        for m, k in targets.items():
            for level, digits, child in tree_path(tree_key(k, m)):
                d = truth.setdefault((level, digits), {})
                d[child] = d.get(child, 0) + 1
        nodes = set(truth)
        nodes.update(self.keys.split_node(k) for k, _ in self.store.scan(prefix=self.keys.nodes))
        nodes_fixed = nodes_folded = nodes_dropped = 0
        hts = self._tick(hts)
        for node_id in sorted(nodes):
            node, ctx = self._read_node(node_id)
            want = truth.get(node_id, {})
            right = {c: v for c, v in node.counts().items() if v} == want and not node.pending()
            if not want:
                self.store.delete(self.keys.node(*node_id), context=ctx)
                nodes_dropped += 1
                nodes_fixed += not right
                continue
            if right and not node.marks:
                continue
            base = NodeRec((hts, me), delta_of(want), ())
            self.store.put(self.keys.node(*node_id), encode_node(base), context=ctx)
            if right:
                nodes_folded += 1
            else:
                nodes_fixed += 1
        return RepairReport(
            len(targets),
            fixed,
            dropped,
            deleted,
            added,
            nodes_fixed,
            folded,
            nodes_folded,
            nodes_dropped,
        )


def _change(have: dict[bytes, int], read: bytes | None, target: bytes | None) -> dict[bytes, int]:
    """The tree change of a commit: the member's move from the key it had when read (``read``)
    to ``target``, plus the correction of what the tree holds beyond ``read`` (``have`` is the
    ledger's sum) — at most one per key. Writers that commit concurrently from one state each
    apply the correction; if each applied all of it, k of them would leave k - 1 times the
    error, and the next round more: corrections would grow without bound on a hot member.
    Limited to one per key, the error stays within the number of concurrent writers and
    shrinks by one per key with each later commit."""
    out: dict[bytes, int] = {}
    for k, n in have.items():
        err = n - (k == read)
        if err:
            out[k] = -max(-1, min(1, err))
    if read is not None and read != target:
        out[read] = out.get(read, 0) - 1
    if target is not None and read != target:
        out[target] = out.get(target, 0) + 1
    if read is not None and read not in have:  # the tree never counted it: add it
        out[read] = out.get(read, 0) + 1
    return {k: n for k, n in out.items() if n}


def _put_at(value: bytes) -> int:
    """The hybrid timestamp of the operation that put an index key (its value)."""
    return int.from_bytes(value[:8], "big") if len(value) >= 8 else 0


def _eid(e: Entry) -> tuple[int, bytes]:
    return e.id


def _succ(score8: bytes) -> bytes:
    """The next 8-byte string after ``score8`` (which is not all 0xFF)."""
    return (int.from_bytes(score8, "big") + 1).to_bytes(SCORE_BYTES, "big")
