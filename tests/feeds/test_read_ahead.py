"""Walks on the embedded store read entries ahead through ``scan_versioned``.

The read-ahead must change nothing a user can see: the same entries in the same order as a walk
that looks each entry up, through removes, siblings, repairs and writes made while a walk is
under way; and it must replace the per-entry lookups it exists to save.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ring
from feeds import Feeds


class Lookups:
    """The store without ``scan_versioned``: every entry a walk reads is one lookup."""

    def __init__(self, store: ring.Store) -> None:
        self.store = store

    def get_versioned(self, key: Any) -> Any:
        return self.store.get_versioned(key)

    def put(self, key: Any, value: Any, context: Any = None) -> None:
        self.store.put(key, value, context=context)

    def delete(self, key: Any, context: Any = None) -> None:
        self.store.delete(key, context=context)

    def get(self, key: Any) -> Any:
        return self.store.get(key)

    def scan(self, *args: Any, **kwargs: Any) -> Iterator[tuple[bytes, bytes]]:
        return self.store.scan(*args, **kwargs)


class Counted(Lookups):
    """The store with ``scan_versioned``, counting lookups and scans."""

    def __init__(self, store: ring.Store) -> None:
        super().__init__(store)
        self.lookups = self.scans = 0

    def get_versioned(self, key: Any) -> Any:
        self.lookups += 1
        return super().get_versioned(key)

    def scan_versioned(self, *args: Any, **kwargs: Any) -> Iterator[tuple[bytes, Any]]:
        self.scans += 1
        return self.store.scan_versioned(*args, **kwargs)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ring.Store]:
    s = ring.open(str(tmp_path / "data"))
    yield s
    s.close()


def walks(f: Feeds, feed: str, start: str | None) -> list[list[str]]:
    pages: list[str] = []
    cursor = None
    while True:
        page = f.page(feed, cursor, limit=7)
        pages += (e.id for e in page.entries)
        if page.next is None:
            break
        cursor = page.next
    return [
        [e.id for e in f.entries(feed)],
        [e.id for e in f.entries(feed, reverse=True)],
        [e.id for e in f.entries(feed, start=start)],
        [e.id for e in f.entries(feed, start=start, reverse=True, limit=40)],
        pages,
    ]


@pytest.mark.parametrize("seed", range(4))
def test_walks_see_what_lookups_see(store: ring.Store, seed: int) -> None:
    rng = random.Random(seed)
    ahead, plain = Feeds(store, repair_on_walk=False), Feeds(Lookups(store), repair_on_walk=False)
    other = Feeds(store, writer=b"wr-2")  # a second writer: concurrent links become siblings
    ids = [
        ahead.add("f", b"x") if rng.random() < 0.5 else other.append("f", b"y") for _ in range(300)
    ]
    for entry_id in rng.sample(ids, 120):  # removed runs the walks must step over
        plain.remove("f", entry_id)
    start = rng.choice(ids)
    assert walks(ahead, "f", start) == walks(plain, "f", start)
    # Walks that repair what they pass: the same entries, and afterwards the same again.
    fixer = Feeds(store)
    assert [e.id for e in fixer.entries("f")] == walks(plain, "f", start)[0]
    assert walks(ahead, "f", start) == walks(plain, "f", start)


def test_a_walk_reads_runs_of_entries_in_a_few_scans(store: ring.Store) -> None:
    f = Feeds(store)
    for _ in range(1000):
        f.append("f", b"v")
    counted = Counted(store)
    got = [e.id for e in Feeds(counted).entries("f")]
    assert len(got) == 1000
    assert counted.lookups == 1  # the header; 16 + 32 + ... + 512 entries per scan
    assert counted.scans <= 7
    counted.lookups = counted.scans = 0
    assert len(list(Feeds(counted).entries("f", limit=3))) == 3
    assert counted.scans == 1  # a short walk asks a short scan


def test_a_walk_under_way_sees_a_consistent_feed_while_it_changes(store: ring.Store) -> None:
    rng = random.Random(7)
    f = Feeds(store)
    ids = [f.append("f", b"v") for _ in range(400)]
    before = set(ids)
    removed: set[str] = set()
    got: list[str] = []
    for n, entry in enumerate(f.entries("f", reverse=True)):
        got.append(entry.id)
        if n % 25 == 0:  # writes between the walk's steps, behind it and ahead of it
            f.add("f", b"new")
            f.append("f", b"new")
            victim = rng.choice(ids)
            if f.remove("f", victim):
                removed.add(victim)
    assert len(got) == len(set(got)), "an entry listed twice"
    assert got == sorted(got, reverse=True), "a walk left position order"
    # Every entry there when the walk began and never removed is listed.
    assert before - removed <= set(got)
    # And a walk after the writes sees exactly the feed.
    assert set(before - removed) <= {e.id for e in f.entries("f")}
