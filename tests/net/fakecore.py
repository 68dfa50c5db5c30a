"""A tiny stand-in for ``ring.core.node.Node`` and helpers to run real runtimes in a test.

The fake keeps a dict, answers client ops at once (or after a delay, to get replies out of
order), relays a read to a peer over the node-to-node link, and records what it received, so the
tests exercise the shell — frames, connections, links, datagrams, flushing — and nothing else.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from ring.core.messages import (
    ClientRequest,
    Datagram,
    Log,
    PeerMessage,
    ReplicaGet,
    ReplicaGetReply,
    Reply,
    Send,
    SendDatagram,
    Tick,
)
from ring.net.codec import FrameDecoder, client_hello, encode_frame, new_packer
from ring.net.runtime import Runtime


class FakeCore:
    def __init__(self, name: str) -> None:
        self.name = name
        self.data: dict[bytes, bytes] = {}
        self.peers: dict[str, str] = {}  # name -> address, filled in by the test
        self.held: list[tuple[int, int]] = []  # (due_ms, req_id) of "slow" requests
        self.requests: list[str] = []
        self.datagrams: list[tuple[str, Any]] = []
        self.stopped = False

    def start(self, now_ms: int) -> list[Any]:
        return [Log("info", f"fake core {self.name} started")]

    def stop(self, now_ms: int) -> list[Any]:
        self.stopped = True
        return [Log("info", f"fake core {self.name} stopped")]

    def idle(self) -> bool:
        return not self.held

    def handle(self, event: Any, now_ms: int) -> list[Any]:
        if type(event) is ClientRequest:
            self.requests.append(event.op)
            return self._request(event, now_ms)
        if type(event) is Tick:
            due = [rid for t, rid in self.held if t <= now_ms]
            self.held = [(t, rid) for t, rid in self.held if t > now_ms]
            return [Reply(rid, None, rid) for rid in due]
        if type(event) is PeerMessage:
            msg = event.msg
            if type(msg) is ReplicaGet:
                found = self.data.get(msg.key)
                reply = ReplicaGetReply(msg.op_id, found)  # as bytes: from_wire checks types
                return [Send(event.src, self.peers[event.src], reply)]
            if type(msg) is ReplicaGetReply:
                return [Reply(msg.op_id, None, msg.record)]
        if type(event) is Datagram:
            self.datagrams.append((event.src, event.msg))
        return []

    def _request(self, req: ClientRequest, now_ms: int) -> list[Any]:
        op, a, rid = req.op, req.args, req.req_id
        if op == "get":
            return [Reply(rid, None, self.data.get(a["key"]))]
        if op == "getv":
            value = self.data.get(a["key"])
            return [Reply(rid, None, [[] if value is None else [value], b"ctx", value])]
        if op == "put":
            self.data[a["key"]] = a["value"]
            return [Reply(rid, None, None)]
        if op == "del":
            self.data.pop(a["key"], None)
            return [Reply(rid, None, None)]
        if op == "scan":
            return [Reply(rid, None, self._scan(a))]
        if op == "status":
            return [Reply(rid, None, {"node": self.name, "members": []})]
        if op == "ring":
            return [Reply(rid, None, {"partitions": 8, "n": 1, "members": [self.name]})]
        if op == "slow":
            self.held.append((now_ms + a["ms"], rid))
            return []
        if op == "relay":
            to = a["to"]
            return [Send(to, self.peers[to], ReplicaGet(rid, a["key"], 1))]
        if op == "gossip":
            return [SendDatagram(a["address"], ReplicaGet(rid, b"ping", 1))]
        if op == "quorum":
            return [Reply(rid, "quorum", {"message": "1 of 2", "replied": 1, "needed": 2})]
        if op == "boom":
            raise RuntimeError("the fake core fails on purpose")
        return [Reply(rid, "invalid", f"unknown op {op!r}")]

    def _scan(self, a: dict[str, Any]) -> list[Any]:
        keys = sorted(
            k
            for k in self.data
            if (a.get("start") is None or k >= a["start"])
            and (a.get("stop") is None or k < a["stop"])
        )
        if a["reverse"]:
            keys.reverse()
        out: list[bytes] = []
        for k in keys[: a["limit"]]:
            out += [k, self.data[k]]
        return [out, keys[a["limit"] - 1] if len(keys) >= a["limit"] else None]


def uvloop_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh uvloop loop (independently of pytest-asyncio)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            try:
                runner.run(asyncio.wait_for(fn(*args, **kwargs), 30))
            finally:
                runner.run(RawConn.close_all())

    return run


async def start_node(
    name: str, cluster: str = "ringkv", **kw: Any
) -> tuple[Runtime, FakeCore, str]:
    runtime = Runtime(name, cluster=cluster, tick_ms=5, **kw)
    port = await runtime.listen("127.0.0.1", 0)
    core = FakeCore(name)
    await runtime.start(core)
    return runtime, core, f"127.0.0.1:{port}"


def free_port() -> int:
    """A port nothing listens on (bound and released), for an address that refuses."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until ``condition()`` holds, polling; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)


class RawConn:
    """A bare framed connection for protocol tests: send anything, read frames, see EOF."""

    opened: list[RawConn] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder(1 << 30)
        self.frames: list[Any] = []
        self.packer = new_packer()

    @classmethod
    async def open(cls, address: str, hello: Any = None, cluster: str = "ringkv") -> RawConn:
        host, port = address.rsplit(":", 1)
        conn = cls(*await asyncio.open_connection(host, int(port)))
        cls.opened.append(conn)
        if hello is not False:
            conn.send(client_hello(cluster) if hello is None else hello)
        return conn

    def send(self, obj: Any) -> None:
        self.writer.write(encode_frame(self.packer, obj, 1 << 31))

    def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self, timeout: float = 5.0) -> Any:
        while not self.frames:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise EOFError("connection closed")
            self.frames += self.decoder.feed(data)
        return self.frames.pop(0)

    async def call(self, req_id: Any, op: str, args: dict[str, Any]) -> Any:
        self.send([req_id, op, args])
        return await self.recv()

    async def eof(self, timeout: float = 5.0) -> bool:
        """True once the node has closed the connection (after any remaining frames)."""
        data = await asyncio.wait_for(self.reader.read(), timeout)
        self.frames += self.decoder.feed(data) if data else []
        return True

    def close(self) -> None:
        self.writer.close()

    @classmethod
    async def close_all(cls) -> None:
        """Close every connection a test opened, so none is left for the collector."""
        conns, cls.opened = cls.opened, []
        for conn in conns:
            conn.writer.close()
            try:
                await conn.writer.wait_closed()
            except OSError:
                pass
