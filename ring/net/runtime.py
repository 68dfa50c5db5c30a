"""The runtime: feeds events from the network and the clock to the pure core, carries out its
effects, and owns the sockets.

One core, one event loop, no task per request. Each callback (a TCP read, a datagram, a tick)
turns into ``core.handle(event, now_ms)``; the effects it returns are applied at once —
``Send`` queues a frame on a peer link, ``Reply`` a frame on the client's connection,
``SendDatagram`` goes out on the UDP socket. Queued frames are joined into one
``transport.write`` per connection by a single ``call_soon`` flush per loop iteration.

Group commit (``ring.storage.group``). The core's storage writes only gather in memory; the flush
step first calls ``commit`` (``GroupCommitStorage.start_commit``) for the writes of this
iteration, then takes every dirty connection's frames as one *wave*. Invariants:

* no frame leaves before the writes of its iteration, and of every earlier iteration, are
  durable: without ``--sync`` the commit is done on return (a log append on the loop thread)
  and the wave is written at once; with ``--sync`` it returns a future that the storage's
  worker thread completes once the batch is fsynced, and the wave waits for it (the iterations
  during one fsync all wait for the next batch, which covers all their writes);
* waves are written in the order they were produced: a wave waits behind every wave still held,
  even one whose iteration wrote nothing — a read reply must not show a write that is not yet
  durable ahead of that write's acknowledgement. The worker reports completion with
  ``call_soon_threadsafe``; the loop itself (``_release``) writes the waves that are due;
* a failed commit acknowledges nothing: the wave held for it and every later frame are dropped,
  ``commit_errors`` is counted, the error logged, and the node stops serving (``stopped``);
  ``on_commit_error`` tells the process (``ringd`` exits with 4).

Datagrams (gossip) do not wait: they acknowledge no write, and a slow disk must not make the
node look dead to its peers' failure detectors. The loop itself only waits for the disk when the
core asks for a write that is durable on return (``write(..., sync=True)``: node identity, the
ring it knows, start and stop), which are rare.

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
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol, assert_never

from ring.core import messages
from ring.core.messages import (
    ClientRequest,
    Datagram,
    Effect,
    Halt,
    Log,
    PeerMessage,
    Reply,
    Retired,
    Send,
    SendDatagram,
    Serving,
)
from ring.logs import ev
from ring.net.auth import Security
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

if TYPE_CHECKING:
    from ring.net.metrics import RequestStats

log = logging.getLogger("ringd")

_WILDCARDS = ("", "*", "0.0.0.0", "::")
HANDSHAKE_TIMEOUT_S = 5.0  # a TLS handshake not done by then closes the connection


Wave = tuple[FramedConnection, bytes, bool]  # one connection's frames of a flush, close after


class Core(Protocol):
    """The pure node (``ring.core.node.Node``) as the runtime sees it."""

    def start(self, now_ms: int) -> list[Effect]: ...

    def handle(self, event: Any, now_ms: int) -> list[Effect]: ...

    def stop(self, now_ms: int) -> list[Effect]: ...

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
        commit: Callable[[], Future[None] | None] | None = None,
        on_commit_error: Callable[[BaseException], None] | None = None,
        settings: dict[str, Any] | None = None,
        on_serving: Callable[[], None] | None = None,
        on_halt: Callable[[str], None] | None = None,
        on_retired: Callable[[str], None] | None = None,
        security: Security | None = None,
    ) -> None:
        self.name = name
        # The cluster secret and TLS (``ring.net.auth``): None or no secrets is an open node.
        self.security = security
        # What every peer must share with this node (checked at its hello), and what the
        # process does when the core starts serving or cannot go on.
        self.settings = settings
        self.on_serving: Callable[[], None] = on_serving or (lambda: None)
        self.on_halt: Callable[[str], None] = on_halt or (lambda reason: None)
        self.on_retired: Callable[[str], None] = on_retired or (lambda reason: None)
        # Group commit (see the module docstring): starts making the core's storage writes
        # durable; None when they are on return, else a future completed from another thread.
        self.commit: Callable[[], Future[None] | None] = commit or (lambda: None)
        self.on_commit_error = on_commit_error
        self.commit_error: BaseException | None = None
        self.cluster = cluster
        self.tick_s = tick_ms / 1000
        self.max_frame_bytes = max_frame_bytes
        self.clock = clock if clock is not None else SteadyWallClock()
        self.core: Core | None = None
        self.counters: dict[str, int] = {}
        # (connection, client id, op, arrival in monotonic ns: 0 unless metrics are on)
        self.pending: dict[int, tuple[ServerConnection, Any, str, int]] = {}
        # Per-request counts and latencies for ``ringd --metrics`` (``ring.net.metrics``).
        self.requests: RequestStats | None = None
        self.connections: set[ServerConnection] = set()
        self.draining = False
        self.stopped = False
        self._cut_drain = False
        self._next_id = 0
        self._packer = new_packer()
        self._last_msg: Any = None  # the last peer message encoded, and its frame
        self._last_frame = b""
        self._dirty: list[FramedConnection] = []
        # Waves of frames held until their commit is durable, oldest first: (the future of the
        # iteration's batch, or None if it sealed none; [(connection, frames, close after)]).
        self._waves: deque[tuple[Future[None] | None, list[Wave]]] = deque()
        self._watched: Future[None] | None = None  # the last commit future seen
        self._released = asyncio.Event()  # set whenever no wave is held
        self._released.set()
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
        security = self.security
        tls = security.server_ssl if security is not None else None
        gossip = security.gossip if security is not None else None
        refusals = security.refusals if security is not None else None
        for attempt in range(attempts):
            server = await loop.create_server(
                lambda: ServerConnection(self),
                ip,
                port,
                start_serving=False,
                backlog=1024,
                ssl=tls,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if tls is not None else None,
            )
            real_port = int(server.sockets[0].getsockname()[1])
            try:
                _, udp = await loop.create_datagram_endpoint(
                    lambda: GossipEndpoint(self, gossip, refusals), local_addr=(ip, real_port)
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
        """Stop accepting, let coordinated requests finish, tell peers, write every frame held
        for a commit once it is durable (however long the disk takes: they acknowledge writes),
        close everything. After a failed commit nothing is left to finish: it does not wait."""
        core, loop = self.core, self._loop
        assert core is not None and loop is not None
        self.draining = True
        if self._server is not None:
            self._server.close()
        deadline = loop.time() + drain_s
        while (
            not core.idle()
            and loop.time() < deadline
            and not self._cut_drain
            and self.commit_error is None
        ):
            await asyncio.sleep(self.tick_s)
        if not core.idle():
            unanswered = len(self.pending)
            log.warning(
                "stopping with %d client requests unanswered",
                unanswered,
                extra=ev("stop_unanswered", requests=unanswered),
            )
        self._stop_core(core)
        self.stopped = True
        self._flush()
        await self._released.wait()
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

    async def close_sockets(self) -> None:
        """Close what ``listen`` opened, when the node will not ``start`` after all."""
        if self.udp is not None:
            self.udp.close()
        if self.peers is not None:
            await self.peers.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _stop_core(self, core: Core) -> None:
        """Tell the core it stops; if that fails (its storage write, after a failed commit),
        close the rest all the same."""
        try:
            self._apply(core.stop(self.clock()))
        except Exception as exc:
            if self.commit_error is None:
                log.exception("the core failed to stop", extra=ev("stop_failed"))
            else:
                log.warning(
                    "the node could not record its stop: %s",
                    exc,
                    extra=ev("stop_not_recorded", error=str(exc)),
                )

    def cut_drain(self) -> None:
        """Make a running ``shutdown`` stop waiting for requests in flight."""
        self._cut_drain = True

    # --- events in ---------------------------------------------------------------------------

    def client_request(self, conn: ServerConnection, req_id: Any, op: str, args: Any) -> None:
        stats = self.requests
        if self.draining:
            if stats is not None:
                stats.client(op, "unavailable", time.monotonic_ns())
            self._answer(conn, req_id, "unavailable", f"node {self.name} is shutting down")
            return
        self._next_id += 1
        rid = self._next_id
        self.pending[rid] = (conn, req_id, op, 0 if stats is None else time.monotonic_ns())
        self._handle(ClientRequest(rid, op, args))

    def peer_message(self, src: str, msg: Any) -> None:
        stats = self.requests
        if stats is not None:
            op = stats.replica_ops.get(type(msg))
            if op is not None:
                started = time.monotonic_ns()
                self._handle(PeerMessage(src, msg))
                stats.replica(op, started)
                return
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
            what = type(event).__name__
            log.exception("the core failed on %s", what, extra=ev("core_failed", on=what))
            if type(event) is ClientRequest:
                self._apply([Reply(event.req_id, "internal", "internal error; see the node log")])
            return
        self._apply(effects)

    # --- effects out -------------------------------------------------------------------------

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self._send(effect)
            elif isinstance(effect, Reply):
                self._reply(effect)
            elif isinstance(effect, SendDatagram):
                self._send_datagram(effect)
            elif isinstance(effect, Log):
                level = logging.getLevelName(effect.level.upper())
                log.log(
                    level if isinstance(level, int) else logging.INFO,
                    "%s",
                    effect.text,
                    extra={"event": effect.event, "fields": effect.fields or {}},
                )
            elif isinstance(effect, Serving):
                self.on_serving()
            elif isinstance(effect, Halt):
                log.error("%s", effect.reason, extra=ev("halt"))
                self.on_halt(effect.reason)
            elif isinstance(effect, Retired):
                log.info("%s", effect.reason, extra=ev("retired"))
                self.on_retired(effect.reason)
            else:
                assert_never(effect)  # mypy checks that every kind of effect is handled

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
            kind = type(effect.msg).__name__
            log.error(
                "cannot send %s to %s: %s",
                kind,
                effect.dest,
                exc,
                extra=ev("send_failed", message=kind, peer=effect.dest, error=str(exc)),
            )
            return
        assert self.peers is not None
        self.peers.send(effect.dest, effect.address, frame)

    def _send_datagram(self, effect: SendDatagram) -> None:
        try:
            data = self._packer.pack(messages.to_wire(effect.msg))
        except (TypeError, ValueError) as exc:
            kind = type(effect.msg).__name__
            log.error("cannot encode %s: %s", kind, exc, extra=ev("encode_failed", message=kind))
            return
        if self.udp is not None:
            self.udp.send(effect.address, data)

    def _reply(self, effect: Reply) -> None:
        entry = self.pending.pop(effect.req_id, None)
        if entry is None:
            log.debug(
                "reply to unknown request %s dropped", effect.req_id, extra=ev("reply_dropped")
            )
            return
        conn, client_id, op, started = entry
        if started:
            assert self.requests is not None
            self.requests.client(op, effect.error, started)
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
            log.error("cannot encode a reply: %s", exc, extra=ev("reply_not_encodable"))
            frame = encode_frame(self._packer, [client_id, "internal", "reply not encodable"])
        conn.queue(frame)

    # --- the dispatcher interface of connections ---------------------------------------------

    def mark_dirty(self, conn: FramedConnection) -> None:
        self._dirty.append(conn)
        if self._flush_handle is None:
            assert self._loop is not None
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """The flush step, once per loop iteration: commit this iteration's writes, then write
        its frames — at once if that commit is done and no wave is held, else as a wave held
        behind the others until its commit is durable (see the module docstring)."""
        self._flush_handle = None
        dirty, self._dirty = self._dirty, []
        if self.commit_error is not None:
            self._drop(dirty)
            return
        try:
            durable = self.commit()
        except Exception as exc:
            self._commit_failed(exc)
            self._drop(dirty)
            return
        wave = [(conn, *chunk) for conn in dirty if (chunk := conn.take()) is not None]
        if durable is None and not self._waves:
            _write_wave(wave)
            return
        self._waves.append((durable, wave))
        self._released.clear()
        if durable is not None and durable is not self._watched:
            # The iterations during one fsync all wait for the same next batch: one callback.
            self._watched = durable
            durable.add_done_callback(self._durable)

    def _durable(self, future: Future[None]) -> None:
        # Runs in the storage's worker thread (or here, if already done): hop to the loop.
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._release)
        except RuntimeError:  # the loop is closed: nobody is left to answer
            pass

    def _release(self) -> None:
        """Write the held waves whose commits are durable, in order, up to the first that is
        not (a wave of an iteration that wrote nothing is due once the waves before it are)."""
        waves = self._waves
        while waves:
            durable, wave = waves[0]
            if durable is not None:
                if not durable.done():
                    return
                error = durable.exception()
                if error is not None:
                    self._commit_failed(error)
                    return
            waves.popleft()
            _write_wave(wave)
        self._released.set()

    def _commit_failed(self, error: BaseException) -> None:
        """Acknowledge nothing more and stop serving: the data directory is unusable."""
        if self.commit_error is not None:
            return
        self.commit_error = error
        self.count("commit_errors")
        log.error(
            "cannot write to the data directory: %s: %s; stopping, and acknowledging nothing "
            "written since the last successful commit",
            type(error).__name__,
            error,
            extra=ev("commit_failed", error=f"{type(error).__name__}: {error}"),
        )
        self.stopped = self.draining = True
        # Counted per connection buffer (the frames of one connection in one flush step).
        self.count("buffers_unsent", sum(len(wave) for _, wave in self._waves))
        self._waves.clear()
        self._released.set()
        if self.on_commit_error is not None:
            self.on_commit_error(error)

    def _drop(self, dirty: list[FramedConnection]) -> None:
        """After a failed commit: discard the frames queued (nothing may leave any more)."""
        self.count("buffers_unsent", sum(1 for conn in dirty if conn.take() is not None))

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


def _write_wave(wave: list[Wave]) -> None:
    for conn, data, last in wave:
        conn.write_out(data, last)
