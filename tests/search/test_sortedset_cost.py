"""The cost bound: at 20,000 members no single call touches more than 60 records.

A wrapper store counts every store call and every item a scan yields. ``add``, ``remove``,
``incr`` and ``rank`` touch O(log n) records (12 tree levels), ``range`` and ``range_by_score``
O(log n + k); the test runs each many times at random positions of a 20,000-member set and
checks the maximum, for three distributions of scores:

* ``mixed``: random floats and small integers (so there are ties);
* ``unixtime``: ``1_700_000_000 + i / 20`` — 20 events a second for 17 minutes, all scores
  sharing their first 3 bytes (the old 4-byte tree put them in 2 buckets: 10,006 calls a rank);
* ``ties``: every member at score 0, members ``user00000`` .. ``user19999`` (ordered by member
  bytes: the tree's member levels count them).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

import ring
from search.sortedset import SortedSet

MEMBERS = 20_000
BOUND = 60


class Touches:
    """Counts store calls and scanned items."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls = 0
        self.items = 0

    @property
    def total(self) -> int:
        return self.calls + self.items

    def get_versioned(self, key: Any) -> Any:
        self.calls += 1
        return self.store.get_versioned(key)

    def get(self, key: Any) -> Any:
        self.calls += 1
        return self.store.get(key)

    def put(self, key: Any, value: Any, context: Any = None) -> None:
        self.calls += 1
        self.store.put(key, value, context=context)

    def delete(self, key: Any, context: Any = None) -> None:
        self.calls += 1
        self.store.delete(key, context=context)

    def scan(self, *args: Any, **kwargs: Any) -> Iterator[tuple[bytes, bytes]]:
        self.calls += 1
        for item in self.store.scan(*args, **kwargs):
            self.items += 1
            yield item


def build(kind: str, store: Any, rng: random.Random) -> None:
    zs = SortedSet(store, "big")
    for i in range(MEMBERS):
        if kind == "mixed":
            zs.add(f"member:{i:05d}", rng.random() * 1e6 if i % 2 else float(rng.randrange(5_000)))
        elif kind == "unixtime":
            zs.add(f"member:{i:05d}", 1_700_000_000 + i / 20)
        else:
            zs.add(f"user{i:05d}", 0.0)


@pytest.fixture(scope="module", params=["mixed", "unixtime", "ties"])
def big(request: Any) -> Iterator[tuple[str, Touches, SortedSet, random.Random]]:
    rng = random.Random(20_000)
    with ring.open(backend="memory") as store:
        build(request.param, store, rng)
        touches = Touches(store)
        yield request.param, touches, SortedSet(touches, "big"), rng


def measure(touches: Touches, call: Any) -> int:
    before = touches.total
    call()
    return touches.total - before


def test_every_call_touches_at_most_60_records(
    big: tuple[str, Touches, SortedSet, random.Random],
) -> None:
    kind, touches, zs, rng = big
    assert len(zs) == MEMBERS
    worst: dict[str, int] = {}
    prefix = "user" if kind == "ties" else "member:"

    def run(name: str, call: Any) -> None:
        worst[name] = max(worst.get(name, 0), measure(touches, call))

    def member() -> str:
        return f"{prefix}{rng.randrange(MEMBERS):05d}"

    def score() -> float:
        if kind == "unixtime":
            return 1_700_000_000 + rng.randrange(MEMBERS * 20) / 400
        return 0.0 if kind == "ties" and rng.random() < 0.5 else rng.random() * 1e6

    lo_hi = {"mixed": (0.0, 1e6), "unixtime": (1_700_000_000.0, 1_700_001_000.0)}
    lo, hi = lo_hi.get(kind, (-1.0, 1.0))
    for i in range(300):
        run("add new", lambda i=i: zs.add(f"{prefix}new:{i}", score()))
        run("add existing", lambda: zs.add(member(), score()))
        run("add gt", lambda: zs.add(member(), score(), gt=True))
        run("incr", lambda: zs.incr(member(), rng.choice((1.0, -2.5, 1000.0))))
        run("remove", lambda i=i: zs.remove(f"{prefix}new:{i}"))
        run("rank", lambda: zs.rank(member()))
        run("rank reverse", lambda: zs.rank(member(), reverse=True))
        run("score", lambda: zs.score(member()))
        start = rng.randrange(-MEMBERS, MEMBERS)
        run("range 10", lambda s=start: zs.range(s, s + 9 if s < -10 or s >= 0 else -1))
        run("range reverse 10", lambda s=start: zs.range(abs(s), abs(s) + 9, reverse=True))
        x = lo + rng.random() * (hi - lo)
        run("range_by_score 10", lambda x=x: zs.range_by_score(x, hi, limit=10))
        run("range_by_score rev 10", lambda x=x: zs.range_by_score(lo, x, limit=10, reverse=True))
        off = rng.randrange(MEMBERS // 2)
        run("range_by_score offset", lambda o=off: zs.range_by_score(lo, hi, offset=o, limit=10))
        run("pop_min", lambda: zs.pop_min())
        run("len", lambda: len(zs))
    print(kind, sorted(worst.items(), key=lambda x: -x[1]))
    assert max(worst.values()) <= BOUND, worst
    # the results are right too, not just cheap
    m = f"{prefix}{MEMBERS - 1:05d}"
    zs.add(m, 5.0)
    r = zs.rank(m)
    assert r is not None and zs.range(r, r) == [(m.encode(), 5.0)]
    got = zs.range_by_score(5.0, 5.0, limit=1)
    assert got == [(m.encode(), 5.0)] or got[0][1] == 5.0
