"""Bugs the simulator found in the core, each guarded by its seeds and a distilled scenario.

**Partial ring after a (re)start** (found by seeds 480, 513, 742, 788, 840, 966 of the first
version of the simulator; guarded by the seeds below, which show it in the current one:
``RINGKV_SIM_SEED=<n> python -m ring.sim --nodes 5 --n 3 --r 2 --w 2 --ops 200``). A node
that starts knows only itself and learns the other members piecemeal: the first ping it gets
names one peer. With the
ring ``[n4, n5]`` it coordinated a put, stored it on n5 and n4 (W=2 met) and acknowledged it;
a moment later it learned the whole ring, in which neither n4 nor n5 is a replica of the key.
The write was never found again. Fix (``ring.core.view``): a node serves only
from a whole view: after a restart it starts from the ring it last knew (kept in its storage;
members it has not heard from yet are down, not absent) and serves once it received a full
membership table from a member; a fresh node serves once a serving member sent it its table;
until then it answers reads and writes with ``unavailable``.

Since ownership became an explicit table made by the claimant (``ring.core.table``), a node's
ring is never derived from the members it happens to have heard of, so the bug cannot come back
in that form; the seeds stay as regression runs, and the distilled scenarios below check the
serving rules on the table. (The ring-change planted bugs of ``tests/sim/test_planted.py``
guard the epochs that replaced it.)
"""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest

from ring.core import messages as m
from ring.core.layout import RING_KEY
from ring.core.membership import MEMBER, SERVING, Ping, SyncReply
from ring.core.node import Node, NodeConfig
from ring.core.table import Table
from ring.core.view import StartupError
from ring.sim import SimConfig, run_seed
from ring.storage.memory import MemoryStorage

PARTIAL_RING_SEEDS = [0, 4, 19, 23, 25, 28]  # re-chosen when restarts began from their ring


@pytest.mark.parametrize("seed", PARTIAL_RING_SEEDS)
def test_partial_ring_seed(seed: int) -> None:
    assert run_seed(seed).violations == []


CFG = dict(partitions=16)
NAMES = ("n1", "n2", "n3")


def _remember(storage: MemoryStorage, names: tuple[str, ...] = NAMES) -> Table:
    """What a node of a serving cluster of ``names`` keeps on disk."""
    table = Table.of(names, 16, 3, epoch=4)
    addresses = [[x, f"{x}:7000"] for x in names]
    storage.put(RING_KEY, msgpack.packb({"table": table.to_wire(), "addresses": addresses}))
    return table


def _node(storage: MemoryStorage, **extra: Any) -> Node:
    seeds = ("n1:7000", "n2:7000", "n3:7000")
    cfg = NodeConfig(name="n1", address="n1:7000", seeds=seeds, **{**CFG, **extra})
    node = Node(cfg, storage, now_ms=1000, rng=random.Random(1))
    node.start(1000)
    return node


def _table(
    src: str, records: list[Any], flags: int = SERVING | MEMBER, epoch: int = 0
) -> SyncReply:
    settings = NodeConfig(name="x", address="x:1", **CFG).view_config().settings()
    return SyncReply(src, 0, 1, records, flags, settings, "", epoch)


def _put(node: Node, req_id: int) -> list[Any]:
    return node.handle(m.ClientRequest(req_id, "put", {"key": b"k", "value": b"v"}), 1001)


def _record(name: str, state: str = "up") -> list[Any]:
    return [name, f"{name}:7000", 1, state]  # above the incarnation 0 of a remembered member


def test_a_node_does_not_coordinate_from_a_partial_ring() -> None:
    storage = MemoryStorage()
    _remember(storage)  # what it knew before the restart
    node = _node(storage)
    # A ping from n2 teaches it n2 only; its ring stays the table it remembers.
    node.handle(m.Datagram("n2:7000", Ping(1, "n2", [_record("n2")], 4)), 1001)
    assert node.ring.members() == NAMES and not node.ready()
    [reply] = [e for e in _put(node, 1) if isinstance(e, m.Reply)]
    assert reply.error == "unavailable" and "does not serve yet" in reply.result
    # A full membership table from a member: it serves on the table it remembers, where n3
    # is a replica (down until heard from: the write goes to n2, and n3 gets a hint).
    node.handle(m.Datagram("n2:7000", _table("n2", [_record("n2")], epoch=4)), 1002)
    assert node.ready()
    sent = [e.dest for e in _put(node, 2) if isinstance(e, m.Send)]
    assert sent == ["n2"] and node.status()["hints"] == {"n3": 1}


def test_a_fresh_node_serves_after_a_full_table_from_a_serving_member() -> None:
    storage = MemoryStorage()
    node = _node(storage)
    node.handle(m.Datagram("n2:7000", Ping(1, "n2", [_record("n2")])), 1001)
    assert not node.ready()
    table = [_record("n1", "joining"), _record("n2"), _record("n3")]
    # A member that does not serve itself (it is rejoining) cannot vouch for the whole ring.
    node.handle(m.Datagram("n2:7000", _table("n2", table, flags=MEMBER)), 1002)
    assert not node.ready() and node.status()["members"][0]["state"] == "joining"
    out = node.handle(m.Datagram("n2:7000", _table("n2", table, epoch=4)), 1003)
    # A whole membership table, but no ownership table yet: it asks the member for it.
    assert not node.ready()
    assert [(e.dest, e.msg) for e in out if isinstance(e, m.Send)] == [
        ("n2", m.TableRequest(0, "n1:7000"))
    ]
    cluster = Table.of(NAMES, 16, 3, epoch=4)
    node.handle(m.PeerMessage("n2", m.TableUpdate(cluster.to_wire())), 1004)
    assert node.ready() and node.status()["members"][0]["state"] == "up"
    remembered = msgpack.unpackb(storage.get(RING_KEY))
    assert remembered["addresses"] == [["n1", "n1:7000"], ["n2", "n2:7000"], ["n3", "n3:7000"]]
    assert Table.from_wire(remembered["table"]) == cluster
    # Restarted on the same disk, its ring is the table it remembers (n3 down until heard
    # from), not a view of the first peer that talks to it; it serves after a member's table.
    again = _node(storage)
    assert again.ring == cluster and not again.ready()
    again.handle(m.Datagram("n2:7000", _table("n2", [_record("n2")], epoch=4)), 1003)
    assert again.ready() and again.ring == cluster


