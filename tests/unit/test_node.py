"""Node cores wired together through an in-memory list of messages (h11's ConnectionPair idea):
no loop, no sockets, virtual time."""

from __future__ import annotations

import random
from typing import Any

import pytest

from ring.core import messages as m
from ring.core import record as rec
from ring.core.layout import DATA, HINT
from ring.core.node import Node, NodeConfig
from ring.storage import MemoryStorage


class Cluster:
    def __init__(self, names: list[str], *, n: int = 3, r: int = 2, w: int = 2, seed: int = 1):
        self.rng = random.Random(seed)
        self.now = 1_000_000
        self.storage = {name: MemoryStorage() for name in names}
        self.down: set[str] = set()
        self.queue: list[Any] = []
        self.replies: dict[int, m.Reply] = {}
        self.next_req = 0
        self.nodes: dict[str, Node] = {}
        self.names = names
        self.cfg = dict(n=n, r=r, w=w, partitions=64, vnodes=16, request_timeout_ms=500)
        for name in names:
            self.start(name)

    def start(self, name: str, incarnation: int = 0) -> None:
        first = name == self.names[0]
        seeds = () if first else (f"{self.names[0]}:1",)
        cfg = NodeConfig(name=name, address=f"{name}:1", seeds=seeds, new_cluster=first, **self.cfg)
        node = Node(cfg, self.storage[name], now_ms=self.now, rng=self.rng, incarnation=incarnation)
        self.nodes[name] = node
        self.down.discard(name)
        self.queue += [(name, e) for e in node.start(self.now)]

    def crash(self, name: str) -> None:
        self.down.add(name)

    def _deliver(self) -> None:
        while self.queue:
            src, eff = self.queue.pop(0)
            if isinstance(eff, m.Reply):
                self.replies[eff.req_id] = eff
            elif isinstance(eff, m.Send):
                if eff.dest not in self.down and src not in self.down:
                    msg = m.from_wire(m.to_wire(eff.msg))  # through the wire form, as the shell
                    out = self.nodes[eff.dest].handle(m.PeerMessage(src, msg), self.now)
                    self.queue += [(eff.dest, e) for e in out]
            elif isinstance(eff, m.SendDatagram):
                dest = eff.address.split(":")[0]
                if dest not in self.down and src not in self.down:
                    msg = m.from_wire(m.to_wire(eff.msg))
                    out = self.nodes[dest].handle(m.Datagram(f"{src}:1", msg), self.now)
                    self.queue += [(dest, e) for e in out]

    def run(self, ms: int) -> None:
        end = self.now + ms
        while self.now < end:
            self.now += 20
            for name, node in self.nodes.items():
                if name not in self.down:
                    self.queue += [(name, e) for e in node.handle(m.Tick(), self.now)]
            self._deliver()

    def request(self, via: str, op: str, **args: Any) -> m.Reply:
        self.next_req += 1
        req = self.next_req
        out = self.nodes[via].handle(m.ClientRequest(req, op, args), self.now)
        self.queue += [(via, e) for e in out]
        self._deliver()
        for _ in range(200):
            if req in self.replies:
                return self.replies.pop(req)
            self.run(20)
        raise AssertionError(f"no reply to {op} {args}")

    def converged(self) -> bool:
        return all(
            {x.name: x.state for x in node.membership.members()}
            == {n: ("down" if n in self.down else "up") for n in self.names}
            for name, node in self.nodes.items()
            if name not in self.down
        )

    def settle(self, limit_ms: int = 20_000) -> None:
        waited = 0
        while not self.converged():
            assert waited < limit_ms, "membership did not converge"
            self.run(100)
            waited += 100


@pytest.fixture
def cluster() -> Cluster:
    c = Cluster(["a", "b", "c"])
    c.settle()
    return c


def test_put_get_through_every_node(cluster: Cluster) -> None:
    for i, via in enumerate("abc"):
        assert cluster.request(via, "put", key=b"k%d" % i, value=b"v%d" % i).error is None
    for i in range(3):
        for via in "abc":
            assert cluster.request(via, "get", key=b"k%d" % i).result == b"v%d" % i
    cluster.run(200)
    for name in "abc":  # N=3 on 3 nodes: every node holds every key
        assert cluster.storage[name].get(DATA + b"k0") is not None


