"""Concurrent writers through different nodes of a simulated cluster lose nothing.

Each scenario runs several writers, each through its own node of a ``SimCluster``, adding,
appending, removing (their own entries and others'), walking and repairing the same feed, with
a seeded interleaving of their store calls and random partial replication in between — so
writers act on stale copies and siblings appear in the header and in entry links. After a full
anti-entropy pass:

* ``count`` (one header read, before any walk has repaired anything) is exact;
* the forward walk lists every added and not removed entry exactly once, in position order,
  each writer's adds newest first and appends oldest first;
* the backward walk is the reverse of the forward walk;
* after those walks the feed is clean: walks through another node make no writes and no scans.

A failing scenario prints its seed; ``RINGKV_FEEDS_SEEDS=<n>`` runs more of them.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from feeds import Feeds
from tests.feeds.harness import CountingStore, NodeStore, SimCluster, Stepper

FEED = "timeline"
SEEDS = int(os.environ.get("RINGKV_FEEDS_SEEDS", "120"))


@dataclass
class Outcome:
    added: dict[str, tuple[int, str, int]] = field(default_factory=dict)  # id -> writer, kind, seq
    removed: set[str] = field(default_factory=set)
    header_siblings: int = 0
    entry_siblings: int = 0
    walks: int = 0
    log_limit: int = 64


class SiblingWatch(NodeStore):
    """A node store that remembers the most siblings seen in headers and in entries."""

    def __init__(self, node: object, before: object, read_ahead: bool) -> None:
        super().__init__(node, before, read_ahead)  # type: ignore[arg-type]
        self.header_max = self.entry_max = 0

    def read_done(self, key: bytes, v: object) -> None:
        super().read_done(key, v)
        n = len(v.values)  # type: ignore[attr-defined]
        if key.endswith(b":h"):
            self.header_max = max(self.header_max, n)
        else:
            self.entry_max = max(self.entry_max, n)


def run_scenario(
    seed: int, nodes: int = 3, writers: int = 4, ops: int = 8, log_limit: int = 64
) -> Outcome:
    rng = random.Random(seed)
    cluster = SimCluster(nodes)
    stepper = Stepper(rng)
    out = Outcome(log_limit=log_limit)
    steps = [0]
    skew = [rng.randrange(-40, 40) for _ in range(writers)]

    def between() -> None:
        steps[0] += 1
        cluster.gossip(rng, rng.choice((0, 0, 0, 1, 2, 5)))

    def writer(w: int) -> None:
        # Odd seeds: walks read entries ahead (``scan_versioned``), as on the embedded store.
        store = SiblingWatch(cluster.nodes[w % nodes], stepper.hook, read_ahead=seed % 2 == 1)
        feeds = Feeds(
            store,
            writer=bytes([w + 1]) * 4,
            clock=lambda: 10_000 + 10 * steps[0] + skew[w],
            log_limit=log_limit,
        )
        for seq in range(ops):
            r = rng.random()
            if r < 0.35:
                out.added[feeds.add(FEED, f"w{w}-{seq}")] = (w, "add", seq)
            elif r < 0.55:
                out.added[feeds.append(FEED, f"w{w}-{seq}")] = (w, "append", seq)
            elif r < 0.8 and out.added:
                target = rng.choice(sorted(out.added))
                if feeds.remove(FEED, target):
                    out.removed.add(target)
            elif r < 0.93:
                got = [e.id for e in feeds.entries(FEED, reverse=rng.random() < 0.5)]
                assert len(set(got)) == len(got), "a walk listed an entry twice"
                assert got in (sorted(got), sorted(got, reverse=True)), "a walk left position order"
                out.walks += 1
            else:
                feeds.repair(FEED)
        out.header_siblings = max(out.header_siblings, store.header_max)
        out.entry_siblings = max(out.entry_siblings, store.entry_max)

    try:
        stepper.run([lambda w=w: writer(w) for w in range(writers)], between)
        cluster.sync()
        check_converged(cluster, out)
    finally:
        cluster.close()
    return out


def check_converged(cluster: SimCluster, out: Outcome) -> None:
    expected = sorted(set(out.added) - out.removed)
    reader = Feeds(cluster.nodes[0], log_limit=out.log_limit)
    assert reader.count(FEED) == len(expected), "count after anti-entropy, before any repair"
    forward = [e.id for e in reader.entries(FEED)]
    assert forward == expected
    backward = [e.id for e in reader.entries(FEED, reverse=True)]
    assert backward == forward[::-1]
    for w in {w for w, _, _ in out.added.values()}:
        mine = [i for i in forward if out.added[i][0] == w]
        adds = [out.added[i][2] for i in mine if out.added[i][1] == "add"]
        appends = [out.added[i][2] for i in mine if out.added[i][1] == "append"]
        assert adds == sorted(adds, reverse=True), f"writer {w}'s adds out of order"
        assert appends == sorted(appends), f"writer {w}'s appends out of order"
    assert reader.count(FEED) == len(expected)
    # The walks above repaired what they met; once that has replicated the feed is clean.
    cluster.sync()
    counting = CountingStore(cluster.nodes[-1])
    again = Feeds(counting, log_limit=out.log_limit)
    assert [e.id for e in again.entries(FEED)] == expected
    assert [e.id for e in again.entries(FEED, reverse=True)] == expected[::-1]
    assert counting.writes == 0 and counting.counts.get("scan", 0) == 0, counting.counts


@pytest.mark.parametrize("seed", range(SEEDS))
def test_concurrent_writers_through_different_nodes(seed: int) -> None:
    try:
        run_scenario(seed)
    except BaseException as exc:
        exc.add_note(f"replay: run_scenario({seed}) in tests/feeds/test_concurrency_sim.py")
        raise


def test_scenarios_really_produce_siblings() -> None:
    """The simulation is only worth something if concurrency shows up as siblings."""
    seen: Counter[str] = Counter()
    for seed in range(40):
        out = run_scenario(seed)
        seen["header"] += out.header_siblings > 1
        seen["entry"] += out.entry_siblings > 1
        seen["removed"] += bool(out.removed)
    assert seen["header"] >= 10 and seen["entry"] >= 5 and seen["removed"] >= 20, seen


@pytest.mark.parametrize("seed", range(10))
def test_many_writers_on_two_nodes(seed: int) -> None:
    run_scenario(1000 + seed, nodes=2, writers=8, ops=6)
