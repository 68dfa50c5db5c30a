"""Consistent hashing with virtual nodes and fixed partitions.

Karger et al., "Consistent Hashing and Random Trees" (1997), with Dynamo's strategy 2
(DeCandia et al. 2007, section 6.2): T random tokens per member (``vnodes``, placed by hash) and
Q fixed, equal partitions (``partitions``), each stored on the first N distinct members clockwise
from its start. In detail (the partitions are fixed and equal, as in riak_core's ``chash``):

* a key hashes (MurmurHash3, 64 bits) to one of ``partitions`` equal slices of the hash space;
  the mapping ``hash * partitions >> 64`` uses every partition, whatever the count;
* each member places ``vnodes`` tokens on the same 64-bit circle (the hash of ``"name/i"``);
* a partition's **preference list** is the first N distinct members met walking clockwise from
  the partition's start. The members after those N, in the same walk, are the fallbacks used by
  sloppy quorum.

Invariants: the ring is a pure function of the member set (not of the order members were given);
a preference list holds ``min(N, members)`` distinct members; adding a member changes a partition's
list only by inserting the new member (every other member keeps its relative order), so only the
partitions it takes over move.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import mmh3

DEFAULT_PARTITIONS = 1024
DEFAULT_VNODES = 128
_SPACE = 1 << 64


def key_hash(key: bytes) -> int:
    """64-bit unsigned MurmurHash3 of a key."""
    return mmh3.hash64(key, signed=False)[0]


def partition_of(key: bytes, partitions: int = DEFAULT_PARTITIONS) -> int:
    """The partition that holds ``key``: the slice of the hash space its hash falls in."""
    return (mmh3.hash64(key, signed=False)[0] * partitions) >> 64


class HashRing:
    """An immutable ring over a set of member names."""

    __slots__ = ("_order", "_owners", "_points", "_tokens", "members", "partitions", "vnodes")

    def __init__(
        self,
        members: Iterable[str],
        *,
        partitions: int = DEFAULT_PARTITIONS,
        vnodes: int = DEFAULT_VNODES,
    ) -> None:
        if partitions < 1:
            raise ValueError("a ring needs at least one partition")
        if vnodes < 1:
            raise ValueError("a member needs at least one virtual node")
        self.members: tuple[str, ...] = tuple(sorted(set(members)))
        self.partitions = partitions
        self.vnodes = vnodes
        tokens = sorted(
            (mmh3.hash64(f"{m}/{i}".encode(), signed=False)[0], m)
            for m in self.members
            for i in range(vnodes)
        )
        self._tokens = tokens
        self._points = [t for t, _ in tokens]
        self._order: dict[int, tuple[str, ...]] = {}
        self._owners: list[str] | None = None

    def partition_of(self, key: bytes) -> int:
        return (mmh3.hash64(key, signed=False)[0] * self.partitions) >> 64

    def walk(self, partition: int) -> tuple[str, ...]:
        """Every member, each once, in clockwise order from the partition's start."""
        cached = self._order.get(partition)
        if cached is not None:
            return cached
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} is outside 0..{self.partitions - 1}")
        start = -(-partition * _SPACE // self.partitions)  # ceil: the first hash in the slice
        i = bisect.bisect_left(self._points, start)
        seen: dict[str, None] = {}
        count = len(self._tokens)
        for step in range(count):
            member = self._tokens[(i + step) % count][1]
            if member not in seen:
                seen[member] = None
                if len(seen) == len(self.members):
                    break
        order = tuple(seen)
        self._order[partition] = order
        return order

    def preference_list(self, partition: int, n: int) -> tuple[str, ...]:
        """The first ``n`` distinct members for ``partition``."""
        pl = self.walk(partition)[:n]
        assert len(pl) == min(n, len(self.members)) and len(set(pl)) == len(pl)
        return pl

    def preference_list_for(self, key: bytes, n: int) -> tuple[str, ...]:
        return self.preference_list(self.partition_of(key), n)

    def owner(self, partition: int) -> str:
        """The first member of the partition's preference list (its primary)."""
        return self.walk(partition)[0]

    def owners(self) -> list[str]:
        if self._owners is None:
            self._owners = [self.owner(p) for p in range(self.partitions)]
        return self._owners

    def balance(self, n: int = 1) -> dict[str, int]:
        """How many partitions each member holds a replica of (with N = ``n``)."""
        counts = dict.fromkeys(self.members, 0)
        for p in range(self.partitions):
            for m in self.preference_list(p, n):
                counts[m] += 1
        return counts

    def with_member(self, member: str) -> HashRing:
        return HashRing((*self.members, member), partitions=self.partitions, vnodes=self.vnodes)

    def without_member(self, member: str) -> HashRing:
        return HashRing(
            (m for m in self.members if m != member), partitions=self.partitions, vnodes=self.vnodes
        )
