"""TCP connections of a node: inbound (clients and peers) and outbound (links to peers).

Both are ``asyncio.Protocol`` objects driven by callbacks — no task per request. Frames produced
while handling events are queued on the connection; once per loop iteration the runtime takes
each connection's queue as one buffer (``Dispatcher.mark_dirty``, ``take``) and writes it with a
single ``transport.write`` (``write_out``) once the storage writes of that iteration, and of
every earlier one, are durable (group commit, see ``ring.net.runtime``).

Invariants:

* frames leave only through the dispatcher's ``write_out``, in the order they were taken, so no
  reply overtakes the commit of a write it acknowledges or shows (the one frame written here,
  ``PeerLink``'s hello, acknowledges nothing);

* an inbound connection says nothing but its hello answer until it has received a valid hello,
  and answers a broken frame with ``[None, "protocol", why]`` — behind the frames it still owes
  — and closes, only itself;
* inbound *node* connections are one-way: a peer sends over its own outbound link and we answer
  over ours, so a message's reply never depends on which side opened a connection;
* an outbound link queues frames until the peer's hello answer proves it is the node we meant,
  then sends them in order; frames for an unreachable peer are dropped (the core's timeouts,
  hints and anti-entropy deal with loss, as they must with any network).

With a cluster secret (``dispatcher.security.secrets``, see ``ring.net.auth``):

* an inbound connection parses nothing but the hello and the proof until the proof verified:
  a connection without the secret is answered ``[None, "auth", why]``, counted
  (``auth_failed`` and ``auth_failed_<reason>``), logged at most once a minute per address,
  and closed; one that has not proved itself within ``HELLO_TIMEOUT_S`` is closed;
* after the handshake every byte read is verified record by record before the frame decoder
  sees it, and every buffer ``take`` hands out is sealed (one record per buffer), so the MAC
  costs one tag per connection per loop iteration, not one per frame;
* an outbound link sends nothing but its hello and proof until the peer proved itself.

With TLS (``security.server_ssl``) the transport is encrypted beneath all this; a peer's hello
(role ``node``) is refused unless the peer showed a certificate signed by the cluster's CA.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import weakref
from collections.abc import Callable
from typing import Any, Protocol, cast

from ring.core import messages
from ring.errors import AuthenticationFailed, ProtocolError
from ring.logs import ev
from ring.net.auth import (
    HELLO_MAX_BYTES,
    AuthError,
    ClientHandshake,
    RefusalLog,
    Security,
    ServerHandshake,
    Session,
    peer_has_certificate,
    take_frame,
    take_hello_answer,
)
from ring.net.codec import (
    FrameDecoder,
    FrameError,
    auth_error,
    check_client_hello,
    check_server_hello,
    client_hello,
    encode_frame,
    new_packer,
    protocol_error,
    server_hello,
)

log = logging.getLogger("ringd")

# Reading from a client pauses while this many of its requests are unanswered.
MAX_INFLIGHT_PER_CONNECTION = 4096
HELLO_TIMEOUT_S = 5.0
PENDING_MAX = 256  # connections waiting for their hello (see PendingHellos)
PENDING_PER_SOURCE_MAX = 64
HELLO_WHY_MAX = 300  # characters of a refused hello's reason (answered and logged)
_MALFORMED = "a malformed hello"
_OPEN_REFUSALS = RefusalLog()  # refused hellos on nodes without a secret (logged sparingly)


class Dispatcher(Protocol):
    """What connections call into: the runtime, or a test double."""

    name: str
    cluster: str
    max_frame_bytes: int
    settings: dict[str, Any] | None  # what peers must share with us (checked at their hello)
    # The cluster secret and TLS (``ring.net.auth``); a dispatcher without it is open.
    security: Security | None

    def mark_dirty(self, conn: FramedConnection) -> None:
        """``conn`` has frames queued: ``take`` them in this iteration's flush step and
        ``write_out`` them once the writes they acknowledge are durable."""

    def count(self, counter: str, n: int = 1) -> None: ...

    def client_request(self, conn: ServerConnection, req_id: Any, op: str, args: Any) -> None: ...

    def peer_message(self, src: str, msg: Any) -> None: ...

    def peer_connected(self, name: str) -> None:
        """A node opened a connection to us (it may have just restarted)."""

    def connection_opened(self, conn: ServerConnection) -> None: ...

    def connection_closed(self, conn: FramedConnection) -> None: ...


class FramedConnection(asyncio.Protocol):
    """Frame decoding, an output queue flushed once per iteration, and flow control."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(dispatcher.max_frame_bytes)
        self.out: list[bytes] = []
        self.closed = False
        self.inflight = 0
        self._write_paused = False
        self._read_paused = False
        self.security: Security | None = getattr(dispatcher, "security", None)
        self.session: Session | None = None  # the record layer, once authenticated

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    @property
    def peername(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    def queue(self, frame: bytes) -> None:
        if self.closed:
            return
        if not self.out:
            self.dispatcher.mark_dirty(self)
        self.out.append(frame)

    def take(self) -> tuple[bytes, bool] | None:
        """Detach the queued frames as one buffer, for the dispatcher to ``write_out`` once
        they may leave; and whether the connection closes after them (it failed: they end
        with its error frame)."""
        out = self.out
        if not out:
            return None
        self.out = []
        data = out[0] if len(out) == 1 else b"".join(out)
        if self.session is not None:
            data = self.session.sealer.seal(data)
        return data, self.closed

    def write_out(self, data: bytes, last: bool) -> None:
        """Write frames taken before (the dispatcher's job, in the order it took them)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if last:
            transport.close()

    def fail(self, why: str) -> None:
        """Answer a protocol violation and close this connection only.

        It is closed to anything new at once (no more reads, no more replies); the error frame
        joins the frames it still owes, behind them, and the transport closes once the
        dispatcher has written it (``take`` says so)."""
        if self.closed:
            return
        self.dispatcher.count("protocol_errors")
        log.info(
            "closing connection from %s: %s",
            self.peername,
            why,
            extra=ev("connection_closed", source=self.peername, why=why),
        )
        frame = encode_frame(new_packer(), protocol_error(why), 1 << 31)
        self.queue(frame)
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def close(self) -> None:
        """Close now, dropping the frames not yet written (also those of a failed one)."""
        self.closed = True
        self.out = []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.out = []
        self.dispatcher.connection_closed(self)

    # Flow control: stop reading while the peer does not read our replies, or while too many of
    # its requests are in flight, so one greedy client cannot grow our memory without bound.
    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        want_pause = self._write_paused or self.inflight >= MAX_INFLIGHT_PER_CONNECTION
        if self.transport is None or self.closed or want_pause == self._read_paused:
            return
        if not want_pause and self.inflight > MAX_INFLIGHT_PER_CONNECTION // 2:
            return
        self._read_paused = want_pause
        if want_pause:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def request_done(self) -> None:
        self.inflight -= 1
        if self._read_paused:
            self._update_reading()


def pending_limits() -> tuple[int, int]:
    """How many accepted connections may wait for their hello at once, overall and per source
    address: 256 and 64, fewer under a low file descriptor limit (an eighth of it), so that
    idle connections cannot take the descriptors the store needs."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        soft = 1024
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    limit = max(8, min(PENDING_MAX, soft // 8))
    return limit, max(4, min(PENDING_PER_SOURCE_MAX, limit // 4))


class PendingHellos:
    """The accepted connections that have not completed their hello (with a secret: not yet
    proved it), oldest first. Admitting one beyond a limit drops the oldest pending one from
    the same address (per-source limit), else the oldest overall: a flood of idle connections
    keeps at most ``limit`` descriptors, and a real client, which completes its hello at once,
    still gets in."""

    def __init__(self, limit: int, per_source: int) -> None:
        self.limit = limit
        self.per_source = per_source
        self._conns: dict[ServerConnection, str] = {}  # insertion order: oldest first
        self._by_source: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._conns)

    def admit(self, conn: ServerConnection, source: str) -> list[ServerConnection]:
        """Add ``conn``; return the connections to drop to make room for it."""
        drop: list[ServerConnection] = []
        if self._by_source.get(source, 0) >= self.per_source:
            oldest = next(c for c, s in self._conns.items() if s == source)
            self.remove(oldest)
            drop.append(oldest)
        elif len(self._conns) >= self.limit:
            oldest = next(iter(self._conns))
            self.remove(oldest)
            drop.append(oldest)
        self._conns[conn] = source
        self._by_source[source] = self._by_source.get(source, 0) + 1
        return drop

    def remove(self, conn: ServerConnection) -> None:
        source = self._conns.pop(conn, None)
        if source is not None:
            left = self._by_source[source] - 1
            if left:
                self._by_source[source] = left
            else:
                del self._by_source[source]


def refusal_due(refusals: RefusalLog, source: str) -> int | None:
    """``refusals.due(source)``, after logging the line that sums up the refusals the overall
    limit kept out of the log in the last period, if any."""
    held = refusals.summary()
    if held is not None:
        log.warning(
            "%d refusals from %d sources were not logged in the last %g s (at most %d lines "
            "per period); see the auth_failed, protocol_errors and udp_refused counters",
            held[0],
            held[1],
            refusals.every_s,
            refusals.max_lines,
            extra=ev("refusals_not_logged", refusals=held[0], sources=held[1]),
        )
    return refusals.due(source)


_pending: weakref.WeakKeyDictionary[Any, PendingHellos] = weakref.WeakKeyDictionary()


def pending_hellos(dispatcher: Dispatcher) -> PendingHellos:
    """The dispatcher's (the node's) pending connections."""
    tracker = _pending.get(dispatcher)
    if tracker is None:
        tracker = _pending[dispatcher] = PendingHellos(*pending_limits())
    return tracker


class ServerConnection(FramedConnection):
    """An accepted connection: a client (requests) or a peer's outbound link (messages)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__(dispatcher)
        self.role: str | None = None  # None until the hello, then "client" or "node"
        self.peer_name: str | None = None
        secrets = self.security.secrets if self.security is not None else ()
        # With a secret: the handshake, the bytes read during it, and the hello's (role, name)
        # until the proof verified.
        self._handshake = ServerHandshake(secrets) if secrets else None
        self._hs_buf = bytearray()
        self._claimed: tuple[str, str | None] | None = None
        self._hs_timer: asyncio.TimerHandle | None = None
        self._pending: PendingHellos | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.dispatcher.connection_opened(self)
        self._pending = pending_hellos(self.dispatcher)
        for old in self._pending.admit(self, self._source()):
            old._drop_pending()
        if self._handshake is not None:
            loop = asyncio.get_running_loop()
            self._hs_timer = loop.call_later(HELLO_TIMEOUT_S, self._handshake_timeout)

    def _drop_pending(self) -> None:
        """Make room for a newer connection: this one has not completed its hello."""
        self.dispatcher.count("pending_dropped")
        more = refusal_due(self._refusals(), "pending connections")
        pending = self._pending
        if more is not None and pending is not None:
            limits = f"{pending.limit} overall, {pending.per_source} per address"
            log.warning(
                "dropped the connection from %s: too many connections without a completed "
                "hello (at most %s)%s",
                self.peername,
                limits,
                f" ({more} more dropped since the last such line)" if more else "",
                extra=ev("pending_dropped", source=self.peername, more=more),
            )
        if self._hs_timer is not None:
            self._hs_timer.cancel()
            self._hs_timer = None
        self._claimed = None  # not an abandoned handshake: we closed it
        self.close()

    def _hello_done(self) -> None:
        if self._pending is not None:
            self._pending.remove(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._hello_done()
        if self._hs_timer is not None:
            self._hs_timer.cancel()
        if self._claimed is not None and self.session is None and not self.closed:
            # It took our proofs and left without its own: it holds another secret.
            self._refuse("abandoned", "closed without proving the cluster secret", answer=False)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is not None:
            try:
                data = session.opener.feed(data)
            except AuthError as exc:
                self._refuse(exc.reason, str(exc), answer=False)
                return
            if not data:
                return
        elif self._handshake is not None:
            self._authenticate(data)
            return
        try:
            frames = self.decoder.feed(data)
        except FrameError as exc:
            self.fail(str(exc))
            return
        dispatcher = self.dispatcher
        for obj in frames:
            if self.closed:
                return
            if self.role == "client":
                if type(obj) is not list or len(obj) != 3:
                    self.fail("a request is [req_id, op, args]")
                    return
                req_id, op, args = obj
                if type(op) is not str or (args is not None and type(args) is not dict):
                    self.fail("a request is [req_id, op: str, args: map]")
                    return
                self.inflight += 1
                dispatcher.client_request(self, req_id, op, args if args is not None else {})
            elif self.role == "node":
                try:
                    msg = messages.from_wire(obj)
                except (ValueError, TypeError) as exc:
                    self.fail(f"bad node message: {exc}")
                    return
                assert self.peer_name is not None
                dispatcher.peer_message(self.peer_name, msg)
            else:
                self._hello(obj)
        if self.inflight >= MAX_INFLIGHT_PER_CONNECTION:
            self._update_reading()

    def _hello(self, obj: Any) -> None:
        try:
            d = self.dispatcher
            role, name = check_client_hello(obj, d.cluster, d.settings, d.name)
            self._check_certificate(role)
        except Exception as exc:  # FrameError; anything else is a malformed hello too
            self._reject(str(exc) if isinstance(exc, FrameError) else _MALFORMED)
            return
        self.role, self.peer_name = role, name
        self._hello_done()
        d = self.dispatcher
        self.queue(encode_frame(new_packer(), server_hello(d.cluster, d.name)))
        if self.role == "node":
            log.debug(
                "peer %s connected from %s",
                self.peer_name,
                self.peername,
                extra=ev("peer_connected", peer=self.peer_name, source=self.peername),
            )
            assert self.peer_name is not None
            d.peer_connected(self.peer_name)

    def _check_certificate(self, role: str) -> None:
        """Under TLS a peer must show a certificate our CA signed (clients need none)."""
        sec = self.security
        tls = sec is not None and sec.server_ssl is not None
        if tls and role == "node" and not peer_has_certificate(self.transport):
            self.dispatcher.count("auth_failed_no_certificate")
            raise FrameError("a node must show a TLS certificate signed by the cluster's CA")

    # --- the handshake with a cluster secret (ring.net.auth) --------------------------------

    def _authenticate(self, data: bytes) -> None:
        """Read the hello, then the proof, from the bytes so far; once the proof verified, the
        rest of them are records. Whatever a connecting side sends, nothing escapes: a hello
        that breaks anything is refused like any other bad hello."""
        try:
            self._authenticate_bytes(data)
        except Exception:
            if not self.closed:
                self._reject(_MALFORMED)

    def _authenticate_bytes(self, data: bytes) -> None:
        buf = self._hs_buf
        buf += data
        while not self.closed:
            try:
                whole, obj = take_frame(buf, HELLO_MAX_BYTES)
            except ValueError as exc:
                self._reject(str(exc))
                return
            if not whole:
                return
            if self._claimed is None:
                self._auth_hello(obj)
                continue
            self._auth_proof(obj)
            if self.session is not None:
                rest = bytes(buf)
                self._hs_buf = bytearray()
                self._handshake = None
                if rest:
                    self.data_received(rest)
            return

    def _auth_hello(self, obj: Any) -> None:
        d = self.dispatcher
        handshake = self._handshake
        assert handshake is not None and self.transport is not None
        try:
            role, name = check_client_hello(obj, d.cluster, d.settings, d.name)
            self._check_certificate(role)
        except Exception as exc:  # FrameError; anything else is a malformed hello too
            self._reject(str(exc) if isinstance(exc, FrameError) else _MALFORMED)
            return
        try:
            answer = handshake.answer(obj, server_hello(d.cluster, d.name))
        except AuthError as exc:
            self._refuse(exc.reason, str(exc))
            return
        self._claimed = (role, name)
        # Written at once, outside the waves: it acknowledges nothing.
        self.transport.write(encode_frame(new_packer(), answer))

    def _auth_proof(self, obj: Any) -> None:
        handshake, claimed = self._handshake, self._claimed
        assert handshake is not None and claimed is not None
        try:
            self.session = handshake.verify(obj)
        except AuthError as exc:
            self._refuse(exc.reason, str(exc))
            return
        if self._hs_timer is not None:
            self._hs_timer.cancel()
            self._hs_timer = None
        self.role, self.peer_name = claimed
        self._hello_done()
        if self.role == "node":
            log.debug(
                "peer %s authenticated from %s",
                self.peer_name,
                self.peername,
                extra=ev("peer_connected", peer=self.peer_name, source=self.peername),
            )
            assert self.peer_name is not None
            self.dispatcher.peer_connected(self.peer_name)

    def _handshake_timeout(self) -> None:
        self._hs_timer = None
        if self.session is None and not self.closed:
            self._refuse("timeout", f"no proof of the cluster secret within {HELLO_TIMEOUT_S:g} s")

    def _reject(self, why: str) -> None:
        """A hello that breaks the protocol (wrong cluster, version, settings): answered and
        closed as ``fail`` does, but at once (nothing else was queued on this connection).
        Logged like a refusal: at most once a minute per address (``RefusalLog``), the message
        bounded (it quotes what the connecting side sent)."""
        self.dispatcher.count("protocol_errors")
        why = why[:HELLO_WHY_MAX]
        source = self._source()
        more = refusal_due(self._refusals(), source)
        if more is not None:
            log.info(
                "closing connection from %s: %s%s",
                self.peername,
                why,
                f" ({more} more refused from {source} since the last such line)" if more else "",
                extra=ev("connection_closed", source=self.peername, why=why, more=more),
            )
        self._close_with(protocol_error(why))

    def _source(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if peer else "?"

    def _refusals(self) -> RefusalLog:
        return self.security.refusals if self.security is not None else _OPEN_REFUSALS

    def _refuse(self, reason: str, why: str, answer: bool = True) -> None:
        """Refuse a connection that did not prove the cluster secret: count it by reason, log
        it (at most once a minute per address), answer ``[None, "auth", why]`` unless the
        record layer broke (nothing more can be said on it), and close."""
        d = self.dispatcher
        d.count("auth_failed")
        d.count(f"auth_failed_{reason}")
        source = self._source()
        more = refusal_due(self._refusals(), source)
        if more is not None:
            who = self._claimed[1] if self._claimed and self._claimed[1] else "client"
            log.warning(
                "refused a connection from %s (%s): %s%s",
                self.peername,
                who,
                why,
                f" ({more} more refused from {source} since the last such line)" if more else "",
                extra=ev("auth_refused", source=self.peername, reason=reason, more=more),
            )
        self._close_with(auth_error(why) if answer else None)

    def _close_with(self, frame: list[Any] | None) -> None:
        transport = self.transport
        if frame is not None and transport is not None and not transport.is_closing():
            transport.write(encode_frame(new_packer(), frame, 1 << 31))
        self.close()  # the transport sends what it buffered before it closes


class PeerLink(FramedConnection):
    """Our outbound connection to one peer; only we write on it (see the module docstring)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        dest: str,
        address: str,
        queue_limit: int,
        on_ready: Callable[[PeerLink], None],
        on_closed: Callable[[PeerLink], None],
    ) -> None:
        super().__init__(dispatcher)
        self.on_ready = on_ready
        self.on_closed = on_closed
        self.dest = dest
        self.address = address
        self.ready = False  # the peer's hello answer arrived and names ``dest``
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.queue_limit = queue_limit
        self.failure: str | None = None
        self._hello_timer: asyncio.TimerHandle | None = None
        self._handshake: ClientHandshake | None = None
        self._hs_buf = bytearray()  # with a secret: the raw bytes of the hello answer so far

    def send(self, frame: bytes) -> bool:
        """Queue a frame; False (and the frame dropped) if the link cannot take it."""
        if self.closed:
            return False
        if self.ready:
            if self.transport is not None and (
                self.transport.get_write_buffer_size() > self.queue_limit
            ):
                return False
            self.queue(frame)
            return True
        if self.pending_bytes + len(frame) > self.queue_limit:
            return False
        self.pending.append(frame)
        self.pending_bytes += len(frame)
        return True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        d = self.dispatcher
        hello = client_hello(d.cluster, role="node", name=d.name, settings=d.settings)
        if self.security is not None and self.security.secrets:
            self._handshake = ClientHandshake(self.security.secrets, hello)
            hello = self._handshake.hello
        assert self.transport is not None
        self.transport.write(encode_frame(new_packer(), hello))
        loop = asyncio.get_running_loop()
        self._hello_timer = loop.call_later(HELLO_TIMEOUT_S, self._hello_timeout)

    def _hello_timeout(self) -> None:
        if not self.ready and not self.closed:
            self.failure = f"no hello answer within {HELLO_TIMEOUT_S:g} s"
            self.close()

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is not None:
            try:
                data = session.opener.feed(data)
            except AuthError as exc:
                self.dispatcher.count("auth_failed")
                self.dispatcher.count(f"auth_failed_{exc.reason}")
                self.failure = f"authentication failed: {exc}"
                self.close()
                return
            if not data:
                return
        elif self._handshake is not None:
            self._answer_received(data)
            return
        try:
            frames = self.decoder.feed(data)
        except FrameError as exc:
            self.failure = str(exc)
            self.close()
            return
        for obj in frames:
            if not self.ready:
                self._on_hello(obj)
            elif isinstance(obj, list) and len(obj) == 3 and obj[0] is None:
                log.warning(
                    "peer %s reported: %s %s",
                    self.dest,
                    obj[1],
                    obj[2],
                    extra=ev("peer_reported", peer=self.dest, error=str(obj[1])),
                )
            if self.closed:
                return

    def _answer_received(self, data: bytes) -> None:
        """With a secret, before the session: the hello answer, read raw so that nothing sent
        after it can pass as the peer's (take_hello_answer refuses it)."""
        if self.closed or self.ready:
            return
        self._hs_buf += data
        try:
            whole, obj = take_hello_answer(self._hs_buf)
        except AuthenticationFailed as exc:
            self.dispatcher.count("auth_failed")
            self.dispatcher.count("auth_failed_peer_tampered")
            self.failure = str(exc)
            self.close()
            return
        except ProtocolError as exc:
            self.failure = str(exc)
            self.close()
            return
        if whole:
            self._on_hello(obj)

    def _on_hello(self, obj: Any) -> None:
        try:
            name = check_server_hello(obj, self.dispatcher.cluster)
        except Exception as exc:
            self.failure = str(exc)
            self.close()
            return
        if name != self.dest:
            self.failure = f"{self.address} is node {name!r}, not {self.dest!r}"
            self.close()
            return
        if self._handshake is not None:
            try:
                proof, session = self._handshake.finish(obj, f"node {name} at {self.address}")
            except AuthenticationFailed as exc:
                self.dispatcher.count("auth_failed")
                self.dispatcher.count("auth_failed_peer_proof")
                self.failure = str(exc)
                self.close()
                return
            assert self.transport is not None
            self.transport.write(encode_frame(new_packer(), proof))
            self.session = session
        self.ready = True
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        for frame in pending:
            self.queue(frame)
        self.on_ready(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.failure is None and not self.ready:
            self.failure = str(exc)
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        super().connection_lost(exc)
        self.on_closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
