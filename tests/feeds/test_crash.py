"""A crash between any two store operations leaves a feed that walks; repair finishes the job.

``CrashingStore`` lets k writes through and raises on the next one — the process died there.
For every k, the feed must afterwards walk the same both ways, show either the state before
the operation or the state after it, and (after one full walk) have a count that matches the
walk; ``repair`` then leaves a clean feed. A real ``kill -9`` in the middle of a stream of adds
is in ``test_kill.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import ring
from feeds import Feeds
from tests.feeds.harness import CountingStore, Crash, CrashingStore

FEED = "crashy"


def walk_both_ways(f: Feeds) -> list[str]:
    forward = [e.id for e in f.entries(FEED)]
    backward = [e.id for e in f.entries(FEED, reverse=True)]
    assert backward == forward[::-1]
    return forward


def assert_clean(store: ring.Store) -> None:
    """A walk both ways makes no writes and needs no scan: the links are exact."""
    counting = CountingStore(store)
    walk_both_ways(Feeds(counting))
    assert counting.writes == 0 and "scan" not in counting.counts, counting.counts


def build(store: ring.Store, n: int = 4) -> list[str]:
    f = Feeds(store)
    ids = [f.add(FEED, f"a{i}") for i in range(n)]
    ids += [f.append(FEED, f"z{i}") for i in range(n)]
    return sorted(ids)


Op = Callable[[Feeds, list[str]], object]
OPS: dict[str, tuple[Op, int]] = {
    "add": (lambda f, ids: f.add(FEED, "new"), 3),
    "append": (lambda f, ids: f.append(FEED, "new"), 3),
    "remove first": (lambda f, ids: f.remove(FEED, ids[0]), 2),
    "remove middle": (lambda f, ids: f.remove(FEED, ids[3]), 2),
    "remove last": (lambda f, ids: f.remove(FEED, ids[-1]), 2),
    "add to empty": (lambda f, ids: f.add("empty", "new"), 2),
}


@pytest.mark.parametrize("name", OPS)
def test_crash_between_any_two_writes(name: str) -> None:
    op, writes = OPS[name]
    for k in range(writes + 1):
        with ring.open(backend="memory") as store:
            before = build(store)
            crashing = CrashingStore(store, writes_allowed=k)
            try:
                op(Feeds(crashing), before)
            except Crash:
                assert k < writes
            else:
                assert k == writes, f"{name} made fewer writes than expected"
            f = Feeds(store)
            if name == "add to empty":
                got = [e.id for e in f.entries("empty")]
                assert len(got) == f.count("empty") <= 1
                continue
            now = walk_both_ways(f)
            changed = set(now) ^ set(before)
            assert len(changed) <= 1, f"crash after {k} writes of {name}: {changed}"
            assert f.count(FEED) == len(now), f"crash after {k} writes of {name}"
            report = f.repair(FEED)
            assert report.count_after == len(walk_both_ways(f)) == f.count(FEED)
            assert_clean(store)


def test_an_interrupted_add_is_rolled_forward_by_repair() -> None:
    with ring.open(backend="memory") as store:
        before = build(store)
        with pytest.raises(Crash):
            Feeds(CrashingStore(store, writes_allowed=1)).add(FEED, "orphan")
        f = Feeds(store)
        assert walk_both_ways(f) == before, "an entry nothing links to yet is not shown"
        assert f.count(FEED) == len(before)
        report = f.repair(FEED)
        after = walk_both_ways(f)
        assert len(after) == len(before) + 1 and after[1:] == before
        assert report.count_after == f.count(FEED) == len(after)
        assert [e.data for e in f.entries(FEED, limit=1)] == [b"orphan"]


def test_a_walk_finishes_an_interrupted_remove() -> None:
    """The removal flag was written, the header not: the next full walk notices (the removal is
    inside the header's log window) and corrects the count by naming the removal."""
    with ring.open(backend="memory") as store:
        before = build(store)
        with pytest.raises(Crash):
            Feeds(CrashingStore(store, writes_allowed=1)).remove(FEED, before[2])
        f = Feeds(store)
        assert f.count(FEED) == len(before), "the header has not heard of it"
        assert walk_both_ways(f) == before[:2] + before[3:]
        assert f.count(FEED) == len(before) - 1
        assert not f.remove(FEED, before[2])
        assert f.count(FEED) == len(before) - 1


def messy_feed(store: ring.Store) -> list[str]:
    """A feed with removed entries still linked, a crashed add and a crashed remove."""
    ids = build(store, 6)
    f = Feeds(store)
    for entry_id in ids[2:5]:
        f.remove(FEED, entry_id)
    with pytest.raises(Crash):
        Feeds(CrashingStore(store, 1)).add(FEED, "orphan")
    with pytest.raises(Crash):
        Feeds(CrashingStore(store, 1)).remove(FEED, ids[8])
    return ids


@pytest.mark.parametrize("what", ["repair", "walk"])
def test_crash_inside_a_repair_or_a_repairing_walk(what: str) -> None:
    for k in range(12):
        with ring.open(backend="memory") as store:
            messy_feed(store)
            crashing = Feeds(CrashingStore(store, writes_allowed=k))
            try:
                if what == "repair":
                    crashing.repair(FEED)
                else:
                    list(crashing.entries(FEED))
            except Crash:
                pass
            f = Feeds(store)
            walk_both_ways(f)
            report = f.repair(FEED)
            assert walk_both_ways(f) == walk_both_ways(f)
            assert report.count_after == f.count(FEED) == len(walk_both_ways(f))
            assert_clean(store)


def test_repair_reaps_old_removed_records() -> None:
    now = [10**12]
    with ring.open(backend="memory") as store:
        f = Feeds(store, clock=lambda: now[0], reap_after_s=60)
        ids = [f.append(FEED, str(i)) for i in range(6)]
        f.remove(FEED, ids[1])
        f.remove(FEED, ids[4])
        assert f.repair(FEED).reaped == 0, "too recent"
        now[0] += 61 * 1_000_000
        report = f.repair(FEED)
        assert report.reaped == 2 and report.entries == 4
        assert len(list(store.scan(prefix=b"feeds:"))) == 1 + 4
        assert walk_both_ways(f) == [ids[0], ids[2], ids[3], ids[5]]
        assert_clean(store)
