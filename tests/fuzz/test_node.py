"""Fuzzing one real ``ringd`` end to end: arbitrary and mutated bytes over TCP (before any
hello, after a client's hello, after a peer's hello) and over UDP (gossip datagrams) to a node
on 127.0.0.1 started without a cluster secret (its port chosen by the OS; the harness stops it
by PID).

After every example the node must still serve: a fresh client connects, writes a new key and
reads it back, and every record written before the fuzzing began is exactly as it was (values
and causal contexts). Every connection the fuzzer opens must be answered and closed by the node
within a deadline once the fuzzer stops writing. At the end the node's log must hold no
traceback (an exception that escaped a protocol callback) and its ``core_errors`` counter (the
core raising out of ``handle``) must be 0.

Not sent, because a node without a cluster secret trusts what is well-formed and *should* act on
it (the secret, ``ring.net.auth``, is what keeps strangers out): frames and datagrams that decode
to a write naming a kept key; to a change of the cluster (a client's ``leave``/``remove``, a
peer's table or transfer report, a gossip Join, Leave or table, membership updates that would
admit phantom members: with one, the node rightly waits for it before acknowledging writes); or
to a message that makes the node contact an address (a table request, an indirect probe), which
might lie outside 127.0.0.0/8.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ring
from ring.core import membership
from ring.core import messages as m
from ring.net import codec
from tests.fuzz import corpus
from tests.fuzz.strategies import budget, mutate_bytes, mutated_encodings, pack
from tests.fuzz.test_gossip import datagrams
from tests.integration.harness import Cluster

pytestmark = [pytest.mark.soak, pytest.mark.integration]

KEEP = b"keep:"
KEPT = {KEEP + b"%d" % i: b"value %d" % i for i in range(6)}
CLOSE_DEADLINE_S = 10.0


@dataclass
class Node:
    cluster: Cluster
    host: str
    port: int
    before: dict[bytes, Any]  # kept key -> (values, context) before any fuzzing
    sent: dict[str, int]  # what the fuzzer sent: "tcp" connections, "udp" datagrams

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root: Path = tmp_path_factory.mktemp("fuzz-node")
    cluster = Cluster(root, n=1, r=1, w=1)
    try:
        cluster.start("n1")
        cluster.wait_serving("n1")
        address = cluster.addresses["n1"]
        host, port = codec.parse_address(address)
        with ring.connect(address) as client:
            for key, value in KEPT.items():
                client.put(key, value)
            client.delete(KEEP + b"0")  # a tombstone to keep too
            before = {key: client.get_versioned(key) for key in KEPT}
        fuzzed = Node(cluster, host, port, before, {"tcp": 0, "udp": 0})
        yield fuzzed
        with ring.connect(address) as client:
            counters = client.status()["counters"]
        assert counters.get("core_errors", 0) == 0, counters
        assert "Traceback" not in cluster.log("n1", tail=10**7), cluster.log("n1")
        if fuzzed.sent["tcp"] > 20 and fuzzed.sent["udp"] > 20:  # the fuzzing reached it
            assert counters.get("protocol_errors", 0) > 0, counters
            udp = counters.get("udp_dropped", 0) + counters.get("udp_received", 0)
            assert udp > 0, counters
    finally:
        cluster.close()


def _names_a_kept_key(obj: Any) -> bool:
    """Whether a kept key appears anywhere in ``obj`` (walked without recursion: decoded values
    may nest a thousand deep)."""
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, bytes | str):
            if KEEP in (x if isinstance(x, bytes) else x.encode("utf-8", "replace")):
                return True
        elif isinstance(x, list):
            stack += x
        elif isinstance(x, dict):
            stack += [*x.keys(), *x.values()]
    return False


RING_CHANGES = ("leave", "remove")
TRUSTED = (
    membership.Join,
    membership.Leave,
    membership.Sync,
    membership.SyncReply,
    membership.PingReq,
    membership.JoinRefused,
    m.TableUpdate,
    m.TableRequest,
    m.TransferDone,
    m.CleanupDone,
)


def _acts_on_the_cluster(obj: Any) -> bool:
    """Whether ``obj``, a decoded frame or datagram, is a well-formed request the node should
    carry out and that changes the cluster or reaches out to an address (see the docstring)."""
    if isinstance(obj, list) and len(obj) == 3 and obj[1] in RING_CHANGES:
        return True  # a client's leave or remove
    try:
        msg = m.from_wire(obj)
    except m.MessageError:
        return False
    if isinstance(msg, TRUSTED) or (isinstance(msg, m.Forward) and msg.op in RING_CHANGES):
        return True
    return bool(getattr(msg, "updates", None))


def _not_for_fuzzing(objs: list[Any], raw: bytes) -> bool:
    return KEEP in raw or _names_a_kept_key(objs) or any(_acts_on_the_cluster(o) for o in objs)


def _frames_not_for_fuzzing(stream: bytes) -> bool:
    """``_not_for_fuzzing`` of every frame the node could decode from ``stream`` (each frame
    before the first that breaks the protocol, however the stream is cut into reads)."""
    decoder, frames = codec.FrameDecoder(), []
    try:
        for i in range(len(stream)):
            frames += decoder.feed(stream[i : i + 1])
    except codec.FrameError:
        pass
    return _not_for_fuzzing(frames, stream)


def _frame(body: bytes, length: int | None = None) -> bytes:
    return (len(body) if length is None else length).to_bytes(4, "big") + body


client_bodies = mutated_encodings(corpus.client_requests.map(lambda o: bytes(pack(o))))
peer_bodies = mutated_encodings(corpus.peer_wire.map(lambda o: bytes(pack(o))))
lengths = st.none() | st.sampled_from([0, 1, 2**24, 2**32 - 1])
HELLO = codec.encode_frame(codec.new_packer(), codec.client_hello("ringkv"))
PEER_HELLO = codec.encode_frame(
    codec.new_packer(),
    codec.client_hello("ringkv", "node", "fuzzer", {"n": 1, "partitions": 1024}),
)

sends = st.one_of(
    st.tuples(st.just("tcp"), st.binary(max_size=64)),
    st.tuples(st.just("tcp"), corpus.frames.flatmap(mutate_bytes)),
    st.tuples(
        st.just("tcp"),
        st.lists(st.tuples(client_bodies, lengths), min_size=1, max_size=4).map(
            lambda fs: HELLO + b"".join(_frame(b, n) for b, n in fs)
        ),
    ),
    st.tuples(
        st.just("tcp"),
        st.lists(st.tuples(peer_bodies, lengths), min_size=1, max_size=4).map(
            lambda fs: PEER_HELLO + b"".join(_frame(b, n) for b, n in fs)
        ),
    ),
    st.tuples(st.just("udp"), datagrams),
)


def _tcp(node: Node, data: bytes) -> None:
    """Send ``data`` on a new connection, stop writing, and read until the node closes it."""
    with socket.create_connection((node.host, node.port), timeout=CLOSE_DEADLINE_S) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return  # the node closed it first: a refusal
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            return
        except TimeoutError:
            raise AssertionError(
                f"the node did not close a connection within {CLOSE_DEADLINE_S} s after "
                f"{data[:200]!r}"
            ) from None


def _udp(node: Node, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, (node.host, node.port))


def _still_serves(node: Node, probe: int) -> None:
    with ring.connect(node.address, timeout=10) as client:
        key, value = b"probe:%d" % probe, b"after fuzzing %d" % probe
        client.put(key, value)
        assert client.get(key) == value
        for key in KEPT:
            assert client.get_versioned(key) == node.before[key], key


@budget(ci=100, soak=2000, deadline=timedelta(seconds=30))
@given(st.lists(sends, min_size=1, max_size=3), st.integers(0, 2**31))
def test_a_node_survives_fuzzed_frames_and_datagrams(
    node: Node, batch: list[tuple[str, bytes]], probe: int
) -> None:
    for kind, data in batch:
        if kind == "udp":
            try:
                skip = _not_for_fuzzing([codec.unpack(data)], data)
            except codec.FrameError:
                skip = KEEP in data
            if not skip and len(data) <= 65507:
                _udp(node, data)
                node.sent["udp"] += 1
        elif not _frames_not_for_fuzzing(data):
            _tcp(node, data)
            node.sent["tcp"] += 1
    _still_serves(node, probe)


def test_the_kept_records_are_there_to_be_compared(node: Node) -> None:
    """The fixture's records are real: live values, and the deleted key as a tombstone."""
    assert node.before[KEEP + b"1"].values == (KEPT[KEEP + b"1"],)
    assert node.before[KEEP + b"0"].values == () and node.before[KEEP + b"0"].context
    assert msgpack.unpackb(node.before[KEEP + b"1"].context)  # a clock, not empty
