"""Concurrent writers: simulated nodes producing siblings, and threads on one RocksDB store.

Simulated cluster (``tests/feeds/harness.py``): each writer works through its own node of a
``SimCluster`` with a seeded interleaving of its store calls and random partial replication in
between, so writers act on stale copies and siblings appear in member records and tree nodes.
Writers increment shared *hot* members, add the same *contested* member with their own scores,
and add, move and remove their own members. After a full anti-entropy pass:

* every hot member's score is the sum of every increment made (a counter, not last-writer-wins);
* the contested member has one of the scores added, the same read through every node;
* every writer's own members are there with their last scores (none lost);
* once each member has been read again (which settles what concurrent writers left) and that
  has replicated, ``len``, every rank and every range are exact, and ``repair`` finds nothing.

Threads: the same on one embedded RocksDB store, where interleaved read-modify-writes of the
same member or tree node produce siblings too.
"""

from __future__ import annotations

import math
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import ring
from search.sortedset import SortedSet
from tests.feeds.harness import NodeStore, SimCluster, Stepper

NAME = "board"
HOT = [b"hot0", b"hot1"]
CONTESTED = b"contested"
SEEDS = int(os.environ.get("RINGKV_ZSET_SEEDS", "60"))


class Watch(NodeStore):
    """A node store that counts reads that found siblings, by record kind."""

    def __init__(self, node: Any, before: Any, seen: Counter[str]) -> None:
        super().__init__(node, before)
        self.seen = seen

    def get_versioned(self, key: Any) -> Any:
        v = super().get_versioned(key)
        if len(v.values) > 1:
            self.seen[key.split(b":", 3)[3][:1].decode()] += 1
        return v


class Expect:
    """What the writers did: increments, contested scores, each writer's own members."""

    def __init__(self) -> None:
        self.incr: dict[bytes, float] = {}  # incremented members: the sum of their increments
        self.contested: set[float] = set()
        self.own: dict[bytes, float | None] = {}


def writer_ops(zs: SortedSet, w: int, ops: int, rng: random.Random, out: Expect) -> None:
    for seq in range(ops):
        r = rng.random()
        if r < 0.35:
            m = rng.choice(HOT)
            by = float(rng.choice((1, 2, 5, -3)))
            zs.incr(m, by)
            out.incr[m] = out.incr.get(m, 0.0) + by
        elif r < 0.5:
            s = float(100 * w + seq)
            zs.add(CONTESTED, s)
            out.contested.add(s)
        elif r < 0.85:
            m = f"w{w}-{rng.randrange(3)}".encode()
            s = float(rng.randrange(50))
            zs.add(m, s)
            out.own[m] = s
        else:
            m = f"w{w}-{rng.randrange(3)}".encode()
            zs.remove(m)
            out.own[m] = None
        if rng.random() < 0.2:
            zs.range(0, rng.randrange(-3, 5))  # reads verify (and settle) what they meet


def check_exact(zs: SortedSet) -> None:
    """Everything the set answers agrees with its member records."""
    scores = {m: zs.score(m) for m in [*HOT, CONTESTED, *sorted(OWN)]}
    want = sorted(((m, s) for m, s in scores.items() if s is not None), key=lambda x: (x[1], x[0]))
    assert len(zs) == len(want)
    assert zs.range(0, -1) == want
    assert zs.range(0, -1, reverse=True) == want[::-1]
    assert zs.range_by_score(-math.inf, math.inf) == want
    for r, (m, _) in enumerate(want):
        assert zs.rank(m) == r
    report = zs.repair()
    assert report.records_fixed == report.nodes_fixed == 0, report
    # A read deletes the stale index keys it meets, and ranges start at the first live key the
    # count tree finds: an index key left by the losing side of a concurrent move before the
    # lowest live key is met by no read (never returned, never counted) and only repair drops it.
    assert report.entries_added == 0, report
    again = zs.repair()
    assert again.records_fixed == again.nodes_fixed == again.entries_deleted == 0, again


OWN = [f"w{w}-{i}".encode() for w in range(8) for i in range(3)]


