"""Threads writing one feed of one embedded store at once lose nothing.

Each thread is its own writer (its own ``Feeds``); they add, append, remove their own entries
and each other's, and walk, all at the same time. Reads and writes of different threads
interleave freely, so two writers often read the same header or entry and write it back from the
same context — siblings, as on a cluster. Afterwards the feed holds exactly the entries added
and not removed, in order both ways, with the right count, and one walk leaves it clean.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import ring
from feeds import Feeds
from tests.feeds.harness import CountingStore, mixed_writes

THREADS = 6
OPS = 150
FEED = "busy"


class SiblingCounter:
    """Passes calls through; counts reads that found siblings."""

    def __init__(self, store: ring.Store) -> None:
        self.store = store
        self.sibling_reads = 0
        self._lock = threading.Lock()

    def get_versioned(self, key: Any) -> Any:
        v = self.store.get_versioned(key)
        if len(v.values) > 1:
            with self._lock:
                self.sibling_reads += 1
        return v

    def put(self, key: Any, value: Any, context: Any = None) -> None:
        self.store.put(key, value, context=context)

    def delete(self, key: Any, context: Any = None) -> None:
        self.store.delete(key, context=context)

    def scan(self, *args: Any, **kwargs: Any) -> Any:
        return self.store.scan(*args, **kwargs)


def test_threads_on_one_embedded_store(tmp_path: Path) -> None:
    with ring.open(str(tmp_path / "data")) as store:
        shared = SiblingCounter(store)
        barrier = threading.Barrier(THREADS)
        lock = threading.Lock()
        added: dict[str, tuple[int, str, int]] = {}
        removed: set[str] = set()
        errors: list[BaseException] = []

        def work(t: int) -> None:
            rng = random.Random(t)
            f = Feeds(shared)
            barrier.wait()
            try:
                mixed_writes(f, FEED, t, OPS, rng, added, removed, lock)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        assert not errors, errors[0]

        f = Feeds(store)
        expected = sorted(set(added) - removed)
        assert f.count(FEED) == len(expected)
        forward = [e.id for e in f.entries(FEED)]
        assert forward == expected
        assert [e.id for e in f.entries(FEED, reverse=True)] == expected[::-1]
        for t in range(THREADS):
            adds = [added[i][2] for i in forward if added[i][:2] == (t, "add")]
            appends = [added[i][2] for i in forward if added[i][:2] == (t, "append")]
            assert adds == sorted(adds, reverse=True) and appends == sorted(appends)
        counting = CountingStore(store)
        assert [e.id for e in Feeds(counting).entries(FEED)] == expected
        assert counting.writes == 0
        assert shared.sibling_reads > 0, "the threads never collided: the test proves little"