def test_only_a_founder_serves_alone() -> None:
    cfg = NodeConfig(name="solo", address="solo:7000", n=1, r=1, w=1, new_cluster=True)
    node = Node(cfg, MemoryStorage(), now_ms=0, rng=random.Random(1))
    node.start(0)
    [reply] = [e for e in _put(node, 1) if isinstance(e, m.Reply)]
    assert reply.error is None
    # An empty data directory, no seeds, not told to found: refused, with what to do.
    with pytest.raises(StartupError, match="give --seeds to join a cluster or --new-cluster"):
        Node(NodeConfig(name="x", address="x:1"), MemoryStorage(), now_ms=0, rng=random.Random(1))


def test_a_node_restarted_without_seeds_rejoins_through_the_ring_it_remembers() -> None:
    """ringd restarted without --seeds must not serve from a ring of itself: it waits for its
    old peers, and it asks them (their addresses are remembered)."""
    storage = MemoryStorage()
    _remember(storage)
    cfg = NodeConfig(name="n1", address="n1:7000", **CFG)
    node = Node(cfg, storage, now_ms=1000, rng=random.Random(1))
    joins = node.start(1000)
    assert sorted(e.address for e in joins if isinstance(e, m.SendDatagram)) == [
        "n2:7000",
        "n3:7000",
    ]
    [reply] = [e for e in _put(node, 1) if isinstance(e, m.Reply)]
    assert reply.error == "unavailable"
    table = [_record("n1"), _record("n2"), _record("n3")]
    node.handle(m.Datagram("n2:7000", _table("n2", table, flags=MEMBER)), 1002)
    assert node.ready()


# --- ring changes -------------------------------------------------------------------------------
#
# Seeds that found bugs in the ownership-table code while it was written, each with what it found
# (the fix is named in the code it touched). They replay exactly; each must run clean.
RING_CHANGE_SEEDS: list[tuple[int, SimConfig, str]] = [
    (1, SimConfig(), "a receiver dropped by a later plan kept what it had copied"),
    (24, SimConfig(), "read repair routed on the current epoch reached a replica of the old one"),
    (43, SimConfig(), "a leaving node restarted after it was let go: halted instead of exiting"),
    (76, SimConfig(), "a hint delivered to a departing owner after its copier passed the key"),
    (210, SimConfig(), "a retiring claimant exited before anyone had the table that let it go"),
    (518, SimConfig(), "a retried write took an old replica's ack for a new fallback's"),
    (23, SimConfig(min_changes=3), "a removed member stayed in cleanup lists forever"),
    (33, SimConfig(min_changes=3), "a claimant cut off by a partition retired with the table"),
    (
        617,
        SimConfig(min_changes=3, keys=32),
        "a partition came back to a node that had deleted it: it reused its own counters",
    ),
    (8520, SimConfig(), "a member that left, known by name only, never got the table"),
    (
        50718,
        SimConfig(min_changes=3, keys=32),
        "a hint made before a move reached its target only, not the member that replaced it",
    ),
    (
        51528,
        SimConfig(min_changes=3, keys=32),
        "a member that left came back as down after restarts (gone names not marked left)",
    ),
]


@pytest.mark.parametrize(
    ("seed", "config", "found"), RING_CHANGE_SEEDS, ids=[str(s) for s, _, _ in RING_CHANGE_SEEDS]
)
def test_ring_change_seed(seed: int, config: SimConfig, found: str) -> None:
    result = run_seed(seed, config)
    assert result.violations == [], found
    assert result.counters.get("leave", 0) + result.counters.get("remove", 0) > 0


# Seeds that found bugs in anti-entropy and reaping while it was written (the simulator changed
# after some of them, so the runs differ from the ones that found the bug; each must run clean).
AAE_SEEDS: list[tuple[int, SimConfig, str]] = [
    (69, SimConfig(), "a member marked left by name only never got the acks of its hints"),
    (188, SimConfig(), "a reap confirmed by a replica that then lost the tombstone in a crash"),
    (226, SimConfig(), "a hint of an old value handed on after every owner reaped the delete"),
    (369, SimConfig(), "a late message carried back a value whose delete had been reaped"),
    (3, SimConfig(keys=32), "a reap checked against the hints of a member that was removed"),
    (2180, SimConfig(), "a node removed before it had joined: the remove was refused forever"),
    (7122, SimConfig(keys=32), "a node down before it had joined the table could not be removed"),
]


@pytest.mark.parametrize(
    ("seed", "config", "found"), AAE_SEEDS, ids=[str(s) for s, _, _ in AAE_SEEDS]
)
def test_anti_entropy_seed(seed: int, config: SimConfig, found: str) -> None:
    result = run_seed(seed, config)
    assert result.violations == [], found
