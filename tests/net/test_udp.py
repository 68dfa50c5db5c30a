"""Gossip datagrams: garbage is dropped and counted, real messages reach the core."""

from __future__ import annotations

import socket

import msgpack

from ring.core import messages
from tests.net.fakecore import RawConn, start_node, uvloop_test, wait_for

GARBAGE = [
    b"",
    b"\xc1\xc1",  # not msgpack
    b"\x93\x01\x02",  # truncated array
    msgpack.packb({"a": 1}),  # msgpack, not a message
    msgpack.packb([9999, 1, 2]),  # unknown tag
    msgpack.packb([messages.ReplicaGet.TAG, 1]),  # wrong field count
    bytes(range(256)) * 5,
]


@uvloop_test
async def test_garbage_datagrams_are_dropped_and_counted() -> None:
    runtime, core, address = await start_node("n1")
    try:
        host, port = address.rsplit(":", 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            for data in GARBAGE:
                s.sendto(data, (host, int(port)))
            good = msgpack.packb(messages.to_wire(messages.ReplicaGet(5, b"k", 1)))
            s.sendto(good, (host, int(port)))
            sender = f"127.0.0.1:{s.getsockname()[1]}"
            await wait_for(lambda: len(core.datagrams) == 1)
        assert core.datagrams == [(sender, messages.ReplicaGet(5, b"k", 1))]
        assert runtime.counters["udp_dropped"] == len(GARBAGE)
        conn = await RawConn.open(address)
        await conn.recv()
        status = await conn.call(1, "status", {})
        assert status[2]["counters"]["udp_dropped"] == len(GARBAGE)
    finally:
        await runtime.shutdown()


@uvloop_test
async def test_datagrams_leave_from_the_node_port() -> None:
    a, _, addr_a = await start_node("a")
    b, core_b, addr_b = await start_node("b")
    try:
        conn = await RawConn.open(addr_a)
        await conn.recv()
        conn.send([1, "gossip", {"address": addr_b}])
        port_b = addr_b.rsplit(":", 1)[1]
        conn.send([2, "gossip", {"address": f"localhost:{port_b}"}])  # resolved off-loop
        await wait_for(lambda: len(core_b.datagrams) == 2)
        assert {src for src, _ in core_b.datagrams} == {addr_a}
        assert sorted(m.op_id for _, m in core_b.datagrams) == [1, 2]
    finally:
        await a.shutdown()
        await b.shutdown()
