"""How a node founds, joins or rejoins a cluster, and refuses one whose settings differ
(``ring.core.view``), on cores wired through an in-memory network."""

from __future__ import annotations

import random
from typing import Any

import pytest

from ring.core import messages as m
from ring.core.membership import MEMBER, Join, JoinRefused, Membership, Sync
from ring.core.node import Node, NodeConfig
from ring.core.view import StartupError
from ring.storage import MemoryStorage
from tests.unit.corecluster import Cluster

CFG = dict(partitions=16, vnodes=8)


def _settings(**over: Any) -> dict[str, Any]:
    return NodeConfig(name="x", address="x:1", **{**CFG, **over}).view_config().settings()


def _compose() -> Cluster:
    return Cluster(["a", "b", "c"], compose=True)


def test_an_empty_node_needs_seeds_or_new_cluster() -> None:
    with pytest.raises(StartupError) as info:
        Node(NodeConfig(name="x", address="x:1"), MemoryStorage(), now_ms=0, rng=random.Random(1))
    assert "give --seeds to join a cluster or --new-cluster to found one" in str(info.value)
    # A seed list of only itself is no seed.
    with pytest.raises(StartupError):
        cfg = NodeConfig(name="x", address="x:1", seeds=("x:1",))
        Node(cfg, MemoryStorage(), now_ms=0, rng=random.Random(1))


def test_the_compose_layout_forms_one_cluster_and_every_node_serves() -> None:
    c = _compose()
    c.settle()
    assert all(node.ready() for node in c.nodes.values())
    assert {node.ring.members for node in c.nodes.values()} == {("a", "b", "c")}
    assert c.request("b", "put", key=b"k", value=b"v").error is None


def test_a_node_that_does_not_serve_yet_says_so_in_its_status() -> None:
    c = _compose()
    c.crash("a")  # the founder never answers: b and c wait
    c.run(3000)
    status = c.request("b", "status").result
    assert status["serving"] is False
    assert {x["name"]: x["state"] for x in status["members"]}["b"] == "joining"
    reply = c.request("b", "get", key=b"k")
    assert reply.error == "unavailable" and "does not serve yet" in reply.result


def test_a_wiped_founder_restarted_with_the_same_command_rejoins() -> None:
    """The bug the review reproduced: node1 of docker-compose, killed, its data wiped, started
    again the same way, served at once as a one-node cluster and lost acknowledged writes."""
    c = _compose()
    c.settle()
    c.crash("a")
    c.storage["a"] = MemoryStorage()  # the data directory is gone
    c.settle()
    c.start("a", incarnation=1)
    a = c.nodes["a"]
    assert not a.ready()  # its seeds answer first
    reply = c.request("a", "put", key=b"k", value=b"v")  # retried until a serves
    c.settle()
    assert a.ready() and a.ring.members == ("a", "b", "c")
    assert reply.error in (None, "unavailable")
    # It never founded a cluster of its own: every write it took is on its real replicas.
    for i in range(20):
        assert c.request("a", "put", key=b"w%d" % i, value=b"v").error is None
    for i in range(20):
        assert c.request("b", "get", key=b"w%d" % i, r=2).result == b"v"


def test_a_founder_joins_instead_when_a_seed_belongs_to_a_cluster() -> None:
    storage = MemoryStorage()
    cfg = NodeConfig(name="a", address="a:1", seeds=("b:1",), new_cluster=True, **CFG)
    node = Node(cfg, storage, now_ms=0, rng=random.Random(1))
    node.start(0)
    # b answers as a member that does not serve (it is rejoining a ring): a must not found.
    table = Sync("b", 0, 1, [["b", "b:1", 3, "joining"]], MEMBER, _settings())
    out = node.handle(m.Datagram("b:1", table), 10)
    assert not node.ready()
    assert any("joining it instead of founding" in e.text for e in out if isinstance(e, m.Log))


def test_a_founder_founds_once_every_seed_answered_as_a_newcomer() -> None:
    cfg = NodeConfig(name="a", address="a:1", seeds=("b:1", "c:1"), new_cluster=True, **CFG)
    node = Node(cfg, MemoryStorage(), now_ms=0, rng=random.Random(1))
    node.start(0)
    node.handle(m.Datagram("b:1", Sync("b", 0, 1, [["b", "b:1", 0, "joining"]], 0, _settings())), 1)
    assert not node.ready()  # c has not answered yet
    node.handle(m.Datagram("c:1", Sync("c", 0, 1, [["c", "c:1", 0, "joining"]], 0, _settings())), 2)
    assert node.ready() and node.ring.members == ("a", "b", "c")


def test_a_join_with_other_settings_is_refused_naming_both_values() -> None:
    seed = Membership("s", "s:1", settings=_settings())
    out = seed.handle("j:1", Join("j", "j:1", 1, _settings(n=5)), 0, random.Random(0))
    [refusal] = [d.msg for d in out]
    assert isinstance(refusal, JoinRefused)
    assert refusal.reason == "n is 3 on s but 5 on j"
    assert seed.get("j") is None  # not let in
    # The joiner, which does not serve, stops with that reason.
    cfg = NodeConfig(name="j", address="j:1", seeds=("s:1",), n=5, r=3, w=3, **CFG)
    joiner = Node(cfg, MemoryStorage(), now_ms=0, rng=random.Random(1))
    joiner.start(0)
    [halt] = [e for e in joiner.handle(m.Datagram("s:1", refusal), 1) if isinstance(e, m.Halt)]
    assert "s refused to let j join: n is 3 on s but 5 on j" in halt.reason


def test_a_table_with_other_settings_is_dropped_and_reported_once() -> None:
    node = Membership("a", "a:1", settings=_settings())
    bad = Sync("z", 0, 1, [["z", "z:1", 0, "up"]], 3, _settings(cluster="other"))
    assert node.handle("z:1", bad, 0, random.Random(0)) == []
    assert node.get("z") is None
    [(sender, reason)] = node.drain_refusals()
    assert sender == "z" and "cluster is 'ringkv' on a but 'other' on z" in reason
    # A node logs it once, however often it comes.
    cfg = NodeConfig(name="a", address="a:1", new_cluster=True, **CFG)
    core = Node(cfg, MemoryStorage(), now_ms=0, rng=random.Random(1))
    core.start(0)
    logs = [
        e
        for t in range(5)
        for e in core.handle(m.Datagram("z:1", bad), t)
        if isinstance(e, m.Log) and "other" in e.text
    ]
    assert len(logs) == 1 and logs[0].level == "warning"
