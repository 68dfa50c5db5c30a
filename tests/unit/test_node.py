"""A cluster of node cores through an in-memory list of messages (``tests.unit.corecluster``)."""

from __future__ import annotations

import pytest

from ring.core import record as rec
from ring.core.layout import DATA, HINT
from tests.unit.corecluster import Cluster


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