def test_concurrent_puts_become_siblings_and_context_resolves(cluster: Cluster) -> None:
    cluster.request("a", "put", key=b"k", value=b"0")
    ctx = cluster.request("b", "getv", key=b"k").result[1]
    cluster.request("a", "put", key=b"k", value=b"1", context=ctx)
    cluster.request("b", "put", key=b"k", value=b"2", context=ctx)
    values, ctx2, _ = cluster.request("c", "getv", key=b"k", r=3).result
    assert sorted(values) == [b"1", b"2"]
    cluster.request("c", "put", key=b"k", value=b"3", context=ctx2)
    assert cluster.request("a", "getv", key=b"k", r=3).result[0] == [b"3"]


def test_write_quorum_with_one_node_down(cluster: Cluster) -> None:
    cluster.crash("c")
    cluster.settle()
    assert cluster.request("a", "put", key=b"x", value=b"1", w=2).error is None
    reply = cluster.request("a", "put", key=b"y", value=b"1", w=3)
    assert reply.error == "quorum" and reply.result["replied"] == 2 and reply.result["needed"] == 3
    assert cluster.request("b", "get", key=b"x", r=2).result == b"1"
    # the coordinator keeps hints for c, delivered when c returns, then dropped
    assert any(True for _ in cluster.storage["a"].scan(HINT))
    cluster.start("c", incarnation=1)
    cluster.settle()
    cluster.run(2000)
    assert rec.decode(cluster.storage["c"].get(DATA + b"x")).live[0].value == b"1"
    assert not any(True for _ in cluster.storage["a"].scan(HINT))


def test_read_repair_fixes_a_stale_replica(cluster: Cluster) -> None:
    cluster.request("a", "put", key=b"k", value=b"1", w=3)
    cluster.storage["b"].write([], [DATA + b"k"])  # b lost its copy
    assert cluster.request("a", "get", key=b"k", r=3).result == b"1"
    cluster.run(100)
    assert cluster.storage["b"].get(DATA + b"k") is not None


def test_delete_stays_deleted(cluster: Cluster) -> None:
    cluster.request("a", "put", key=b"k", value=b"1", w=3)
    cluster.request("b", "del", key=b"k", w=3)
    assert cluster.request("c", "get", key=b"k").result is None
    raw = cluster.storage["c"].get(DATA + b"k")
    assert raw is not None and rec.decode(raw).is_deleted  # a tombstone, not a missing key


def test_scan_merges_all_nodes(cluster: Cluster) -> None:
    for i in range(20):
        cluster.request("abc"[i % 3], "put", key=b"s%02d" % i, value=b"%d" % i)
    cluster.request("a", "del", key=b"s05")
    items, nxt = cluster.request("b", "scan", start=b"s", limit=100).result
    keys = items[0::2]
    assert keys == [b"s%02d" % i for i in range(20) if i != 5] and nxt is None
    items, nxt = cluster.request("b", "scan", start=b"s", limit=5).result
    assert items[0::2] == [b"s00", b"s01", b"s02", b"s03", b"s04"] and nxt == b"s04"


def test_invalid_requests_get_clear_errors(cluster: Cluster) -> None:
    assert cluster.request("a", "frobnicate").error == "invalid"
    assert cluster.request("a", "put", key="str", value=b"v").error == "invalid"
    assert cluster.request("a", "get", key=b"k", r=7).error == "invalid"
    big = cluster.request("a", "put", key=b"k" * (64 * 1024 + 1), value=b"v")
    assert big.error == "invalid" and "limit" in big.result


def test_forwarding_when_coordinator_is_not_a_replica() -> None:
    c = Cluster(["a", "b", "c", "d", "e"], n=2, r=1, w=2)
    c.settle()
    for i in range(30):
        key = b"f%d" % i
        assert c.request("abcde"[i % 5], "put", key=key, value=b"v").error is None
        assert c.request("abcde"[(i + 2) % 5], "get", key=key).result == b"v"


def test_a_single_node_serves_with_the_cluster_defaults() -> None:
    """N=3 R=2 W=2 configured, one node: the defaults are capped by the replicas that exist,
    while an explicit quorum larger than that fails clearly."""
    c = Cluster(["solo"], n=3, r=2, w=2)
    assert c.request("solo", "put", key=b"k", value=b"v").error is None
    assert c.request("solo", "get", key=b"k").result == b"v"
    reply = c.request("solo", "put", key=b"k", value=b"v", w=2)
    assert reply.error == "quorum" and reply.result["needed"] == 2
