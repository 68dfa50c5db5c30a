"""Consistent hashing: where keys live, and how little moves when the membership changes."""

from __future__ import annotations

import random
from collections import Counter

import mmh3
import pytest

from ring.core import hashring
from ring.core.hashring import HashRing

FIVE = ["node1:7000", "node2:7000", "node3:7000", "node4:7000", "node5:7000"]
_SPACE = 1 << 64


def random_keys(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randint(1, 24)) for _ in range(n)]


def slice_start(partition: int, partitions: int) -> int:
    """The first 64-bit hash of a partition's slice (the documented scheme)."""
    return -(-partition * _SPACE // partitions)


# --- partitions -----------------------------------------------------------------------------


def test_key_hash_is_unsigned_murmur3_64() -> None:
    assert hashring.key_hash(b"hello") == mmh3.hash64(b"hello", signed=False)[0]
    assert 0 <= hashring.key_hash(b"") < _SPACE


def test_every_partition_is_reachable_and_evenly_used() -> None:
    keys = random_keys(200_000)
    counts = Counter(hashring.partition_of(k, 64) for k in keys)
    assert set(counts) == set(range(64))
    fair = len(keys) / 64
    # The standard deviation of a partition's count is about sqrt(fair) ~ 56, so +-10% is > 5 sigma:
    # a wrong slicing (e.g. using only part of the hash) fails it, chance does not.
    assert all(0.9 * fair < c < 1.1 * fair for c in counts.values()), counts


@pytest.mark.parametrize("partitions", [1, 3, 7, 63, 1000, 1023])
def test_partition_of_covers_the_range_for_any_count(partitions: int) -> None:
    keys = random_keys(max(2_000, partitions * 40), seed=partitions)
    used = {hashring.partition_of(k, partitions) for k in keys}
    assert used == set(range(partitions))


@pytest.mark.parametrize("partitions", [1, 7, 64, 1000])
def test_key_falls_in_its_partition_slice(partitions: int) -> None:
    # The preference list walks from the slice start, so a key's hash must lie inside the slice
    # of the partition it is assigned to.
    ring = HashRing(FIVE, partitions=partitions, vnodes=4)
    for key in random_keys(2_000, seed=1):
        p = ring.partition_of(key)
        assert p == hashring.partition_of(key, partitions)
        h = hashring.key_hash(key)
        assert slice_start(p, partitions) <= h < slice_start(p + 1, partitions)


def test_partition_of_is_stable() -> None:
    # The key -> partition mapping is part of the on-disk/cluster format: changing it would
    # strand every stored key on the wrong nodes.
    assert hashring.partition_of(b"", 1024) == (mmh3.hash64(b"", signed=False)[0] * 1024) >> 64
    assert [hashring.partition_of(k, 1024) for k in (b"a", b"user:1", b"\xff" * 10)] == [
        (mmh3.hash64(k, signed=False)[0] * 1024) >> 64 for k in (b"a", b"user:1", b"\xff" * 10)
    ]


# --- the ring -------------------------------------------------------------------------------


def test_constructor_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        HashRing(FIVE, partitions=0)
    with pytest.raises(ValueError):
        HashRing(FIVE, vnodes=0)


def test_walk_rejects_partitions_outside_the_ring() -> None:
    ring = HashRing(FIVE, partitions=8, vnodes=4)
    for bad in (-1, 8, 100):
        with pytest.raises(ValueError):
            ring.walk(bad)


def test_ring_is_a_function_of_the_member_set() -> None:
    a = HashRing(FIVE, partitions=128, vnodes=16)
    b = HashRing([*reversed(FIVE), FIVE[0]], partitions=128, vnodes=16)
    assert a.members == b.members == tuple(sorted(FIVE))
    assert [a.walk(p) for p in range(128)] == [b.walk(p) for p in range(128)]
    assert a.owners() == b.owners()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_preference_list_has_min_n_members_distinct(n: int) -> None:
    ring = HashRing(FIVE, partitions=256, vnodes=16)
    for p in range(256):
        pl = ring.preference_list(p, n)
        assert len(pl) == min(n, 5)
        assert len(set(pl)) == len(pl)
        assert pl == ring.walk(p)[:n]
        assert pl[0] == ring.owner(p)


def test_preference_list_for_key_matches_its_partition() -> None:
    ring = HashRing(FIVE, partitions=64, vnodes=8)
    for key in random_keys(200):
        assert ring.preference_list_for(key, 3) == ring.preference_list(ring.partition_of(key), 3)


def test_single_member_owns_everything() -> None:
    ring = HashRing(["solo"], partitions=16, vnodes=2)
    assert all(ring.preference_list(p, 3) == ("solo",) for p in range(16))
    assert ring.balance(3) == {"solo": 16}


def reference_walk(members: list[str], vnodes: int, partition: int, partitions: int) -> list[str]:
    """The documented rule, computed independently: distinct members in token order from the
    partition's slice start, wrapping around the circle."""
    tokens = sorted(
        (mmh3.hash64(f"{m}/{i}".encode(), signed=False)[0], m)
        for m in set(members)
        for i in range(vnodes)
    )
    start = slice_start(partition, partitions)
    after = [t for t in tokens if t[0] >= start] + [t for t in tokens if t[0] < start]
    out: list[str] = []
    for _, m in after:
        if m not in out:
            out.append(m)
    return out


def test_walk_matches_the_documented_rule() -> None:
    ring = HashRing(FIVE, partitions=97, vnodes=8)
    for p in range(97):
        assert list(ring.walk(p)) == reference_walk(FIVE, 8, p, 97)


# --- membership changes -----------------------------------------------------------------------


def test_adding_a_member_only_inserts_it() -> None:
    old = HashRing(FIVE, partitions=512, vnodes=64)
    new = old.with_member("node6:7000")
    moved = 0
    for p in range(512):
        before, after = old.walk(p), new.walk(p)
        assert tuple(m for m in after if m != "node6:7000") == before
        if new.owner(p) != old.owner(p):
            assert new.owner(p) == "node6:7000"
            moved += 1
    # The newcomer takes about a sixth of the primaries: data moves, but only to it.
    assert 0.6 * 512 / 6 < moved < 1.5 * 512 / 6


def test_removing_a_member_only_removes_it() -> None:
    old = HashRing(FIVE, partitions=256, vnodes=32)
    new = old.without_member("node3:7000")
    for p in range(256):
        assert new.walk(p) == tuple(m for m in old.walk(p) if m != "node3:7000")
    assert old.with_member("x").without_member("x").owners() == old.owners()


# --- balance ----------------------------------------------------------------------------------
#
# With V vnodes per member a member's share of the circle has a relative spread of roughly
# 1/sqrt(V): about 9% at V=128. Measured on 200 seeded random 5-member sets with 1024 partitions,
# the primary share stayed within 0.79x-1.29x of fair and the N=3 replica share within
# 0.86x-1.15x; the realistic names below land in 0.88x-1.14x (primary) and 0.89x-1.07x (N=3).
# The bounds sit just outside that, so they fail for a ring with few vnodes or a biased token
# hash (see the last test), not by chance.


def shares(ring: HashRing, n: int) -> list[float]:
    fair = ring.partitions * n / len(ring.members)
    return [c / fair for c in ring.balance(n).values()]


@pytest.mark.parametrize(
    "members",
    [
        FIVE,
        ["a", "b", "c", "d", "e"],
        [f"10.0.0.{i}:7000" for i in range(1, 6)],
        [f"ringd-{i}" for i in range(5)],
    ],
)
def test_balance_realistic_names(members: list[str]) -> None:
    ring = HashRing(members, partitions=1024, vnodes=128)
    assert sum(ring.balance(1).values()) == 1024
    assert all(0.8 <= s <= 1.2 for s in shares(ring, 1)), shares(ring, 1)
    assert sum(ring.balance(3).values()) == 3 * 1024
    assert all(0.85 <= s <= 1.15 for s in shares(ring, 3)), shares(ring, 3)


def test_balance_many_member_sets() -> None:
    rng = random.Random(2024)
    for _ in range(40):
        members = [f"{rng.getrandbits(40):x}" for _ in range(5)]
        ring = HashRing(members, partitions=1024, vnodes=128)
        assert all(0.7 <= s <= 1.35 for s in shares(ring, 1)), (members, shares(ring, 1))
        assert all(0.83 <= s <= 1.17 for s in shares(ring, 3)), (members, shares(ring, 3))


def test_vnodes_are_what_buys_the_balance() -> None:
    # The bounds above are meaningful: with a handful of vnodes the same members are far out.
    few = HashRing(FIVE, partitions=1024, vnodes=2)
    spread = shares(few, 1)
    assert max(spread) > 1.35 or min(spread) < 0.7
