"""The node's sockets with a cluster secret: real uvloop TCP and UDP on 127.0.0.1, the runtime
of ``ringd``, a fake core (``tests.net.fakecore``) so that only the shell is exercised.

What users rely on: a connection is acted on only after it proved the secret; a connection or
datagram without it is refused, counted and closed alone while the node keeps serving the
others; a tampered record ends only its own connection; links between nodes with the same
secret work, and with another secret carry nothing.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import msgpack
import pytest

import ring.aio
import ring.net.tcp
from ring.core import messages
from ring.net.auth import AuthenticationFailed, ClientHandshake, GossipAuth, Security
from ring.net.codec import client_hello, encode_frame, new_packer
from tests.net.fakecore import RawConn, start_node, uvloop_test, wait_for

SECRET = b"a-long-cluster-secret-for-tests"
OTHER = b"another-long-secret-for-tests!"


async def secured(name: str, *secrets: bytes) -> Any:
    return await start_node(name, security=Security(secrets or (SECRET,)))


async def proven(address: str, secret: bytes = SECRET) -> tuple[RawConn, Any]:
    """A raw connection that went through the handshake: (conn, its client session)."""
    handshake = ClientHandshake((secret,), client_hello("ringkv"))
    conn = await RawConn.open(address, hello=handshake.hello)
    proof, session = handshake.finish(await conn.recv())
    conn.send(proof)
    return conn, session


async def sealed_call(conn: RawConn, session: Any, request: list[Any]) -> Any:
    conn.send_bytes(session.sealer.seal(encode_frame(new_packer(), request)))
    while True:
        data = await asyncio.wait_for(conn.reader.read(65536), 5)
        if not data:
            raise EOFError("connection closed")
        frames = conn.decoder.feed(session.opener.feed(data))
        if frames:
            return frames[0]


@uvloop_test
async def test_clients_with_the_secret_are_served_and_others_refused() -> None:
    runtime, core, address = await secured("n1")
    try:
        async with await ring.aio.connect(address, secret=SECRET.decode(), smart=False) as client:
            await client.put("k", "v")
            assert await client.get("k") == b"v"
        for secret in (None, OTHER):
            with pytest.raises(AuthenticationFailed, match="authentication failed"):
                await ring.aio.connect(address, secret=secret, smart=False)
        # A client without a secret got an answer that says why, then the connection closed.
        conn = await RawConn.open(address)
        refused = await conn.recv()
        assert refused[:2] == [None, "auth"] and "requires the cluster secret" in refused[2]
        assert await conn.eof()
        counters = runtime.counters
        # The no-secret clients were refused at the hello; the wrong-secret one took the node's
        # proofs and left without its own.
        await wait_for(lambda: counters.get("auth_failed_abandoned", 0) == 1)
        assert counters["auth_failed_no_secret"] == 2 and counters["auth_failed"] == 3
        assert core.requests == ["put", "get"]
    finally:
        await runtime.shutdown()


@uvloop_test
async def test_nothing_before_the_proof_is_acted_on() -> None:
    runtime, core, address = await secured("n1")
    try:
        handshake = ClientHandshake((SECRET,), client_hello("ringkv"))
        conn = await RawConn.open(address, hello=handshake.hello)
        await conn.recv()  # the node's proofs
        conn.send([1, "put", {"key": b"k", "value": b"v"}])  # a request instead of a proof
        refused = await conn.recv()
        assert refused[:2] == [None, "auth"]
        assert await conn.eof()
        assert core.requests == [] and core.data == {}
        assert runtime.counters["auth_failed_bad_proof"] == 1
    finally:
        await runtime.shutdown()


@uvloop_test
async def test_a_tampered_record_closes_only_its_connection() -> None:
    runtime, core, address = await secured("n1")
    try:
        bad, session = await proven(address)
        good, good_session = await proven(address)
        reply = await sealed_call(bad, session, [1, "put", {"key": b"a", "value": b"1"}])
        assert reply == [1, None, None]
        record = bytearray(
            session.sealer.seal(encode_frame(new_packer(), [2, "del", {"key": b"a"}]))
        )
        record[10] ^= 1
        bad.send_bytes(bytes(record))
        assert await bad.eof()
        await wait_for(lambda: runtime.counters.get("auth_failed_bad_record", 0) == 1)
        assert core.data == {b"a": b"1"}, "the tampered delete was acted on"
        reply = await sealed_call(good, good_session, [3, "get", {"key": b"a"}])
        assert reply == [3, None, b"1"]
    finally:
        await runtime.shutdown()


@uvloop_test
async def test_a_connection_that_never_proves_itself_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ring.net.tcp, "HELLO_TIMEOUT_S", 0.2)
    runtime, _, address = await secured("n1")
    try:
        silent = await RawConn.open(address, hello=False)
        assert await silent.eof()
        assert runtime.counters["auth_failed_timeout"] == 1
    finally:
        await runtime.shutdown()


@uvloop_test
async def test_nodes_with_the_secret_talk_over_links_and_others_do_not() -> None:
    a, core_a, addr_a = await secured("a")
    b, core_b, addr_b = await secured("b")
    c, core_c, addr_c = await secured("c", OTHER)
    try:
        core_a.peers = {"b": addr_b, "c": addr_c}
        core_b.peers = {"a": addr_a}
        core_b.data[b"k"] = b"from b"
        core_c.data[b"k"] = b"from c"
        async with await ring.aio.connect(addr_a, secret=SECRET, smart=False) as client:
            # The link's first messages wait for its handshake, then go in order.
            results = await asyncio.gather(
                *(client._call("relay", {"to": "b", "key": b"k"}) for _ in range(20))
            )
            assert results == [b"from b"] * 20
            # A relay to c never reaches it: c cannot prove our secret, so the link fails.
            pending = asyncio.ensure_future(client._call("relay", {"to": "c", "key": b"k"}))
            await wait_for(lambda: a.counters.get("auth_failed_peer_proof", 0) >= 1)
            assert not pending.done()
            pending.cancel()
        assert core_c.requests == [] and "a" not in {s for s, _ in core_c.datagrams}
    finally:
        for runtime in (a, b, c):
            await runtime.shutdown()


@uvloop_test
async def test_datagrams_are_sealed_and_unsealed_ones_refused() -> None:
    a, _, addr_a = await secured("a")
    b, core_b, addr_b = await secured("b")
    try:
        conn, session = await proven(addr_a)
        conn.send_bytes(
            session.sealer.seal(encode_frame(new_packer(), [1, "gossip", {"address": addr_b}]))
        )
        await wait_for(lambda: len(core_b.datagrams) == 1)
        assert core_b.datagrams[0][0] == addr_a
        host, port = addr_b.rsplit(":", 1)
        plain = msgpack.packb(messages.to_wire(messages.ReplicaGet(5, b"k", 1)))
        forged = GossipAuth((OTHER,), "ringkv").seal(plain)
        signed = GossipAuth((SECRET,), "ringkv").seal(plain)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            for data in (plain, forged, signed, signed):
                s.sendto(data, (host, int(port)))
            counters = b.counters
            await wait_for(lambda: counters.get("udp_refused_replay", 0) == 1)
        assert counters["udp_refused_unsigned"] == 1 and counters["udp_refused_bad_mac"] == 1
        assert len(core_b.datagrams) == 2  # a's, and the signed one once
    finally:
        await a.shutdown()
        await b.shutdown()
