"""The cost bound: at 20,000 members no single call touches more than 60 records.

A wrapper store counts every store call and every item a scan yields. ``add``, ``remove``,
``incr`` and ``rank`` touch O(log n) records (4 tree levels), ``range`` and ``range_by_score``
O(log n + k); the test runs each many times at random positions of a 20,000-member set whose
scores are random floats and small integers (so there are ties) and checks the maximum.
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


@pytest.fixture(scope="module")
def big() -> Iterator[tuple[Touches, SortedSet, random.Random]]:
    rng = random.Random(20_000)
    with ring.open(backend="memory") as store:
        zs = SortedSet(store, "big")
        for i in range(MEMBERS):
            score = rng.random() * 1e6 if i % 2 else float(rng.randrange(5_000))
            zs.add(f"member:{i:05d}", score)
        touches = Touches(store)
        yield touches, SortedSet(touches, "big"), rng


def measure(touches: Touches, call: Any) -> int:
    before = touches.total
    call()
    return touches.total - before


def test_every_call_touches_at_most_60_records(
    big: tuple[Touches, SortedSet, random.Random],
) -> None:
    touches, zs, rng = big
    assert len(zs) == MEMBERS
    worst: dict[str, int] = {}

    def run(name: str, call: Any) -> None:
        worst[name] = max(worst.get(name, 0), measure(touches, call))

    def member() -> str:
        return f"member:{rng.randrange(MEMBERS):05d}"

    for i in range(300):
        run("add new", lambda i=i: zs.add(f"new:{i}", rng.random() * 1e6))
        run("add existing", lambda: zs.add(member(), rng.random() * 1e6))
        run("add gt", lambda: zs.add(member(), rng.random() * 1e6, gt=True))
        run("incr", lambda: zs.incr(member(), rng.choice((1.0, -2.5, 1000.0))))
        run("remove", lambda i=i: zs.remove(f"new:{i}"))
        run("rank", lambda: zs.rank(member()))
        run("rank reverse", lambda: zs.rank(member(), reverse=True))
        run("score", lambda: zs.score(member()))
        start = rng.randrange(-MEMBERS, MEMBERS)
        run("range 10", lambda s=start: zs.range(s, s + 9 if s < -10 or s >= 0 else -1))
        run("range reverse 10", lambda s=start: zs.range(abs(s), abs(s) + 9, reverse=True))
        lo = rng.random() * 1e6
        run("range_by_score 10", lambda lo=lo: zs.range_by_score(lo, 2e6, limit=10))
        run("range_by_score rev 10", lambda lo=lo: zs.range_by_score(0, lo, limit=10, reverse=True))
        run("len", lambda: len(zs))
    print(sorted(worst.items(), key=lambda x: -x[1]))
    assert max(worst.values()) <= BOUND, worst
    assert len(zs) == MEMBERS
    # the results are right too, not just cheap
    r = zs.rank("member:00042")
    assert r is not None and zs.range(r, r)[0][0] == b"member:00042"
