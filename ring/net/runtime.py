"""The runtime: feeds events from the network and the clock to the pure core, carries out its
effects, and owns the sockets.

One core, one event loop, no task per request. Each callback (a TCP read, a datagram, a tick)
turns into ``core.handle(event, now_ms)``; the effects it returns are applied at once —
``Send`` queues a frame on a peer link, ``Reply`` a frame on the client's connection,
``SendDatagram`` goes out on the UDP socket. Queued frames are joined into one
``transport.write`` per connection by a single ``call_soon`` flush per loop iteration.

``now_ms`` is wall-clock milliseconds, because the core stamps values with it (latest-timestamp
resolution across nodes needs a shared clock), read through :class:`SteadyWallClock` so that a
clock stepped back cannot stall the core's timers; ``clock`` is a parameter so tests can pass
another.

Client request ids are per connection and chosen by the client; the core needs ids unique in the
process, so each request gets a fresh integer and ``pending`` maps it back to
``(connection, client id, op)``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from ring.core import messages
from ring.core.messages import ClientRequest, Datagram, Log, PeerMessage, Reply, Send, SendDatagram
from ring.net.codec import (
    DEFAULT_CLUSTER,
    MAX_FRAME_BYTES,
    FrameTooLarge,
    encode_frame,
    new_packer,
)
from ring.net.peers import PeerPool
from ring.net.tcp import FramedConnection, ServerConnection
from ring.net.udp import GossipEndpoint

log = logging.getLogger("ringd")

_WILDCARDS = ("", "*", "0.0.0.0", "::")


class Core(Protocol):
    """The pure node (``ring.core.node.Node``) as the runtime sees it."""

    def start(self, now_ms: int) -> list[Any]: ...

    def handle(self, event: Any, now_ms: int) -> list[Any]: ...

    def stop(self, now_ms: int) -> list[Any]: ...

    def idle(self) -> bool: ...


class SteadyWallClock:
    """Wall-clock milliseconds that never go backwards and never stall.

    The core stamps values with ``now_ms`` *and* runs its timers on it. A raw wall clock that
    an NTP step sets back an hour would freeze every request timer for that hour, so this clock
    advances with the monotonic clock from a wall-clock anchor. It follows the wall clock when
    that jumps ahead (re-anchoring), and ignores it when it goes back (staying ahead of it,
    which only makes our timestamps a little later).
    """

    def __init__(
        self,
        wall_ns: Callable[[], int] = time.time_ns,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._wall_ns = wall_ns
        self._monotonic_ns = monotonic_ns
        self._anchor_ns = wall_ns() - monotonic_ns()
        self._last = 0

    def __call__(self) -> int:
        mono = self._monotonic_ns()
        now = (self._anchor_ns + mono) // 1_000_000
        wall = self._wall_ns() // 1_000_000
        if wall > now + 1000:  # the wall clock jumped forward (or drifted): follow it
            self._anchor_ns = wall * 1_000_000 - mono
            now = wall
        self._last = now = max(now, self._last)
        return now


class Runtime:
    def __init__(
        self,
        name: str,
        *,
        cluster: str = DEFAULT_CLUSTER,
        tick_ms: int = 20,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        clock: Callable[[], int] | None = None,
        commit: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        # Group commit: makes the core's pending storage writes durable before frames go out.
        self.commit: Callable[[], None] = commit if commit is not None else (lambda: None)
        self.cluster = cluster
        self.tick_s = tick_ms / 1000
        self.max_frame_bytes = max_frame_bytes
        self.clock = clock if clock is not None else SteadyWallClock()
        self.core: Core | None = None
        self.counters: dict[str, int] = {}
        self.pending: dict[int, tuple[ServerConnection, Any, str]] = {}
        self.connections: set[ServerConnection] = set()
        self.draining = False
        self.stopped = False
        self._cut_drain = False
        self._next_id = 0
        self._packer = new_packer()
        self._last_msg: Any = None  # the last peer message encoded, and its frame
        self._last_frame = b""
        self._dirty: list[FramedConnection] = []
        self._flush_handle: asyncio.Handle | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.udp: GossipEndpoint | None = None
        self.peers: PeerPool | None = None

    # --- sockets -----------------------------------------------------------------------------

    async def listen(self, host: str, port: int, attempts: int = 20) -> int:
        """Bind TCP and UDP on the same port (port 0: any free one); return the port."""
        loop = self._loop = asyncio.get_running_loop()
        self.peers = PeerPool(loop, self, queue_limit=2 * self.max_frame_bytes)
        ip = "0.0.0.0" if host in _WILDCARDS[:3] else host
        if ip not in _WILDCARDS:
            infos = await loop.getaddrinfo(ip, port, type=socket.SOCK_STREAM)
            infos.sort(key=lambda i: i[0] != socket.AF_INET)  # prefer IPv4 for a name
            ip = str(infos[0][4][0])
        for attempt in range(attempts):
            server = await loop.create_server(
                lambda: ServerConnection(self), ip, port, start_serving=False, backlog=1024
            )
            real_port = int(server.sockets[0].getsockname()[1])
            try:
                _, udp = await loop.create_datagram_endpoint(
                    lambda: GossipEndpoint(self), local_addr=(ip, real_port)
                )
            except OSError as exc:
                server.close()
                await server.wait_closed()
                if port != 0 or exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise
                continue
            self._server, self.udp = server, udp
            return real_port
        raise AssertionError("unreachable")

    async def start(self, core: Core) -> None:
        """Attach the core, run its start effects, start ticking and accepting connections."""
        assert self._server is not None and self._loop is not None, "listen() first"
        self.core = core
        self._apply(core.start(self.clock()))
        self._tick_handle = self._loop.call_later(self.tick_s, self._tick)
        await self._server.start_serving()

    async def shutdown(self, drain_s: float = 5.0) -> None:
        """Stop accepting, let coordinated requests finish, tell peers, close everything."""
        core, loop = self.core, self._loop
        assert core is not None and loop is not None
        self.draining = True
        if self._server is not None:
            self._server.close()
        deadline = loop.time() + drain_s
        while not core.idle() and loop.time() < deadline and not self._cut_drain:
            await asyncio.sleep(self.tick_s)
        if not core.idle():
            log.warning("stopping with %d client requests unanswered", len(self.pending))
        self._apply(core.stop(self.clock()))
        self.stopped = True
        self._flush()
        assert self.peers is not None
        flush_deadline = loop.time() + 1.0
        while self.peers.write_buffer_size() and loop.time() < flush_deadline:
            await asyncio.sleep(0.01)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        for conn in list(self.connections):
            conn.close()
        await self.peers.close()
        if self.udp is not None:
            self.udp.close()
        if self._server is not None:
            await self._server.wait_closed()

    def cut_drain(self) -> None:
        """Make a running ``shutdown`` stop waiting for requests in flight."""
        self._cut_drain = True

    # --- events in ---------------------------------------------------------------------------

    def client_request(self, conn: ServerConnection, req_id: Any, op: str, args: Any) -> None:
        if self.draining:
            self._answer(conn, req_id, "unavailable", f"node {self.name} is shutting down")
            return
        self._next_id += 1
        rid = self._next_id
        self.pending[rid] = (conn, req_id, op)
        self._handle(ClientRequest(rid, op, args))

    def peer_message(self, src: str, msg: Any) -> None:
        self._handle(PeerMessage(src, msg))

    def peer_connected(self, name: str) -> None:
        if self.peers is not None:
            self.peers.peer_is_back(name)

    def datagram(self, src: str, msg: Any) -> None:
        self._handle(Datagram(src, msg))

    def _tick(self) -> None:
        assert self._loop is not None
        self._tick_handle = self._loop.call_later(self.tick_s, self._tick)
        self._handle(messages.Tick())

    def _handle(self, event: Any) -> None:
        core = self.core
        if core is None or self.stopped:
            return
        try:
            effects = core.handle(event, self.clock())
        except Exception:
            self.count("core_errors")
            log.exception("the core failed on %s", type(event).__name__)
            if type(event) is ClientRequest:
                self._apply([Reply(event.req_id, "internal", "internal error; see the node log")])
            return
        self._apply(effects)

    # --- effects out -------------------------------------------------------------------------

    def _apply(self, effects: list[Any]) -> None:
        for effect in effects:
            kind = type(effect)
            if kind is Send:
                self._send(effect)
            elif kind is Reply:
                self._reply(effect)
            elif kind is SendDatagram:
                self._send_datagram(effect)
            elif kind is Log:
                level = logging.getLevelName(effect.level.upper())
                log.log(level if isinstance(level, int) else logging.INFO, "%s", effect.text)
            else:
                log.error("the core returned an unknown effect %r", effect)

    def _send(self, effect: Send) -> None:
        if effect.dest == self.name:
            assert self._loop is not None
            self._loop.call_soon(self.peer_message, self.name, effect.msg)
            return
        msg = effect.msg
        if msg is self._last_msg:
            # The same record is usually replicated to N-1 peers in a row: encode it once.
            frame = self._last_frame
            assert self.peers is not None
            self.peers.send(effect.dest, effect.address, frame)
            return
        try:
            frame = encode_frame(self._packer, messages.to_wire(msg), self.max_frame_bytes)
            self._last_msg, self._last_frame = msg, frame
        except (FrameTooLarge, TypeError, ValueError) as exc:
            self.count("peer_frames_dropped")
            log.error("cannot send %s to %s: %s", type(effect.msg).__name__, effect.dest, exc)
            return
        assert self.peers is not None
        self.peers.send(effect.dest, effect.address, frame)

    def _send_datagram(self, effect: SendDatagram) -> None:
        try:
            data = self._packer.pack(messages.to_wire(effect.msg))
        except (TypeError, ValueError) as exc:
            log.error("cannot encode %s: %s", type(effect.msg).__name__, exc)
            return
        if self.udp is not None:
            self.udp.send(effect.address, data)

    def _reply(self, effect: Reply) -> None:
        entry = self.pending.pop(effect.req_id, None)
        if entry is None:
            log.debug("reply to unknown request %s dropped", effect.req_id)
            return
        conn, client_id, op = entry
        result = effect.result
        if op == "status" and effect.error is None and isinstance(result, dict):
            result = {**result, "counters": self.stats()}
        self._answer(conn, client_id, effect.error, result)

    def _answer(self, conn: ServerConnection, client_id: Any, error: Any, result: Any) -> None:
        conn.request_done()
        if conn.closed:
            return
        try:
            frame = encode_frame(self._packer, [client_id, error, result], self.max_frame_bytes)
        except FrameTooLarge as exc:
            frame = encode_frame(self._packer, [client_id, "too_large", str(exc)])
        except (TypeError, ValueError) as exc:
            log.error("cannot encode a reply: %s", exc)
            frame = encode_frame(self._packer, [client_id, "internal", "reply not encodable"])
        conn.queue(frame)

    # --- the dispatcher interface of connections ---------------------------------------------

    def mark_dirty(self, conn: FramedConnection) -> None:
        self._dirty.append(conn)
        if self._flush_handle is None:
            assert self._loop is not None
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self.commit()
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()

    def count(self, counter: str, n: int = 1) -> None:
        self.counters[counter] = self.counters.get(counter, 0) + n

    def connection_opened(self, conn: ServerConnection) -> None:
        self.connections.add(conn)
        self.count("tcp_accepted")

    def connection_closed(self, conn: FramedConnection) -> None:
        if isinstance(conn, ServerConnection):
            self.connections.discard(conn)

    def stats(self) -> dict[str, int]:
        """The core's counters (``Node.stats``), the shell's, and a few gauges: what a status
        reply shows under ``"counters"``."""
        peers = self.peers
        core_stats = getattr(self.core, "stats", None)  # the node's own counters, if it has any
        return {
            **(core_stats if isinstance(core_stats, dict) else {}),
            **self.counters,
            "client_connections": sum(1 for c in self.connections if c.role == "client"),
            "peer_links": len(peers.links) if peers is not None else 0,
            "requests_in_flight": len(self.pending),
        }