def run_scenario(seed: int, nodes: int = 3, writers: int = 4, ops: int = 10) -> Counter[str]:
    rng = random.Random(seed)
    cluster = SimCluster(nodes)
    stepper = Stepper(rng)
    steps = [0]
    seen: Counter[str] = Counter()
    out = Expect()
    skew = [rng.randrange(-40, 40) for _ in range(writers)]

    def between() -> None:
        steps[0] += 1
        cluster.gossip(rng, rng.choice((0, 0, 0, 1, 2, 5)))

    def writer(w: int) -> None:
        store = Watch(cluster.nodes[w % nodes], stepper.hook, seen)
        zs = SortedSet(
            store, NAME, writer=bytes([w + 1]) * 8, clock=lambda: 10_000 + 10 * steps[0] + skew[w]
        )
        writer_ops(zs, w, ops, random.Random(rng.random()), out)

    try:
        stepper.run([lambda w=w: writer(w) for w in range(writers)], between)
        cluster.sync()
        views = [
            SortedSet(node, NAME, writer=b"reader%02d" % i) for i, node in enumerate(cluster.nodes)
        ]
        for m in HOT:
            for zs in views:
                assert zs.score(m) == out.incr.get(m), "every increment counts, once"
        contested = {zs.score(CONTESTED) for zs in views}
        assert len(contested) == 1, contested
        (got,) = contested
        assert got in out.contested or (got is None and not out.contested)
        for m, s in out.own.items():
            assert views[0].score(m) == s, m
        cluster.sync()  # the settling reads above reach every node
        for zs in views:
            check_exact(zs)
    finally:
        cluster.close()
    return seen


@pytest.mark.parametrize("seed", range(SEEDS))
def test_concurrent_writers_through_different_nodes(seed: int) -> None:
    try:
        run_scenario(seed)
    except BaseException as exc:
        exc.add_note(f"replay: run_scenario({seed}) in tests/search/test_sortedset_concurrency.py")
        raise


def test_scenarios_really_produce_siblings() -> None:
    seen: Counter[str] = Counter()
    for seed in range(10):
        seen.update(run_scenario(seed))
    assert seen["m"] >= 10 and seen["t"] >= 10, seen


@pytest.mark.parametrize("seed", range(8))
def test_many_writers_on_two_nodes(seed: int) -> None:
    run_scenario(1000 + seed, nodes=2, writers=8, ops=6)


# --- threads on one embedded store -------------------------------------------------------------


def test_threads_on_one_embedded_store(tmp_path: Path) -> None:
    threads, ops = 6, 50
    with ring.open(str(tmp_path / "data")) as store:
        siblings = Counter[str]()
        lock = threading.Lock()

        class Shared:
            def get_versioned(self, key: Any) -> Any:
                v = store.get_versioned(key)
                if len(v.values) > 1:
                    with lock:
                        siblings[key.split(b":", 3)[3][:1].decode()] += 1
                time.sleep(0)  # let another thread run between this read and its write
                return v

            def put(self, key: Any, value: Any, context: Any = None) -> None:
                store.put(key, value, context=context)

            def delete(self, key: Any, context: Any = None) -> None:
                store.delete(key, context=context)

            def scan(self, *args: Any, **kwargs: Any) -> Any:
                return store.scan(*args, **kwargs)

        zs = SortedSet(Shared(), NAME)  # one instance, shared: each thread is its own writer
        outs = [Expect() for _ in range(threads)]
        barrier = threading.Barrier(threads)
        errors: list[BaseException] = []

        def work(t: int) -> None:
            barrier.wait()
            try:
                writer_ops(zs, t, ops, random.Random(t), outs[t])
            except BaseException as exc:
                errors.append(exc)

        pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)  # switch threads often: read-modify-writes must interleave
        try:
            for th in pool:
                th.start()
            for th in pool:
                th.join(timeout=120)
        finally:
            sys.setswitchinterval(interval)
        assert not errors, errors[0]
        for m in HOT:
            assert zs.score(m) == sum(o.incr.get(m, 0.0) for o in outs)
        assert zs.score(CONTESTED) in set().union(*(o.contested for o in outs))
        for o in outs:
            for m, s in o.own.items():
                assert zs.score(m) == s
        check_exact(zs)
        assert siblings["m"] > 0 and siblings["t"] > 0, siblings
