"""Laws of the ownership table (``ring.core.claim``) over random histories of joins, leaves and
bulk changes: full distinct lists, floor/ceil balance of replicas and primaries, movement bounds
per single join and leave, fixed points and determinism."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ring.core.claim import Table, claim, load, moved, primaries

SETTINGS = settings(max_examples=25, deadline=None)

partition_counts = st.sampled_from([64, 100, 128, 256, 500, 1024])
replica_counts = st.integers(1, 5)
# A history step: ("join",), ("leave", index) or ("bulk", leaves, joins).
steps = st.one_of(
    st.tuples(st.just("join")),
    st.tuples(st.just("leave"), st.integers(0, 10_000)),
    st.tuples(st.just("bulk"), st.integers(0, 3), st.integers(0, 3)),
)


def assert_valid(table: Table, members: list[str], partitions: int, n: int) -> None:
    width = min(n, len(members))
    assert len(table) == partitions
    allowed = set(members)
    for row in table:
        assert len(row) == width and len(set(row)) == width and set(row) <= allowed
    m = len(members)
    slots = partitions * width
    loads = load(table)
    for x in members:  # the tight result: floor or ceil of the mean, always achievable
        assert slots // m <= loads.get(x, 0) <= -(-slots // m)
    counts = primaries(table)
    for x in members:
        assert partitions // m <= counts.get(x, 0) <= -(-partitions // m)


@SETTINGS
@given(
    st.integers(1, 30),
    partition_counts,
    replica_counts,
    st.lists(steps, min_size=1, max_size=10),
)
def test_histories_stay_valid_balanced_and_move_little(
    start: int, partitions: int, n: int, history: list[tuple[object, ...]]
) -> None:
    members = [f"m{i}" for i in range(start)]
    born = start
    table = claim(None, members, partitions, n)
    assert_valid(table, members, partitions, n)
    for step in history:
        old_table = table
        if step[0] == "join" or (step[0] == "leave" and len(members) == 1):
            newcomer = f"m{born}"
            born += 1
            members = [*members, newcomer]
            table = claim(old_table, members, partitions, n)
            # One join moves exactly the newcomer's share (floor or ceil of the ideal).
            assert moved(old_table, table) == load(table)[newcomer]
            for a, b in zip(old_table, table, strict=True):
                assert set(b) - set(a) <= {newcomer}
        elif step[0] == "leave":
            assert isinstance(step[1], int)
            leaver = members[step[1] % len(members)]
            members = [x for x in members if x != leaver]
            table = claim(old_table, members, partitions, n)
            ideal = load(old_table)[leaver]
            if len(members) < n:  # shrinking below N: the leaver is only removed
                assert moved(old_table, table) == 0
            else:
                assert moved(old_table, table) <= max(1.10 * ideal, ideal + 2)
        else:
            leaves, joins = step[1], step[2]
            assert isinstance(leaves, int) and isinstance(joins, int)
            gone = set(members[: min(leaves, len(members) - 1)])
            newcomers = [f"m{born + i}" for i in range(joins)]
            born += joins
            members = [x for x in members if x not in gone] + newcomers
            table = claim(old_table, members, partitions, n)
            # Close to the least possible: each member must gain at least (floor - what it
            # held), and the slots no survivor held need new holders.
            width = min(n, len(members))
            base = partitions * width // len(members)
            old_loads = load(old_table)
            held = {x: old_loads.get(x, 0) for x in members}
            least = max(
                sum(max(0, base - h) for h in held.values()),
                partitions * width - sum(held.values()),
            )
            assert moved(old_table, table) <= max(1.10 * least, least + len(members))
        assert_valid(table, members, partitions, n)
        assert claim(table, members, partitions, n) == table  # nothing moves without a change


@SETTINGS
@given(st.integers(1, 40), partition_counts, replica_counts, st.randoms(use_true_random=False))
def test_member_order_and_duplicates_do_not_matter(
    m: int, partitions: int, n: int, rnd: random.Random
) -> None:
    members = [f"node-{i}" for i in range(m)]
    shuffled = members + members[: m // 2]
    rnd.shuffle(shuffled)
    fresh = claim(None, members, partitions, n)
    assert fresh == claim(None, shuffled, partitions, n)
    changed = [*members[1:], "late-a", "late-b"]
    again = list(changed)
    rnd.shuffle(again)
    assert claim(fresh, changed, partitions, n) == claim(fresh, again, partitions, n)


@SETTINGS
@given(st.integers(2, 40), partition_counts, replica_counts, st.integers(0, 10_000))
def test_join_then_leave_of_the_same_member(m: int, partitions: int, n: int, pick: int) -> None:
    """A join followed by that member's leave moves each time its share, and leaves the other
    members' loads floor/ceil."""
    members = [f"x{i}" for i in range(m)]
    table = claim(None, members, partitions, n)
    grown = claim(table, [*members, "guest"], partitions, n)
    back = claim(grown, members, partitions, n)
    assert_valid(back, members, partitions, n)
    if m >= n:
        assert moved(grown, back) <= max(1.10 * load(grown)["guest"], load(grown)["guest"] + 2)
    leaver = members[pick % m]
    rest = [x for x in members if x != leaver]
    assert_valid(claim(table, rest, partitions, n), rest, partitions, n)
