"""A crash at every write point of every operation; ``repair`` restores exactness.

``CrashingStore`` lets k writes through and raises on the next one — the process died there.
For every k of every operation: the member shows either its state before the operation or its
state after (the member record is the commit point); at once, before any ``repair``, ``len``,
every rank, every rank range, every score range and the pops are exact against that model (the
next reader finishes the crashed operation's intent: no live member is hidden, no stale index
key is returned); after ``repair`` everything is still exact, and a second ``repair`` finds
nothing to do.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

import ring
from search.sortedset import SortedSet
from tests.feeds.harness import Crash, CrashingStore

NAME = "crashy"
Model = dict[bytes, float]


def build(store: ring.Store) -> Model:
    zs = SortedSet(store, NAME)
    model: Model = {}
    for i in range(40):
        m, s = f"m{i:02d}".encode(), float((i * 37) % 23)
        zs.add(m, s)
        model[m] = s
    zs.incr(b"m05", 2.0)
    model[b"m05"] += 2.0
    return model


def ordered(model: Model) -> list[tuple[bytes, float]]:
    return sorted(model.items(), key=lambda x: (x[1], x[0]))


def assert_exact(zs: SortedSet, model: Model) -> None:
    want = ordered(model)
    assert len(zs) == len(want)
    assert zs.range(0, -1) == want
    assert zs.range(0, -1, reverse=True) == want[::-1]
    assert zs.range_by_score(-math.inf, math.inf) == want
    for r, (m, s) in enumerate(want):
        assert zs.rank(m) == r and zs.score(m) == s
    assert zs.range(3, 7) == want[3:8]


NEAR = 19 + 1e-6  # m03's score is 19: the same 4 leading bytes, so the same bucket
Op = Callable[[SortedSet], object]
OPS: dict[str, tuple[Op, Callable[[Model], None]]] = {
    "add new": (lambda z: z.add("new", 4.5), lambda m: m.__setitem__(b"new", 4.5)),
    "add existing": (lambda z: z.add("m03", 100.0), lambda m: m.__setitem__(b"m03", 100.0)),
    "add same bucket": (lambda z: z.add("m03", NEAR), lambda m: m.__setitem__(b"m03", NEAR)),
    "incr": (lambda z: z.incr("m07", -50.0), lambda m: m.__setitem__(b"m07", m[b"m07"] - 50.0)),
    "incr new": (lambda z: z.incr("fresh", 1.0), lambda m: m.__setitem__(b"fresh", 1.0)),
    "remove": (lambda z: z.remove("m11"), lambda m: m.pop(b"m11")),
}  # fmt: skip


@pytest.mark.parametrize("name", OPS)
def test_crash_at_every_write_point(name: str) -> None:
    op, effect = OPS[name]
    points = 0
    for k in range(40):
        with ring.open(backend="memory") as store:
            before = build(store)
            after = dict(before)
            effect(after)
            try:
                op(SortedSet(CrashingStore(store, writes_allowed=k), NAME))
            except Crash:
                points += 1
            else:
                assert points == k, "crashed at every write point before this one"
                break
            zs = SortedSet(store, NAME)
            changed = {m for m in before.keys() | after.keys() if before.get(m) != after.get(m)}
            (member,) = changed
            got = zs.score(member)
            assert got in (before.get(member), after.get(member))
            model = after if got == after.get(member) else before
            assert zs.range_by_score(-math.inf, math.inf) == ordered(model)
            assert_exact(zs, model)  # before repair: the crashed intent is finished by readers
            want = ordered(model)
            assert zs.pop_min(2) == want[:2] and zs.pop_max() == want[-1:]
            for m, sc in [*want[:2], want[-1]]:
                zs.add(m, sc)
            zs.repair()
            assert_exact(zs, model)
            report = zs.repair()
            assert report.records_fixed == report.nodes_fixed == 0, report
            assert report.entries_added == report.entries_deleted == 0, report
    assert points >= 3, f"{name} should have several write points"


def test_crash_in_pops_and_in_repair() -> None:
    for k in range(60):
        with ring.open(backend="memory") as store:
            model = build(store)
            zs = SortedSet(store, NAME)
            try:
                SortedSet(CrashingStore(store, writes_allowed=k), NAME).pop_min(3)
            except Crash:
                pass
            for m in list(model):
                if zs.score(m) is None:
                    del model[m]
            assert len(model) >= 37
            try:
                SortedSet(CrashingStore(store, writes_allowed=k // 3), NAME).repair()
            except Crash:
                pass
            zs.repair()
            assert_exact(zs, model)


def test_review_r11_a_crashed_move_hides_nothing() -> None:
    """The review's reproduction: an add that moves ``m`` from 1.0 to 1e10, crashed after each
    of its writes; ``range(0, -1)`` and ``pop_min`` still see ``m`` (they lost it before)."""
    for allowed in range(1, 12):
        with ring.open(backend="memory") as store:
            zs = SortedSet(store, "z")
            zs.add("m", 1.0)
            zs.add("n", 2.0)
            try:
                SortedSet(CrashingStore(store, writes_allowed=allowed), "z").add("m", 1e10)
            except Crash:
                pass
            s = zs.score("m")
            want = sorted([(b"m", s), (b"n", 2.0)], key=lambda x: (x[1], x[0]))
            assert len(zs) == 2 and zs.range(0, -1) == want, allowed
            assert zs.pop_min(2) == want, allowed
