"""The merge rules of feed records: deterministic, lossless, and counting each operation once."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds import ids
from feeds.counter import PRUNE_US, Op, add_op, remove_op
from feeds.records import (
    EMPTY_HEADER,
    EntryRecord,
    HeaderRecord,
    decode_entry,
    decode_header,
    encode_entry,
    encode_header,
    merge_entry,
    merge_header,
    with_own,
    with_proxied,
)
from ring.errors import CorruptData, InvalidInput

W = b"\x01\x02\x03\x04"
eid = st.integers(1, 10**9).map(lambda h: ids.head_id(h, W))
cands = st.lists(st.one_of(st.none(), eid), min_size=1, max_size=3).map(tuple)
entries = st.builds(
    EntryRecord,
    st.just(b"data"),
    cands,
    cands,
    st.sampled_from([0, 0, 5, 7]),
)


def test_ids_are_positions() -> None:
    early, late = ids.head_id(100, W), ids.head_id(200, W)
    assert late < early, "a later add sorts first (newest first)"
    assert ids.tail_id(100, W) < ids.tail_id(200, W), "a later append sorts last"
    assert early < ids.tail_id(1, W), "every added entry sorts before every appended one"
    assert ids.hts_of(early) == 100 and ids.hts_of(ids.tail_id(7, W)) == 7
    assert ids.from_text(ids.to_text(early)) == early
    for bad in ("xyz", "00" * 11, "zz" * 12, 12):
        with pytest.raises(InvalidInput):
            ids.from_text(bad)


def test_hybrid_clock_never_repeats_or_goes_back() -> None:
    now = [1000]
    clock = ids.HybridClock(lambda: now[0])
    a = clock.tick()
    now[0] = 500  # the wall clock steps back
    b = clock.tick()
    c = clock.tick(observed=10_000)
    assert a < b < c and c == 10_001


@given(st.lists(entries, min_size=1, max_size=4))
def test_entry_merge_ignores_sibling_order_and_loses_no_candidate(recs: list[EntryRecord]) -> None:
    raws = [encode_entry(r) for r in recs]
    merged = merge_entry(raws)
    for perm in itertools.permutations(raws):
        assert merge_entry(perm) == merged
    if len(recs) > 1:
        assert set(merged.prevs) == {c for r in recs for c in r.prevs}
        assert set(merged.nexts) == {c for r in recs for c in r.nexts}
    # A removal written by any sibling wins over a concurrent rewrite of the links.
    assert bool(merged.removed) == any(r.removed for r in recs)


def test_entry_roundtrip_and_corrupt_data() -> None:
    rec = EntryRecord(b"x", (None,), (ids.head_id(5, W),))
    assert decode_entry(encode_entry(rec)) == rec
    for raw in (b"\xc1", encode_header(EMPTY_HEADER), b"\x93\x01\x02\x03"):
        with pytest.raises(CorruptData):
            decode_entry(raw)


A, B, C = b"AAAA", b"BBBB", b"CCCC"


class Author:
    """Counts its own operations as ``Feeds`` does: remembering its mark per header."""

    def __init__(self, name: bytes, limit: int = 64) -> None:
        self.name, self.mark, self.limit = name, None, limit

    def add(self, h: HeaderRecord, hts: int) -> HeaderRecord:
        return self.own(h, add_op(ids.head_id(hts, self.name), hts))

    def remove(self, h: HeaderRecord, entry: bytes, hts: int) -> HeaderRecord:
        return self.own(h, remove_op(entry, self.name, hts))

    def own(self, h: HeaderRecord, op: Op) -> HeaderRecord:
        h, self.mark = with_own(h, op, self.mark, self.limit)  # type: ignore[assignment]
        return h


def merged(*heads: HeaderRecord, limit: int = 64) -> HeaderRecord:
    raws = [encode_header(h) for h in heads]
    out = merge_header(raws, limit)
    for perm in itertools.permutations(raws):
        assert merge_header(perm, limit) == out, "the merge depends on sibling order"
    return out


def test_concurrent_adds_are_all_counted() -> None:
    a, b = Author(A), Author(B)
    base = a.add(EMPTY_HEADER, 10)
    assert merged(a.add(base, 20), b.add(base, 21)).count == 3


def test_the_same_operation_in_two_siblings_counts_once() -> None:
    """Two writers removing one entry; a walk counting an add its writer also counts."""
    a, b, c = Author(A), Author(B), Author(C)
    entry = ids.head_id(10, A)
    base = a.own(EMPTY_HEADER, add_op(entry, 10))
    both = merged(b.remove(base, entry, 30), c.remove(base, entry, 31))
    assert both.count == 0
    assert merged(both, c.remove(base, entry, 31)).count == 0, "a retried write"
    lost = ids.head_id(40, A)  # A wrote this entry, then stopped before the header
    walker = with_proxied(base, [add_op(lost, 40)])
    assert walker.count == 2
    assert with_proxied(walker, [add_op(lost, 40)]).count == 2, "named twice, counted once"
    assert merged(walker, a.own(base, add_op(lost, 40))).count == 2
    assert merged(walker, a.add(a.own(base, add_op(lost, 40)), 50)).count == 3


def test_a_writer_that_stalled_is_counted_after_the_others_moved_on() -> None:
    a, b = Author(A, limit=4), Author(B, limit=4)
    base = a.add(EMPTY_HEADER, 1)
    late = b.add(base, 5)
    busy = base
    for i in range(200):
        busy = a.add(busy, 10 + i)
    assert merged(late, busy, limit=4).count == 1 + 200 + 1
    again = b.own(merged(late, busy, limit=4), add_op(ids.head_id(5, B), 5))
    assert again.count == 202, "its retry is recognised by its own mark"


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3), st.sampled_from(["add", "rm", "name", "sync"]), st.integers(0, 40)
        ),
        max_size=60,
    )
)
def test_merging_every_copy_counts_each_operation_once(plan: list[tuple[int, str, int]]) -> None:
    """Four replicas with one author each, working on stale copies: adds, removals (often of
    the same entry by several authors), walks naming other authors' adds, and now and then a
    replica learning another's copy. Merging every copy counts each operation exactly once."""
    authors = [Author(bytes([65 + i]) * 4) for i in range(4)]
    copies = [EMPTY_HEADER] * 4
    made: list[bytes] = []
    removed: set[tuple[int, bytes]] = set()
    effect: dict[bytes, int] = {}
    for step, (r, kind, n) in enumerate(plan):
        hts = 100 + step
        if kind == "sync":
            copies[r] = merged(copies[r], copies[n % 4])
        elif kind == "add":
            entry = ids.head_id(hts, authors[r].name)
            copies[r] = authors[r].own(copies[r], add_op(entry, hts))
            made.append(entry)
            effect[b"a" + entry] = 1
        elif kind == "rm" and made:
            # Feeds.remove checks the entry first: an author removes an entry once, and not
            # after its copy has counted a removal of it (concurrent removals do happen).
            entry = made[n % len(made)]
            if (r, entry) in removed or copies[r].tally.judge().knows(remove_op(entry, b"", 0)):
                continue
            removed.add((r, entry))
            copies[r] = authors[r].remove(copies[r], entry, hts)
            effect[b"r" + entry] = -1
        elif kind == "name" and made:
            entry = made[n % len(made)]
            copies[r] = with_proxied(copies[r], [add_op(entry, ids.hts_of(entry))])
    assert merged(*copies).count == sum(effect.values())


def test_idle_authors_retire_into_the_base() -> None:
    a, b = Author(A), Author(B)
    h = a.add(a.add(EMPTY_HEADER, 1), 2)
    h = b.add(h, 3 + PRUNE_US)
    assert [m[0] for m in h.tally.marks] == [B] and h.tally.base == 2
    assert h.count == 3
    stale = Author(A).add(EMPTY_HEADER, 1)  # a copy from before the horizon
    assert merged(h, stale).count == 3
    h = a.add(h, 4 + PRUNE_US)  # A comes back: its old total is in the base already
    assert h.count == 4


def test_header_roundtrip_and_corrupt_data() -> None:
    h, _ = with_own(HeaderRecord(firsts=(ids.head_id(1, W),)), add_op(ids.head_id(1, W), 1), None)
    h = with_proxied(h, [remove_op(ids.head_id(1, W), W, 5), add_op(ids.head_id(2, A), 2)])
    assert decode_header(encode_header(h)) == h
    with pytest.raises(CorruptData):
        decode_header(encode_entry(EntryRecord(b"x", (None,), (None,))))
