"""How a node founds, joins or rejoins a cluster, and refuses one whose settings differ
(``ring.core.view``), on cores wired through an in-memory network."""

from __future__ import annotations

import random
from typing import Any

import pytest

from ring.core import messages as m
from ring.core.membership import (
    KNEW_YOU,
    MEMBER,
    SERVING,
    Join,
    JoinRefused,
    Membership,
    Sync,
    SyncReply,
)
from ring.core.node import Node, NodeConfig
from ring.core.view import StartupError
from ring.storage import MemoryStorage
from tests.unit.corecluster import Cluster

CFG = dict(partitions=16)


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
    assert {node.ring.members() for node in c.nodes.values()} == {("a", "b", "c")}
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
    reply = c.request("a", "put", key=b"k", value=b"v")  # retried until a serves
    c.settle()
    assert a.ready() and a.ring.members() == ("a", "b", "c")
    assert reply.error in (None, "unavailable")
    # It never founded a cluster of its own: every write it took is on its real replicas.
    for i in range(20):
        assert c.request("a", "put", key=b"w%d" % i, value=b"v").error is None
    for i in range(20):
        assert c.request("b", "get", key=b"w%d" % i, r=2).result == b"v"


def _founder(seeds: tuple[str, ...]) -> Node:
    cfg = NodeConfig(name="a", address="a:1", seeds=seeds, new_cluster=True, **CFG)
    node = Node(cfg, MemoryStorage(), now_ms=0, rng=random.Random(1))
    node.start(0)
    return node


def _answer(name: str, seed: str, flags: int, state: str = "up") -> m.Datagram:
    """``name``'s answer to our Join sent to ``seed``: its table and what it is."""
    table = SyncReply(name, 0, 1, [[name, f"{name}:1", 3, state]], flags, _settings(), seed)
    return m.Datagram(f"{name}:1", table)


def test_a_founder_rejoins_when_a_seed_belongs_to_a_cluster_that_lists_it() -> None:
    node = _founder(("b:1",))
    # b is a member that does not serve (it is rejoining a ring), and knew a before it asked.
    out = node.handle(_answer("b", "b:1", MEMBER | KNEW_YOU, "joining"), 10)
    assert not node.ready() and not any(isinstance(e, m.Halt) for e in out)
    assert any("rejoining it instead of founding" in e.text for e in out if isinstance(e, m.Log))


def test_a_founder_whose_seed_belongs_to_a_cluster_that_does_not_list_it_stops() -> None:
    node = _founder(("b:1",))
    out = node.handle(_answer("b", "b:1", SERVING | MEMBER), 10)
    [halt] = [e for e in out if isinstance(e, m.Halt)]
    assert "does not list a" in halt.reason and "without --new-cluster" in halt.reason
    assert not node.ready()


def test_a_founder_founds_once_every_seed_answered_as_a_newcomer() -> None:
    # b is listed twice, by name and by IP: each seed address counts once it answered.
    node = _founder(("b:1", "10.0.0.2:1", "c:1"))
    node.handle(_answer("b", "b:1", 0, "joining"), 1)
    node.handle(_answer("b", "10.0.0.2:1", 0, "joining"), 2)
    assert not node.ready()  # c has not answered yet
    assert "c:1" in node.status()["waiting_for"]
    node.handle(_answer("c", "c:1", 0, "joining"), 3)
    # It founds alone; the seeds join once they serve, and the claim gives them partitions.
    assert node.ready() and node.ring.members() == ("a",)


def test_a_founder_does_not_wait_for_a_seed_that_is_itself() -> None:
    """A shared seed list names every node, the founder too (spelled as another address)."""
    node = _founder(("b:1", "0.0.0.0:1"))
    own = Join("a", "a:1", 0, _settings(), "0.0.0.0:1")  # our Join to that seed came back
    node.handle(m.Datagram("a:1", own), 1)
    node.handle(_answer("b", "b:1", 0, "joining"), 2)
    assert node.ready()


def test_a_join_with_other_settings_is_refused_naming_both_values() -> None:
    seed = Membership("s", "s:1", settings=_settings())
    join = Join("j", "j:1", 1, _settings(n=5), "s:1")
    out = seed.handle("j:1", join, 0, random.Random(0))
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
    bad = Sync("z", 0, 1, [["z", "z:1", 0, "up"]], 3, _settings(cluster="other"), "")
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


def test_a_whole_cluster_restart_without_one_member_serves_with_it_down() -> None:
    """Every node stops; two come back, the third does not. The two remember it: it is in
    their ring (down), so ownership does not move and they serve with hints for it."""
    c = _compose()
    c.settle()
    for name in ("a", "b", "c"):
        c.crash(name)
    for name in ("a", "b"):
        c.start(name, incarnation=1)
    c.down = {"c"}
    c.settle()
    for name in ("a", "b"):
        assert c.nodes[name].ready() and c.nodes[name].ring.members() == ("a", "b", "c")
    assert c.request("a", "put", key=b"k", value=b"v").error is None
    assert c.request("b", "get", key=b"k").result == b"v"


def test_a_node_rejoining_with_an_older_table_learns_the_newer_one() -> None:
    """c was down while d joined: it restarts with the table it remembers, hears a newer epoch
    in gossip, fetches that table, and sends d the partitions d takes from it."""
    c = Cluster(["a", "b", "c"], compose=True)
    c.settle()
    old_epoch = c.nodes["c"].ring.epoch
    c.crash("c")
    c.names.append("d")
    c.storage["d"] = MemoryStorage()
    c.start("d")  # it joins through a and b
    c.run(3000)
    newer = c.nodes["a"].ring
    assert "d" in newer.target_members() and newer.epoch > old_epoch
    assert newer.transfers_pending()  # what d takes from c waits for c
    c.start("c", incarnation=2)
    assert c.nodes["c"].ring.epoch == old_epoch  # the table it remembers
    c.settle()
    epochs = {c.nodes[x].ring.epoch for x in "abcd"}
    assert len(epochs) == 1 and epochs.pop() > newer.epoch
    assert all(c.nodes[x].ring.load()[x] == 48 for x in "abcd")  # 64 partitions x 3 / 4
