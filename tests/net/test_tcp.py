"""The node's TCP side with real uvloop sockets on 127.0.0.1 and a fake core.

What a user relies on: many requests in flight per connection with replies in any order; a
broken connection (garbage, an oversized length prefix, a wrong hello, a frame of the wrong
shape) gets an error reply and is closed alone, while every other connection keeps working;
nodes reach each other over their links; shutdown finishes what is in flight.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from ring.net.codec import client_hello, server_hello
from tests.net.fakecore import RawConn, free_port, start_node, uvloop_test, wait_for


async def _works(conn: RawConn, tag: str) -> None:
    """The connection still serves: a put and a get answer correctly."""
    assert await conn.call(f"{tag}-p", "put", {"key": tag.encode(), "value": b"v"}) == [
        f"{tag}-p",
        None,
        None,
    ]
    assert await conn.call(f"{tag}-g", "get", {"key": tag.encode()}) == [f"{tag}-g", None, b"v"]


@uvloop_test
async def test_hello_then_requests() -> None:
    runtime, core, address = await start_node("n1", cluster="blue")
    try:
        conn = await RawConn.open(address, cluster="blue")
        assert await conn.recv() == server_hello("blue", "n1")
        await _works(conn, "a")
        assert core.requests == ["put", "get"]
        reply = await conn.call(9, "nope", {})
        assert reply[:2] == [9, "invalid"]
        conn.close()
    finally:
        await runtime.shutdown()


@uvloop_test
async def test_many_requests_in_flight_answered_out_of_order() -> None:
    runtime, _, address = await start_node("n1")
    try:
        conn = await RawConn.open(address)
        await conn.recv()
        delays = [random.Random(i).randrange(0, 60) for i in range(200)]
        for i, ms in enumerate(delays):
            conn.send([i, "slow", {"ms": ms}])
        replies = [await conn.recv() for _ in delays]
        assert sorted(r[0] for r in replies) == list(range(200))
        assert all(r[1] is None for r in replies)
        assert [r[0] for r in replies] != list(range(200)), "replies should not be in order"
        conn.close()
    finally:
        await runtime.shutdown()


BROKEN = {
    "garbage": lambda c: c.send_bytes(b"\x00\x00\x00\x03\xc1\xc1\xc1"),
    "oversized": lambda c: c.send_bytes((1 << 30).to_bytes(4, "big")),
    "wrong_shape": lambda c: c.send({"not": "a request"}),
    "op_not_str": lambda c: c.send([1, 2, {}]),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
@uvloop_test
async def test_a_broken_frame_closes_only_that_connection(kind: str) -> None:
    runtime, _, address = await start_node("n1", max_frame_bytes=1 << 20)
    try:
        good = await RawConn.open(address)
        await good.recv()
        bad = await RawConn.open(address)
        assert (await bad.recv())["name"] == "n1"
        BROKEN[kind](bad)
        reply = await bad.recv()
        assert reply[:2] == [None, "protocol"] and isinstance(reply[2], str)
        assert await bad.eof()
        await _works(good, "still")
        late = await RawConn.open(address)
        await late.recv()
        await _works(late, "late")
        assert runtime.counters["protocol_errors"] == 1
        good.close()
        late.close()
    finally:
        await runtime.shutdown()


@pytest.mark.parametrize(
    "hello, why",
    [
        (client_hello("other"), "cluster"),
        ({**client_hello("ringkv"), "hello": 99}, "version"),
        ([1, "get", {"key": b"k"}], "hello"),
        (client_hello("ringkv", "node", None), "name"),
    ],
)
@uvloop_test
async def test_a_wrong_hello_is_refused(hello: object, why: str) -> None:
    runtime, core, address = await start_node("n1")
    try:
        other = await RawConn.open(address)
        await other.recv()
        bad = await RawConn.open(address, hello=hello)
        reply = await bad.recv()
        assert reply[:2] == [None, "protocol"] and why in reply[2]
        assert await bad.eof()
        await _works(other, "ok")
        assert core.requests == ["put", "get"]
        other.close()
    finally:
        await runtime.shutdown()


@uvloop_test
async def test_a_core_failure_answers_that_request_and_keeps_serving() -> None:
    runtime, _, address = await start_node("n1")
    try:
        conn = await RawConn.open(address)
        await conn.recv()
        assert (await conn.call(1, "boom", {}))[:2] == [1, "internal"]
        await _works(conn, "after")
        assert runtime.counters["core_errors"] == 1
        status = await conn.call(2, "status", {})
        assert status[2]["node"] == "n1" and status[2]["counters"]["core_errors"] == 1
        conn.close()
    finally:
        await runtime.shutdown()


@uvloop_test
async def test_nodes_talk_over_their_links() -> None:
    a, core_a, addr_a = await start_node("a")
    b, core_b, addr_b = await start_node("b")
    try:
        core_a.peers = {"b": addr_b}
        core_b.peers = {"a": addr_a}
        core_b.data[b"k"] = b"from b"
        conn = await RawConn.open(addr_a)
        await conn.recv()
        for i in range(20):  # the first ones queue while the link connects
            conn.send([i, "relay", {"to": "b", "key": b"k"}])
        assert sorted([(await conn.recv())[0] for _ in range(20)]) == list(range(20))
        assert await conn.call(99, "relay", {"to": "b", "key": b"k"}) == [99, None, b"from b"]
        assert set(a.peers.links) == {"b"} and set(b.peers.links) == {"a"}
        conn.close()
    finally:
        await a.shutdown()
        await b.shutdown()


@uvloop_test
async def test_a_peer_that_is_down_costs_only_its_messages() -> None:
    runtime, core, address = await start_node("a")
    try:
        core.peers = {"gone": f"127.0.0.1:{free_port()}"}
        conn = await RawConn.open(address)
        await conn.recv()
        conn.send([1, "relay", {"to": "gone", "key": b"k"}])
        await wait_for(lambda: runtime.counters.get("peer_connect_failures", 0) == 1)
        # During the backoff, messages for it are dropped at once, not queued.
        conn.send([2, "relay", {"to": "gone", "key": b"k"}])
        await wait_for(lambda: runtime.counters.get("peer_frames_dropped", 0) >= 2)
        await _works(conn, "alive")
        conn.close()
    finally:
        await runtime.shutdown()


@uvloop_test
async def test_shutdown_drains_in_flight_requests_and_refuses_new_ones() -> None:
    runtime, core, address = await start_node("n1")
    conn = await RawConn.open(address)
    await conn.recv()
    conn.send([1, "slow", {"ms": 150}])
    await wait_for(lambda: bool(core.held))
    stopping = asyncio.get_running_loop().create_task(runtime.shutdown())
    await wait_for(lambda: runtime.draining)
    conn.send([2, "get", {"key": b"k"}])
    assert (await conn.recv())[:2] == [2, "unavailable"]
    assert not stopping.done()
    assert await conn.recv() == [1, None, 1]
    await stopping
    assert core.stopped
    assert await conn.eof()


@uvloop_test
async def test_port_zero_binds_tcp_and_udp_on_the_same_port() -> None:
    runtime, _, address = await start_node("n1")
    try:
        port = int(address.rsplit(":", 1)[1])
        assert port != 0
        assert runtime.udp is not None and runtime.udp.transport is not None
        assert runtime.udp.transport.get_extra_info("sockname")[1] == port
    finally:
        await runtime.shutdown()


@uvloop_test
async def test_a_client_that_does_not_read_is_paused_not_buffered() -> None:
    runtime, core, address = await start_node("n1")
    try:
        core.data[b"big"] = b"x" * (512 * 1024)
        other = await RawConn.open(address)
        await other.recv()
        greedy = await RawConn.open(address)
        await greedy.recv()
        sent = 0
        # Ask for big replies and never read them: the node must stop reading this client
        # once its replies back up, instead of queueing them without bound.
        while not any(c._read_paused for c in runtime.connections) and sent < 400:
            greedy.send([sent, "get", {"key": b"big"}])
            sent += 1
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
        assert any(c._read_paused for c in runtime.connections), "reading never paused"
        await _works(other, "unaffected")
        replies = [await greedy.recv() for _ in range(sent)]  # reading again drains it all
        assert [r[0] for r in replies] == list(range(sent))
        await wait_for(lambda: not any(c._read_paused for c in runtime.connections))
    finally:
        await runtime.shutdown()
