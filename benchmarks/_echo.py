"""An in-memory three-process replicated echo: the ceiling a Python ring can reach here.

    python benchmarks/_echo.py replica --listen 127.0.0.1:0
    python benchmarks/_echo.py coordinator --listen 127.0.0.1:0 --replicas A:P,B:P

Written the way ringd is (``asyncio.Protocol`` callbacks on uvloop, length-prefixed msgpack
frames, all frames queued for a connection in one loop iteration joined into one
``transport.write``) but with nothing else: no vector clocks, no storage engine, no ring. The
coordinator speaks the ringkv client protocol, so the same load generator drives it. A ``put``
is forwarded to both replicas and acknowledged after both acks; a ``get`` asks both replicas and
answers after both replies (N=2 replicas, W=R=2 — ringkv's coordinator also stores a third copy,
which is part of what the ratio measures).

Each process prints ``echo NAME listening on HOST:PORT`` on stderr once it serves, and exits
on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from typing import Any, cast

import uvloop
from _wire import Frames, frame, new_packer, parse_address, server_hello

_PACKER = new_packer()


class Flusher:
    """Joins every frame queued on a connection during one loop iteration into one write."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[Conn] = []
        self.scheduled = False

    def mark(self, conn: Conn) -> None:
        self.dirty.append(conn)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            out, conn.out = conn.out, []
            if conn.transport is not None and out:
                conn.transport.write(out[0] if len(out) == 1 else b"".join(out))


class Conn(asyncio.Protocol):
    def __init__(self, flusher: Flusher) -> None:
        self.flusher = flusher
        self.frames = Frames()
        self.out: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not a subclass of asyncio.Transport, so no isinstance check.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def queue(self, data: bytes) -> None:
        if not self.out:
            self.flusher.mark(self)
        self.out.append(data)


class ReplicaServer(Conn):
    """A replica: ``[n, "put", key, value]`` -> ``[n, None]``; ``[n, "get", key]`` -> ``[n, v]``."""

    def __init__(self, flusher: Flusher, store: dict[bytes, bytes]) -> None:
        super().__init__(flusher)
        self.store = store

    def data_received(self, data: bytes) -> None:
        store = self.store
        for msg in self.frames.feed(data):
            if msg[1] == "put":
                store[msg[2]] = msg[3]
                self.queue(frame(_PACKER, [msg[0], None]))
            else:
                self.queue(frame(_PACKER, [msg[0], store.get(msg[2])]))


class Coordinator:
    """Request state in one dict of plain lists: ``n -> [client conn, client id, acks left, v]``."""

    def __init__(self, flusher: Flusher) -> None:
        self.flusher = flusher
        self.replicas: list[ReplicaLink] = []
        self.pending: dict[int, list[Any]] = {}
        self.next_n = 0

    def request(self, conn: ClientServer, req_id: Any, op: str, args: dict[str, Any]) -> None:
        if op not in ("put", "get"):
            conn.queue(frame(_PACKER, [req_id, None, {"members": []}]))
            return
        self.next_n += 1
        n = self.next_n
        self.pending[n] = [conn, req_id, len(self.replicas), None]
        msg = frame(_PACKER, [n, op, args["key"], args.get("value")])
        for link in self.replicas:
            link.queue(msg)

    def replied(self, n: int, value: Any) -> None:
        entry = self.pending[n]
        if value is not None:
            entry[3] = value
        entry[2] -= 1
        if entry[2] == 0:
            del self.pending[n]
            entry[0].queue(frame(_PACKER, [entry[1], None, entry[3]]))


class ClientServer(Conn):
    def __init__(self, flusher: Flusher, coordinator: Coordinator) -> None:
        super().__init__(flusher)
        self.coordinator = coordinator
        self.greeted = False

    def data_received(self, data: bytes) -> None:
        request = self.coordinator.request
        for msg in self.frames.feed(data):
            if self.greeted:
                request(self, msg[0], msg[1], msg[2])
            else:
                self.greeted = True
                self.queue(frame(_PACKER, server_hello("echo")))


class ReplicaLink(Conn):
    def __init__(self, flusher: Flusher, coordinator: Coordinator) -> None:
        super().__init__(flusher)
        self.coordinator = coordinator

    def data_received(self, data: bytes) -> None:
        replied = self.coordinator.replied
        for msg in self.frames.feed(data):
            replied(msg[0], msg[1])


async def serve(role: str, listen: str, replicas: list[str]) -> None:
    loop = asyncio.get_running_loop()
    flusher = Flusher(loop)
    host, port = parse_address(listen)
    if role == "replica":
        store: dict[bytes, bytes] = {}
        server = await loop.create_server(lambda: ReplicaServer(flusher, store), host, port)
    else:
        coordinator = Coordinator(flusher)
        for address in replicas:
            rhost, rport = parse_address(address)
            _, link = await loop.create_connection(
                lambda: ReplicaLink(flusher, coordinator), rhost, rport
            )
            coordinator.replicas.append(link)
        server = await loop.create_server(lambda: ClientServer(flusher, coordinator), host, port)
    bound = server.sockets[0].getsockname()
    print(f"echo {role} listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("role", choices=["replica", "coordinator"])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--replicas", default="", help="coordinator: replica addresses, A,B")
    args = parser.parse_args(argv)
    replicas = [a for a in args.replicas.split(",") if a]
    if args.role == "coordinator" and not replicas:
        parser.error("a coordinator needs --replicas")
    uvloop.run(serve(args.role, args.listen, replicas))


if __name__ == "__main__":
    main()
