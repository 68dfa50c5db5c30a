"""SortedSet against a model (a dict and a sorted list), plus the encoding and argument checks.

The state machine runs thousands of random operations — add with every legal nx/xx/gt/lt
combination, incr, remove, score, rank both ways, range with negative indexes, range_by_score
with limits and offsets both ways, pops and len — against ``ZModel``, which does exactly what
Redis does. A small ledger limit makes the member-record ledger fold often. After each run
``repair`` finds nothing to fix.
"""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import ring
from search._zkeys import decode_score, encode_score
from search._zrecords import decode_member, decode_node, encode_member, encode_node
from search.sortedset import SortedSet

MEMBERS = [b"a", b"b", b"c", b"d", b"e", b"f", b"g", "h\u00e9", b"\x00", b"\xff\xfe"]
SCORES = st.sampled_from([-math.inf, -3.0, -1.5, -0.0, 0.0, 0.5, 1.0, 2.0, 7.0, 1e9, math.inf])
INCRS = st.sampled_from([-2.0, -0.5, 0.0, 0.5, 1.0, 3.0])
FLAGS = st.sampled_from(
    [{}, {"nx": True}, {"xx": True}, {"gt": True}, {"lt": True}, {"xx": True, "gt": True},
     {"xx": True, "lt": True}]
)  # fmt: skip


def as_bytes(m: bytes | str) -> bytes:
    return m.encode() if isinstance(m, str) else m


class ZModel:
    """Redis ZSET semantics, plainly."""

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}

    def ordered(self) -> list[tuple[bytes, float]]:
        return sorted(((m, s) for m, s in self.scores.items()), key=lambda x: (x[1], x[0]))

    def add(self, m: bytes, score: float, nx=False, xx=False, gt=False, lt=False) -> bool:
        cur = self.scores.get(m)
        if cur is None:
            if xx:
                return False
            self.scores[m] = score + 0.0
            return True
        if nx or (gt and not score > cur) or (lt and not score < cur):
            return False
        self.scores[m] = score + 0.0
        return False

    def incr(self, m: bytes, by: float) -> float:
        self.scores[m] = self.scores.get(m, 0.0) + by
        return self.scores[m]

    def range(self, start: int, stop: int, reverse: bool) -> list[tuple[bytes, float]]:
        items = self.ordered()[::-1] if reverse else self.ordered()
        n = len(items)
        start, stop = start + n if start < 0 else start, stop + n if stop < 0 else stop
        start = max(start, 0)
        return items[start : stop + 1] if start <= stop else []


class SortedSetMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = ring.open(backend="memory")
        self.zs = SortedSet(self.store, "model", ledger_limit=3, fold_grace_us=0)
        self.model = ZModel()

    def teardown(self) -> None:
        report = self.zs.repair()
        assert report.records_fixed == report.entries_added == report.entries_deleted == 0
        assert report.nodes_fixed == 0, report
        self.store.close()

    @rule(m=st.sampled_from(MEMBERS), score=SCORES, flags=FLAGS)
    def add(self, m: bytes | str, score: float, flags: dict[str, bool]) -> None:
        assert self.zs.add(m, score, **flags) == self.model.add(as_bytes(m), score, **flags)

    @rule(m=st.sampled_from(MEMBERS), by=INCRS)
    def incr(self, m: bytes | str, by: float) -> None:
        cur = self.model.scores.get(as_bytes(m), 0.0)
        if math.isnan(cur + by):
            with pytest.raises(ring.InvalidInput):
                self.zs.incr(m, by)
            return
        assert self.zs.incr(m, by) == self.model.incr(as_bytes(m), by)

    @rule(m=st.sampled_from(MEMBERS))
    def remove(self, m: bytes | str) -> None:
        assert self.zs.remove(m) == (self.model.scores.pop(as_bytes(m), None) is not None)

    @rule(m=st.sampled_from(MEMBERS), reverse=st.booleans())
    def rank(self, m: bytes | str, reverse: bool) -> None:
        items = self.model.ordered()[::-1] if reverse else self.model.ordered()
        want = [i for i, (x, _) in enumerate(items) if x == as_bytes(m)]
        assert self.zs.rank(m, reverse=reverse) == (want[0] if want else None)
        assert self.zs.score(m) == self.model.scores.get(as_bytes(m))

    @rule(start=st.integers(-12, 12), stop=st.integers(-12, 12), reverse=st.booleans())
    def range(self, start: int, stop: int, reverse: bool) -> None:
        assert self.zs.range(start, stop, reverse) == self.model.range(start, stop, reverse)

    @rule(
        lo=SCORES,
        hi=SCORES,
        limit=st.none() | st.integers(-1, 4),
        offset=st.integers(0, 3),
        reverse=st.booleans(),
    )
    def range_by_score(
        self, lo: float, hi: float, limit: int | None, offset: int, reverse: bool
    ) -> None:
        items = [(m, s) for m, s in self.model.ordered() if lo <= s <= hi]
        if reverse:
            items.reverse()
        end = None if limit is None or limit < 0 else offset + limit
        got = self.zs.range_by_score(lo, hi, limit=limit, offset=offset, reverse=reverse)
        assert got == items[offset:end]

    @rule(count=st.integers(0, 3), top=st.booleans())
    def pop(self, count: int, top: bool) -> None:
        items = self.model.ordered()
        want = (items[::-1] if top else items)[:count]
        got = self.zs.pop_max(count) if top else self.zs.pop_min(count)
        assert got == want
        for m, _ in want:
            del self.model.scores[m]

    @invariant()
    def length(self) -> None:
        assert len(self.zs) == len(self.model.scores)


SortedSetMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=80, deadline=None
)
TestSortedSetModel = SortedSetMachine.TestCase


# --- encodings and arguments ---------------------------------------------------------------------

FLOATS = st.floats(allow_nan=False)


@given(FLOATS, FLOATS)
def test_score_encoding_preserves_order(a: float, b: float) -> None:
    ea, eb = encode_score(a), encode_score(b)
    assert (ea < eb) == (a < b) and (ea == eb) == (a == b)
    assert decode_score(ea) == a and struct.pack(">d", decode_score(ea)) == struct.pack(
        ">d", a + 0.0
    )


def test_records_round_trip() -> None:
    from search._zrecords import Entry, Inc, Intent, Mark, MemberRec, NodeRec

    rec = MemberRec(
        (5, b"w" * 8),
        2.5,
        (Inc(b"x" * 8, (5, b"w" * 8), 9, -1.0, 1.5, b"d" * 8),),
        (3, b"y" * 8),
        ((encode_score(1.0), 1),),
        (Entry(7, b"z" * 8, ((encode_score(1.0), -1), (encode_score(2.5), 1))),),
    )
    assert decode_member(encode_member(rec)) == rec
    intent = Intent(4, b"member", ((encode_score(1.0), -1), (encode_score(2.5), 1)))
    marks = (
        Mark(b"h" * 8, (1, b"r" * 8), 3, ((b"\x02", 1),), ((6, ((b"\x01\x00", 1),)),)),
        Mark(b"w" * 8, (1, b"r" * 8), 4, ((b"\x02", -1),), (), intent, 2),
    )
    node = NodeRec((1, b"r" * 8), ((b"\x01", 3),), marks)
    assert decode_node(encode_node(node)) == node
    assert node.pending() == [(b"w" * 8, intent)]
    with pytest.raises(ring.CorruptData):
        decode_member(b"\x93\x01\x02")


def test_invalid_arguments() -> None:
    with ring.open(backend="memory") as store:
        zs = SortedSet(store, "args")
        for flags in ({"nx": True, "xx": True}, {"nx": True, "gt": True}, {"gt": True, "lt": True}):
            with pytest.raises(ring.InvalidInput):
                zs.add("m", 1.0, **flags)
        with pytest.raises(ring.InvalidInput):
            zs.add("m", math.nan)
        with pytest.raises(ring.InvalidInput):
            zs.add("m", "1")
        with pytest.raises(ring.InvalidInput):
            zs.add(3, 1.0)
        with pytest.raises(ring.InvalidInput):
            SortedSet(store, "")
        zs.add("m", math.inf)
        with pytest.raises(ring.InvalidInput):
            zs.incr("m", -math.inf)
        assert zs.score("m") == math.inf
        assert len(zs) == 1


def test_sets_are_separate_and_members_are_returned_as_bytes() -> None:
    with ring.open(backend="memory") as store:
        a, ab = SortedSet(store, "a"), SortedSet(store, "ab")
        a.add("x", 1)
        ab.add(b"x", 2)
        ab.add("\u00e9t\u00e9", 0)
        assert a.range(0, -1) == [(b"x", 1.0)]
        assert ab.range(0, -1) == [("\u00e9t\u00e9".encode(), 0.0), (b"x", 2.0)]
        assert len(a) == 1 and len(ab) == 2


def test_ties_are_ordered_by_member_bytes_in_one_bucket() -> None:
    with ring.open(backend="memory") as store:
        zs = SortedSet(store, "ties")
        members = [bytes([i]) * 3 for i in range(200, 0, -3)]
        for m in members:
            zs.add(m, 5.0)
        zs.add("low", 4.9999999)
        ordered = sorted(members)
        assert [m for m, _ in zs.range(1, -1)] == ordered
        assert zs.rank(ordered[10]) == 11 and zs.rank("low") == 0
        assert zs.range(-2, -1, reverse=True) == [(ordered[0], 5.0), (b"low", 4.9999999)]
