"""Laws of vector clocks: merge is a join; compare agrees with descends; prune only forgets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ring.core import vclock
from ring.core.vclock import Order

ACTORS = st.sampled_from(["a", "b", "c", "d", "node1@01", "node2@ff"])
clocks = st.dictionaries(ACTORS, st.integers(1, 2**40), max_size=6)

SETTINGS = settings(max_examples=100, deadline=None)


@SETTINGS
@given(clocks, clocks)
def test_merge_commutative(a: dict[str, int], b: dict[str, int]) -> None:
    assert vclock.merge(a, b) == vclock.merge(b, a)


@SETTINGS
@given(clocks, clocks, clocks)
def test_merge_associative(a: dict[str, int], b: dict[str, int], c: dict[str, int]) -> None:
    assert vclock.merge(vclock.merge(a, b), c) == vclock.merge(a, vclock.merge(b, c))


@SETTINGS
@given(clocks)
def test_merge_idempotent(a: dict[str, int]) -> None:
    assert vclock.merge(a, a) == a


@SETTINGS
@given(clocks, clocks)
def test_merge_is_least_upper_bound(a: dict[str, int], b: dict[str, int]) -> None:
    m = vclock.merge(a, b)
    assert vclock.descends(m, a) and vclock.descends(m, b)
    # Least: every entry comes from one of the two.
    for actor, n in m.items():
        assert n == max(a.get(actor, 0), b.get(actor, 0))


@SETTINGS
@given(clocks, clocks)
def test_compare_agrees_with_descends(a: dict[str, int], b: dict[str, int]) -> None:
    order = vclock.compare(a, b)
    ab, ba = vclock.descends(a, b), vclock.descends(b, a)
    expected = {
        (True, True): Order.EQUAL,
        (True, False): Order.AFTER,
        (False, True): Order.BEFORE,
        (False, False): Order.CONCURRENT,
    }[(ab, ba)]
    assert order is expected
    assert (order is Order.EQUAL) == (a == b)


@SETTINGS
@given(clocks, ACTORS)
def test_increment_strictly_advances(a: dict[str, int], actor: str) -> None:
    b = vclock.increment(a, actor)
    assert vclock.compare(b, a) is Order.AFTER
    assert b[actor] == a.get(actor, 0) + 1


@SETTINGS
@given(
    clocks, st.dictionaries(ACTORS, st.integers(0, 1000)), st.integers(0, 6), st.integers(0, 500)
)
def test_prune_only_forgets_whole_old_entries(
    clock: dict[str, int], last_seen: dict[str, int], bound: int, min_age: int
) -> None:
    now = 1000
    out = vclock.prune(clock, last_seen, max_entries=bound, now_ms=now, min_age_ms=min_age)
    # Never lowers or invents a counter.
    assert all(clock[a] == n for a, n in out.items())
    dropped = set(clock) - set(out)
    if len(clock) <= bound:
        assert not dropped
    young = {a for a in clock if now - last_seen.get(a, -1) < min_age}
    # Young entries are never dropped; above the bound, old entries go until the bound is met.
    assert not dropped & young
    assert len(out) <= max(bound, len(young))
    # Every dropped entry is no younger than every kept entry that is old enough to drop.
    age = {a: last_seen.get(a, -1) for a in clock}
    for d in dropped:
        for k in set(out) - young:
            assert (age[d], d) < (age[k], k)


@SETTINGS
@given(clocks)
def test_encode_round_trip(a: dict[str, int]) -> None:
    assert vclock.decode(vclock.encode(a)) == a
