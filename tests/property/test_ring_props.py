"""Laws of the hash ring over arbitrary member sets: determinism, distinct preference lists,
minimal movement on join and leave."""

from __future__ import annotations

import random

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ring.core import hashring
from ring.core.hashring import HashRing

SETTINGS = settings(max_examples=60, deadline=None)

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.:-@", min_size=1, max_size=12)
member_sets = st.lists(names, min_size=1, max_size=7, unique=True)
partition_counts = st.integers(1, 48)
vnode_counts = st.integers(1, 12)


@SETTINGS
@given(member_sets, partition_counts, vnode_counts, st.randoms(use_true_random=False))
def test_ring_ignores_member_order_and_duplicates(
    members: list[str], partitions: int, vnodes: int, rnd: random.Random
) -> None:
    shuffled = list(members) + list(members[:2])
    rnd.shuffle(shuffled)
    a = HashRing(members, partitions=partitions, vnodes=vnodes)
    b = HashRing(shuffled, partitions=partitions, vnodes=vnodes)
    assert a.members == b.members
    assert [a.walk(p) for p in range(partitions)] == [b.walk(p) for p in range(partitions)]


@SETTINGS
@given(member_sets, partition_counts, vnode_counts, st.integers(1, 9))
def test_preference_lists_are_distinct_and_full(
    members: list[str], partitions: int, vnodes: int, n: int
) -> None:
    ring = HashRing(members, partitions=partitions, vnodes=vnodes)
    for p in range(partitions):
        walk = ring.walk(p)
        assert sorted(walk) == sorted(members), "the walk visits every member exactly once"
        pl = ring.preference_list(p, n)
        assert len(pl) == min(n, len(members))
        assert len(set(pl)) == len(pl)
        assert set(pl) <= set(members)
    assert sum(ring.balance(n).values()) == partitions * min(n, len(members))


@SETTINGS
@given(member_sets, names, partition_counts, vnode_counts)
def test_join_inserts_only_the_new_member(
    members: list[str], newcomer: str, partitions: int, vnodes: int
) -> None:
    assume(newcomer not in members)
    old = HashRing(members, partitions=partitions, vnodes=vnodes)
    new = old.with_member(newcomer)
    for p in range(partitions):
        assert tuple(m for m in new.walk(p) if m != newcomer) == old.walk(p)
        assert new.owner(p) in (old.owner(p), newcomer)
        # So a preference list of N changes by at most one member in, one member out.
        for n in (1, 2, 3):
            before, after = set(old.preference_list(p, n)), set(new.preference_list(p, n))
            assert after - before <= {newcomer}
            assert len(before - after) <= 1


@SETTINGS
@given(st.lists(names, min_size=2, max_size=7, unique=True), st.data(), partition_counts)
def test_leave_removes_only_the_leaver(
    members: list[str], data: st.DataObject, partitions: int
) -> None:
    leaver = data.draw(st.sampled_from(members))
    old = HashRing(members, partitions=partitions, vnodes=6)
    new = old.without_member(leaver)
    assert leaver not in new.members
    for p in range(partitions):
        assert new.walk(p) == tuple(m for m in old.walk(p) if m != leaver)
        if old.owner(p) != leaver:
            assert new.owner(p) == old.owner(p)


@SETTINGS
@given(st.binary(max_size=40), st.integers(1, 5000))
def test_partition_of_is_in_range_and_consistent(key: bytes, partitions: int) -> None:
    p = hashring.partition_of(key, partitions)
    assert 0 <= p < partitions
    assert HashRing(["x"], partitions=partitions, vnodes=1).partition_of(key) == p
    # The slice test: the key's hash lies in [ceil(p*2^64/P), ceil((p+1)*2^64/P)).
    h, space = hashring.key_hash(key), 1 << 64
    assert -(-p * space // partitions) <= h < -(-(p + 1) * space // partitions)
