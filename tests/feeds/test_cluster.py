"""Feeds on a real three-node ``ringd`` cluster (N=3, R=2, W=2) on 127.0.0.1.

Writers in threads, each with its own client connected to a *different* node (so each node
coordinates some of the writes), add, append, remove (their own entries and each other's) and
walk one feed at once. Afterwards the feed holds exactly the entries added and not removed,
forward and backward, with the right count and each writer's entries in order; siblings really
appeared on the way; a walk through another node finds the feed clean. ``ringctl feed`` works
with ``--nodes``.

The nodes come from the shared harness (``tests/integration/harness.py``): port 0, killed by PID
in a ``finally``, every wait a condition polled against a deadline.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ring
from feeds import Feeds
from tests.feeds.harness import CountingStore, mixed_writes
from tests.integration.harness import Cluster

pytestmark = pytest.mark.integration

FEED = "shared"
WRITERS = 3
OPS = 60


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    cluster = Cluster(tmp_path_factory.mktemp("feeds-cluster"))  # the shared ringd harness
    try:
        cluster.start("node1", "node2", "node3")
        cluster.converge(cluster.all_up())
        yield [cluster.addresses[n] for n in ("node1", "node2", "node3")]
    finally:
        cluster.close()


class SiblingCounter:
    """A client that counts reads that found siblings."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.sibling_reads = 0

    def get_versioned(self, key: Any) -> Any:
        v = self.client.get_versioned(key)
        self.sibling_reads += len(v.values) > 1
        return v

    def put(self, key: Any, value: Any, context: Any = None) -> None:
        self.client.put(key, value, context=context)

    def delete(self, key: Any, context: Any = None) -> None:
        self.client.delete(key, context=context)

    def scan(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.scan(*args, **kwargs)


def test_concurrent_writers_through_different_nodes(nodes: list[str]) -> None:
    lock = threading.Lock()
    added: dict[str, tuple[int, str, int]] = {}
    removed: set[str] = set()
    errors: list[BaseException] = []
    siblings = [0] * WRITERS
    barrier = threading.Barrier(WRITERS)

    def work(w: int) -> None:
        rng = random.Random(w)
        with ring.connect(nodes[w]) as client:  # this writer's coordinator: node w
            store = SiblingCounter(client)
            f = Feeds(store)
            barrier.wait()
            try:
                mixed_writes(f, FEED, w, OPS, rng, added, removed, lock)
            except BaseException as exc:
                errors.append(exc)
            siblings[w] = store.sibling_reads

    threads = [threading.Thread(target=work, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[0]

    expected = sorted(set(added) - removed)
    with ring.connect(nodes[0]) as client:
        f = Feeds(client)
        assert f.count(FEED) == len(expected)
        forward = [e.id for e in f.entries(FEED)]
        assert forward == expected
        assert [e.id for e in f.entries(FEED, reverse=True)] == expected[::-1]
    for w in range(WRITERS):
        adds = [added[i][2] for i in forward if added[i][:2] == (w, "add")]
        appends = [added[i][2] for i in forward if added[i][:2] == (w, "append")]
        assert adds == sorted(adds, reverse=True) and appends == sorted(appends)
    with ring.connect(nodes[2]) as client:
        counting = CountingStore(client)
        assert [e.id for e in Feeds(counting).entries(FEED)] == expected
        assert counting.writes == 0, "the walks above left the feed clean"
    assert sum(siblings) > 0, "no writer ever met a sibling: the test proves little"


def test_ringctl_feed_with_nodes(nodes: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RINGKV_DATA", "RINGKV_NODES")}

    def ringctl(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "ring.cli.ringctl", "--nodes", ",".join(nodes), *args],
            capture_output=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        return proc.stdout.decode()

    first = ringctl("feed", "add", "cli", "one").strip()
    second = ringctl("feed", "add", "cli", "two").strip()
    assert ringctl("feed", "ls", "cli") == f"{second}\ttwo\n{first}\tone\n"
    assert ringctl("feed", "count", "cli") == "2\n"
    ringctl("feed", "rm", "cli", second)
    assert ringctl("feed", "ls", "cli", "--reverse") == f"{first}\tone\n"
    assert not list(tmp_path.iterdir()), "no embedded data directory was created"
