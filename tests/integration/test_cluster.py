"""A real three-node ``ringd`` cluster on 127.0.0.1, driven through ``ring.connect``.

What a user relies on: the nodes find each other; any node serves quorum reads and writes; with
one node killed (``kill -9``) W=2 and R=2 still work and W=3 fails with a QuorumError that says
how many replied; a node that comes back receives the writes it missed (hinted handoff); a read
repairs a stale replica; garbage on one connection disturbs no other client; SIGTERM stops a
node cleanly (exit 0).

Every process is started on port 0 (the address is read from its ready line) and killed by PID
in a ``finally``. There are no fixed sleeps: every wait polls a condition against a deadline.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ring
from ring.net.codec import FrameDecoder, client_hello, encode_frame, new_packer
from ring.storage import RocksStorage
from tests.integration.harness import Cluster, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.start("a", "b", "c")
        c.converge({"a": "up", "b": "up", "c": "up"})
        yield c
        for name in sorted(c.procs):
            assert c.stop(name) == 0, c.log(name)
            assert "stopped" in c.log(name)
    finally:
        c.close()


def test_quorum_reads_and_writes_through_every_node(cluster: Cluster) -> None:
    names = ["a", "b", "c"]
    for writer in names:
        with cluster.client(writer) as c:
            assert c.node == writer
            for i in range(20):
                c.put(f"{writer}:{i}", f"v{i}")
    for reader in names:
        with cluster.client(reader) as c:
            for writer in names:
                assert [c.get(f"{writer}:{i}", r=2) for i in range(20)] == [
                    f"v{i}".encode() for i in range(20)
                ]
            assert c.get("missing") is None
            assert len(list(c.scan(page=7))) == 60
    with cluster.client("b") as c:
        v = c.get_versioned("a:1", r=3)
        c.put("a:1", "new", context=v, w=3)
        assert c.get("a:1", r=3) == b"new"
        c.delete("a:1", w=3)
        assert c.get("a:1", r=3) is None
        info = c.ring_info()
        assert [m["name"] for m in info["members"]] == ["a", "b", "c"] and info["n"] == 3
        assert sum(m["primary"] for m in info["members"]) == info["partitions"]


def test_a_killed_node_costs_w3_only_and_gets_its_hints_back(cluster: Cluster) -> None:
    cluster.kill9("c")
    with cluster.client("a", "b") as client:
        for i in range(30):
            client.put(f"k{i}", f"v{i}", w=2)
        assert [client.get(f"k{i}", r=2) for i in range(30)] == [
            f"v{i}".encode() for i in range(30)
        ]
        with pytest.raises(ring.QuorumError) as err:
            client.put("strict", "x", w=3)
        assert (err.value.replied, err.value.needed) == (2, 3)
        assert "2" in str(err.value) and "3" in str(err.value)
    cluster.restart("c")
    cluster.converge({"a": "up", "b": "up", "c": "up"})
    wait_until(
        lambda: sum(cluster.counters(n).get("hints_delivered", 0) for n in ("a", "b")) >= 31,
        what="the hints to reach c",
    )
    # c alone must now hold every write it missed: stop the others and read from c with R=1.
    assert cluster.stop("a") == 0 and cluster.stop("b") == 0
    wait_until(lambda: cluster.states("c") == {"a": "down", "b": "down", "c": "up"})
    with cluster.client("c") as client:
        assert [client.get(f"k{i}", r=1) for i in range(30)] == [
            f"v{i}".encode() for i in range(30)
        ]
        assert client.get("strict", r=1) == b"x"


def test_a_read_repairs_a_stale_replica(cluster: Cluster) -> None:
    with cluster.client("a") as client:
        client.put("repair-me", "v1", w=3)
    assert cluster.stop("c") == 0
    # Make c's copy stale behind its back: no hint exists for it, only a read can fix it.
    storage = RocksStorage(str(cluster.root / "c"))
    storage.write((), [b"d" + b"repair-me"], sync=True)
    storage.close()
    cluster.restart("c")
    cluster.converge({"a": "up", "b": "up", "c": "up"})
    with cluster.client("a") as client:
        assert client.get("repair-me", r=3) == b"v1"
    wait_until(lambda: cluster.counters("a").get("read_repairs", 0) >= 1, what="a read repair")
    assert cluster.stop("a") == 0 and cluster.stop("b") == 0
    wait_until(lambda: cluster.states("c") == {"a": "down", "b": "down", "c": "up"})
    with cluster.client("c") as client:
        assert client.get("repair-me", r=1) == b"v1"


def _raw(address: str, hello: bool = True) -> socket.socket:
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    if hello:
        sock.sendall(encode_frame(new_packer(), client_hello("ringkv")))
    return sock


def _frames_until_closed(sock: socket.socket) -> list[Any]:
    decoder, frames = FrameDecoder(), []
    while data := sock.recv(65536):
        frames += decoder.feed(data)
    return frames


def test_garbage_and_oversized_frames_do_not_disturb_other_clients(cluster: Cluster) -> None:
    address = cluster.addresses["a"]
    with cluster.client("a") as good:
        good.put("steady", "1")
        garbage, oversized, wrong = _raw(address), _raw(address), _raw(address, hello=False)
        try:
            garbage.sendall(b"\x00\x00\x00\x04\xc1\xc1\xc1\xc1")
            oversized.sendall((1 << 31).to_bytes(4, "big"))
            wrong.sendall(encode_frame(new_packer(), client_hello("other-cluster")))
            for sock in (garbage, oversized, wrong):
                frames = _frames_until_closed(sock)
                assert frames[-1][:2] == [None, "protocol"], frames
            assert good.get("steady") == b"1"
            with cluster.client("a") as fresh:
                assert fresh.get("steady") == b"1"
            assert cluster.counters("a")["protocol_errors"] == 3
        finally:
            for sock in (garbage, oversized, wrong):
                sock.close()
