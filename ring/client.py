"""The synchronous cluster client: ``ring.connect("host:port,host:port")``.

It has the embedded store's methods (``get``, ``get_versioned``, ``put``, ``delete``, ``scan``,
``close``, a context manager), each taking ``r=`` / ``w=`` where it applies, plus ``status()``
and ``ring_info()``, the multi-key ``get_many``, ``put_many`` and
``delete_many``, and the two ops a cluster-wide save and load use: ``records()`` (a page of
the connected node's own stored records or hints) and ``absorb()`` (merge a whole stored record
into its key's replicas). Plain blocking sockets, one request at a time per client (a lock makes a
client safe to share between threads) — except for the multi-key methods, which pipeline: up to
a window of requests in flight on the client's connections, sent and read at once. Use
``ring.aio`` for many requests in flight otherwise.

Smart routing (``smart=True``, the default; ``ring.net.routing``): a keyed request — ``get``,
``get_versioned``, ``put``, ``delete``, each key of the multi-key methods — goes to the first
live owner of its key's partition, over a connection the client keeps to that member, so the
connected node does not forward it. Everything else, and every request whose owner cannot be
reached, goes the plain way below: a smart client serves every request a plain one would.

Failover (the plain way): any node coordinates any request, so when the connected node cannot
be reached — a
refused or broken connection, a timeout, or a node that says it is shutting down — the client
moves to the next listed address and sends the request there. A quorum error is an answer, not
a failure of the node: it is raised, never retried. A request that fails over may therefore run
twice; a retried ``put`` without a context can leave a sibling holding the same value.

Security (``ring.net.auth``): with ``secret=`` every connection proves the cluster secret at its
hello, checks the node's proof before it sends anything else, and MACs every frame both ways;
a node without the secret, or with another, fails with ``AuthenticationFailed`` (a
``ring.ProtocolError`` whose message says "authentication failed"), raised at once, never
failed over. With ``tls_ca=`` (or ``ssl_context=``) connections are TLS and the node's
certificate must be signed by that CA and name the host connected to. ``set_defaults`` sets
both for every client the process opens without its own (``ringctl --secret-file``).
"""

from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ring.common import Versioned
from ring.errors import (
    AuthenticationFailed,
    InvalidInput,
    ProtocolError,
    RingError,
    StoreClosed,
    Unavailable,
)
from ring.multikey import Window
from ring.net import clientops as ops
from ring.net.auth import (
    AuthError,
    ClientHandshake,
    ClientSecurity,
    Session,
    take_hello_answer,
)
from ring.net.codec import (
    DEFAULT_CLUSTER,
    MAX_FRAME_BYTES,
    FrameDecoder,
    FrameError,
    ReplyTooLarge,
    check_server_hello,
    client_hello,
    encode_frame,
    error_of,
    new_packer,
    parse_address,
    parse_addresses,
)
from ring.net.routing import CONNECT_TIMEOUT_S, MAX_LINKS, Routes

_RECV_BYTES = 256 * 1024
RECORDS_PAGE_BYTES = 1024 * 1024  # what one ``records`` page holds by default (a node caps 4 MiB)
# What a non-blocking socket raises when it cannot go on now (TLS ones their own kinds).
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
TLS_HINT = (
    "the node closed the connection during the hello (a node with TLS closes plain "
    "connections: connect with tls_ca=..., or ringctl --tls-ca)"
)

_defaults: ClientSecurity | None = None


def set_defaults(
    secret: str | bytes | None = None,
    tls_ca: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """The secret and TLS that clients opened later in this process use when they are given
    none of their own (``ring.connect`` and ``ring.aio.connect``); all None: plain again.
    For programs that open clients in many places, as ``ringctl`` does for ``--secret-file``
    and ``--tls-ca``."""
    global _defaults
    _defaults = ClientSecurity.of(secret, tls_ca, ssl_context)


def security_of(
    secret: str | bytes | None, tls_ca: str | None, ssl_context: ssl.SSLContext | None
) -> ClientSecurity | None:
    """What a client connects with: its own arguments, else the process defaults."""
    return ClientSecurity.of(secret, tls_ca, ssl_context) or _defaults


class NodeUnavailable(Exception):
    """Internal: this node cannot serve (it said so); try the next one."""


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = getattr(exc, "strerror", None) or str(exc)
    return text or type(exc).__name__


class Link:
    """One connection to one node: its socket, frame decoder and the frames read but not taken."""

    def __init__(
        self,
        address: str,
        cluster: str,
        max_frame_bytes: int,
        security: ClientSecurity | None = None,
    ) -> None:
        self.address = address
        self.cluster = cluster
        self.max_frame_bytes = max_frame_bytes
        self.security = security
        self.session: Session | None = None  # the record layer, with a secret
        self.node: str | None = None  # the name the node gave in its hello
        self.sock: socket.socket | None = None
        self.decoder = FrameDecoder(max_frame_bytes)
        self.frames: deque[Any] = deque()
        self.out = bytearray()  # frames a pipeline has not sent yet
        self.waiting: dict[int, int] = {}  # a pipeline's request ids -> their request index

    def open(self, packer: Any, timeout: float | None) -> None:
        host, port = parse_address(self.address)
        sock = socket.create_connection((host, port), timeout=timeout)
        sec = self.security
        try:
            self.sock = sock
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if sec is not None and sec.ssl is not None:
                self.sock = sock = sec.ssl.wrap_socket(sock, server_hostname=host)
            self.decoder = FrameDecoder(self.max_frame_bytes)
            self.frames.clear()
            self.session = None
            hello = client_hello(self.cluster)
            handshake = ClientHandshake(sec.secrets, hello) if sec and sec.secrets else None
            if handshake is not None:
                hello = handshake.hello
            sock.sendall(encode_frame(packer, hello))
            try:
                answer = self.read() if handshake is None else self._read_answer()
            except ConnectionResetError as exc:
                if sec is None or sec.ssl is None:
                    raise ConnectionResetError(TLS_HINT) from exc
                raise
            self.node = check_server_hello(answer, self.cluster)
            if handshake is not None:
                proof, session = handshake.finish(answer, f"node {self.node} at {self.address}")
                sock.sendall(encode_frame(packer, proof))
                self.session = session
        except BaseException:
            self.close()
            raise

    def _read_answer(self) -> Any:
        """With a secret: the hello answer read raw, not through the frame decoder, so that
        nothing sent after it can pass as a reply (take_hello_answer refuses it)."""
        assert self.sock is not None
        buf = bytearray()
        while True:
            data = self.sock.recv(_RECV_BYTES)
            if not data:
                raise ConnectionResetError("the node closed the connection")
            buf += data
            whole, answer = take_hello_answer(buf)
            if whole:
                return answer

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self.node = None
        self.session = None
        self.out.clear()
        self.waiting.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def read(self) -> Any:
        assert self.sock is not None
        while not self.frames:
            data = self.sock.recv(_RECV_BYTES)
            if not data:
                raise ConnectionResetError("the node closed the connection")
            self.feed(data)
        return self.frames.popleft()

    def receive(self) -> None:
        """Read what a non-blocking socket has."""
        sock = self.sock
        assert sock is not None
        try:
            data = sock.recv(_RECV_BYTES)
        except _WOULD_BLOCK:
            return  # a readiness the selector saw that was gone by now (or half a TLS record)
        if not data:
            raise ConnectionResetError("the node closed the connection")
        self.feed(data)
        # TLS may hold more decrypted bytes than one recv returned: the selector cannot see them.
        while isinstance(sock, ssl.SSLSocket) and self.sock is sock and sock.pending():
            try:
                data = sock.recv(_RECV_BYTES)
            except _WOULD_BLOCK:
                return
            if not data:
                raise ConnectionResetError("the node closed the connection")
            self.feed(data)

    def seal(self, frame: bytes) -> bytes:
        """``frame`` as it goes on the wire: in a MACed record after a secret handshake."""
        return frame if self.session is None else self.session.sealer.seal(frame)

    def feed(self, data: bytes) -> None:
        if self.session is not None:
            try:
                data = self.session.opener.feed(data)
            except AuthError as exc:
                raise AuthenticationFailed(
                    f"authentication failed: {self.address} sent a record that failed its "
                    f"MAC ({exc})"
                ) from None
            if not data:
                return
        try:
            self.frames.extend(self.decoder.feed(data))
        except FrameError as exc:
            raise ProtocolError(f"bad frame from {self.address}: {exc}") from None

    def reply(self, frame: Any) -> tuple[Any, Any, Any]:
        """A reply frame ``[req_id, error, result]``, checked."""
        if not isinstance(frame, list) or len(frame) != 3:
            raise ProtocolError(f"unexpected frame from {self.address}: {str(frame)[:100]}")
        if frame[0] is None:
            raise ProtocolError(f"{self.address} closed the connection: {frame[2]}")
        return frame[0], frame[1], frame[2]


class Client:
    """A connection to a ringkv cluster through any of ``addresses``; with ``smart`` (the
    default) also a connection to each member it sends requests to (``ring.net.routing``)."""

    def __init__(
        self,
        addresses: str | list[str] | tuple[str, ...],
        *,
        cluster: str = DEFAULT_CLUSTER,
        timeout: float | None = ops.DEFAULT_TIMEOUT_S,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        smart: bool = True,
        secret: str | bytes | None = None,
        tls_ca: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.addresses = parse_addresses(addresses)
        self.cluster = cluster
        self.timeout = ops.check_timeout(timeout)
        self.max_frame_bytes = max_frame_bytes
        self.smart = bool(smart)
        self.security = security_of(secret, tls_ca, ssl_context)
        self._index = 0
        self._link = self._new_link(self.addresses[0])  # the plain way
        self._links: dict[str, Link] = {}  # member name -> routed connection
        self._routes = Routes()
        self._packer = new_packer()
        self._next_id = 0
        self._lock = threading.Lock()
        self._closed = False
        self._why = ""  # why the last pipeline's connection failed

    # --- connection ----------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.addresses[self._index % len(self.addresses)]

    @property
    def node(self) -> str | None:
        """The name of the node requests go to the plain way (None: not connected)."""
        return self._link.node

    def _new_link(self, address: str) -> Link:
        return Link(address, self.cluster, self.max_frame_bytes, self.security)

    def _open(self) -> None:
        link = self._link = self._new_link(self.address)
        link.open(self._packer, self.timeout)
        if link.node is not None:
            self._routes.answered(link.node, link.address)

    def _drop(self) -> None:
        self._link.close()

    def connect(self) -> Client:
        """Connect now (otherwise the first request does); raises Unavailable."""
        self._call(None, None)
        return self

    # --- routing -------------------------------------------------------------------------

    def _route(self, key: bytes) -> Link | None:
        """The open connection to the member a request for ``key`` goes to, or None for the
        plain way. Fetches or checks the table when due; never raises for a node's failure."""
        routes, now = self._routes, time.monotonic()
        if routes.due(now):
            routes.checked(now)
            try:
                routes.update(self._plain("ring", routes.request_args()))
            except (RingError, OSError):
                pass  # the plain way it is, until the next check
        name = routes.target(key, now, self._link.node)
        if name is None:
            return None
        if name == self._link.node:
            return self._link
        link = self._links.get(name)
        if link is not None and link.sock is not None:
            return link
        address = routes.address_of(name)
        if address is None or (link is None and len(self._links) >= MAX_LINKS):
            return None
        link = self._links[name] = self._new_link(address)
        timeout = (
            CONNECT_TIMEOUT_S if self.timeout is None else min(self.timeout, CONNECT_TIMEOUT_S)
        )
        try:
            link.open(self._packer, timeout)
            if link.node != name:
                raise ConnectionRefusedError(f"{address} answered as {link.node}, not {name}")
        except (OSError, RingError):
            self._unreachable(link, name)
            return None
        assert link.sock is not None
        link.sock.settimeout(self.timeout)
        routes.reached(name)
        return link

    def _unreachable(self, link: Link, name: str | None = None) -> None:
        """A routed connection failed: close it, pass its member over for a while."""
        name = name or link.node
        link.close()
        if link is self._link:
            self._index += 1  # the plain way moves on, as after any failure
        if name is not None:
            self._routes.unreachable(name, time.monotonic())

    # --- requests ------------------------------------------------------------------------

    def _call(self, op: str | None, args: dict[str, Any] | None, key: bytes | None = None) -> Any:
        """Send one request: with ``key`` (and ``smart``) to a replica of it, else, or when
        that fails, the plain way."""
        with self._lock:
            if self._closed:
                raise StoreClosed("the client is closed; connect again with ring.connect()")
            if key is not None and self.smart and op is not None:
                link = self._route(key)
                if link is not None:
                    try:
                        return self._roundtrip(link, op, args or {})
                    except (OSError, NodeUnavailable):
                        self._unreachable(link)  # the plain way serves it (and may forward)
                    except ProtocolError:
                        self._unreachable(link)
                        raise
            return self._plain(op, args)

    def _plain(self, op: str | None, args: dict[str, Any] | None) -> Any:
        """Send one request to the connected node, failing over to the next listed one."""
        errors: list[str] = []
        for _ in range(len(self.addresses)):
            address = self.address
            try:
                if self._link.sock is None:
                    self._open()
                return None if op is None else self._roundtrip(self._link, op, args or {})
            except (OSError, NodeUnavailable) as exc:
                errors.append(f"{address} ({describe(exc)})")
            except ProtocolError:
                self._drop()
                raise
            self._drop()
            self._index += 1
        raise Unavailable(
            f"no ringkv node could serve the request; tried {', '.join(errors)}. "
            "Check that ringd is running there, or list more nodes."
        )

    def _roundtrip(self, link: Link, op: str, args: dict[str, Any]) -> Any:
        assert link.sock is not None
        self._next_id += 1
        req_id = self._next_id
        frame = encode_frame(self._packer, [req_id, op, args], self.max_frame_bytes)
        link.sock.sendall(link.seal(frame))
        while True:
            got, error, result = link.reply(link.read())
            if got != req_id:
                continue  # the answer to a request abandoned by an earlier timeout
            if error is None:
                return result
            if error == "unavailable":
                raise NodeUnavailable(str(result))
            raise error_of(error, result)

    def _many(self, call: ops.ManyCall) -> list[Any]:
        """One outcome per request of ``call`` (its result, or the exception a single call would
        raise), pipelined: see :meth:`_pipeline`. With ``smart``, each request goes to a replica
        of its key, all members' connections at once; those whose member failed them, and
        those that have no member to go to, go the plain way after. The plain way fails over as
        :meth:`_call` does: when the node fails, the requests it has not answered go to the next
        address; those no node answered get ``Unavailable``, and after a ``ProtocolError`` the
        unanswered ones get it. Raises (nothing sent) only when no node could be reached at all,
        or the client is closed."""
        outcomes: list[Any] = [None] * len(call.args)
        if not outcomes:
            return outcomes
        with self._lock:
            if self._closed:
                raise StoreClosed("the client is closed; connect again with ring.connect()")
            rest = list(range(len(outcomes)))
            if self.smart:
                routed: dict[int, Link] = {}
                for i in rest:
                    link = self._route(call.args[i]["key"])
                    if link is not None:
                        routed[i] = link
                rest = [i for i in rest if i not in routed]
                if routed:
                    rest += self._pipeline(call, list(routed), routed, outcomes)
                    rest.sort()
            if rest:
                self._plain_many(call, rest, outcomes)
            return outcomes

    def _plain_many(self, call: ops.ManyCall, order: list[int], outcomes: list[Any]) -> None:
        errors: list[str] = []
        sent = False
        for _ in range(len(self.addresses)):
            address = self.address
            try:
                if self._link.sock is None:
                    self._open()
            except OSError as exc:
                errors.append(f"{address} ({describe(exc)})")
                self._index += 1
                continue
            except ProtocolError as exc:
                if not sent:
                    raise
                for i in order:
                    outcomes[i] = exc
                return
            sent = True
            link = self._link
            order = self._pipeline(call, order, dict.fromkeys(order, link), outcomes)
            if not order:
                return
            errors.append(f"{address} ({self._why})")  # the link was dropped, the index moved
        failed = Unavailable(
            f"no ringkv node could serve the request; tried {', '.join(errors)}. "
            "Check that ringd is running there, or list more nodes."
        )
        if not sent:
            raise failed
        for i in order:
            outcomes[i] = failed

    def _pipeline(
        self, call: ops.ManyCall, order: list[int], link_of: dict[int, Link], outcomes: list[Any]
    ) -> list[int]:
        """Send the requests ``order`` (indices into ``call``), each on its connection in
        ``link_of``, a window at a time, and read their replies at once; returns the requests
        whose connection failed before they were answered (in ``self._why``: why), in order.
        Sending and reading wait on the sockets together: a node stops reading while too many
        replies wait for us, and a blocking send would then never return. A connection that
        fails — refused or broken, "unavailable", no progress for ``timeout`` — is closed and
        its member passed over; after a ``ProtocolError`` its unanswered requests get that
        error."""
        window = Window([call.sizes[i] for i in order])
        failed: list[int] = []
        links = list(dict.fromkeys(link_of[i] for i in order))
        live: set[Link] = set(links)
        selector = selectors.DefaultSelector()
        for link in links:
            assert link.sock is not None
            link.out.clear()
            link.waiting.clear()
            selector.register(link.sock, selectors.EVENT_READ, link)
            link.sock.setblocking(False)  # a send takes what fits; the selector waits
        events = dict.fromkeys(links, selectors.EVENT_READ)

        def lose(link: Link, exc: BaseException) -> None:
            self._why = describe(exc)
            lost = sorted(link.waiting.values())
            for j in lost:
                window.release(j)
            if isinstance(exc, ProtocolError):
                for j in lost:
                    outcomes[order[j]] = exc
            else:
                failed.extend(order[j] for j in lost)
            live.discard(link)
            selector.unregister(link.sock)  # type: ignore[arg-type]
            self._unreachable(link)

        try:
            while not window.idle:
                for j in window.admit():
                    link = link_of[order[j]]
                    if link not in live:
                        window.release(j)
                        failed.append(order[j])
                        continue
                    self._next_id += 1
                    link.waiting[self._next_id] = j
                    frame = [self._next_id, call.op, call.args[order[j]]]
                    link.out += link.seal(encode_frame(self._packer, frame, self.max_frame_bytes))
                if not any(link.frames for link in live):
                    for link in live:
                        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if link.out else 0)
                        if want != events[link]:
                            events[link] = want
                            selector.modify(link.sock, want, link)  # type: ignore[arg-type]
                    ready = selector.select(self.timeout) if live else []
                    if not ready:
                        for link in [x for x in links if x in live and x.waiting]:
                            lose(link, TimeoutError("no answer within the timeout"))
                        continue
                    for key, mask in ready:
                        link = key.data
                        sock = link.sock
                        assert sock is not None
                        try:
                            if mask & selectors.EVENT_WRITE:
                                try:
                                    del link.out[: sock.send(link.out)]
                                except _WOULD_BLOCK:
                                    pass
                            if mask & selectors.EVENT_READ:
                                link.receive()
                        except (OSError, ProtocolError) as exc:
                            lose(link, exc)
                for link in [x for x in links if x in live and x.frames]:
                    try:
                        while link.frames:
                            req_id, error, result = link.reply(link.frames.popleft())
                            j = link.waiting.pop(req_id, -1)
                            if j < 0:
                                continue  # the answer to a request abandoned by a timeout
                            if error == "unavailable":
                                link.waiting[req_id] = j
                                raise NodeUnavailable(str(result))
                            window.release(j)
                            outcomes[order[j]] = (
                                result if error is None else error_of(error, result)
                            )
                    except (NodeUnavailable, ProtocolError) as exc:
                        lose(link, exc)
        except BaseException:
            for link in live:
                link.close()  # a frame may be half sent: these connections are unusable
            raise
        finally:
            selector.close()
            for link in live:
                link.out.clear()
                link.waiting.clear()
                if link.sock is not None:
                    link.sock.settimeout(self.timeout)
        return sorted(failed)

    def get(self, key: Any, r: int | None = None) -> bytes | None:
        """The value of ``key`` (the resolver's choice among siblings), or ``None``."""
        args = ops.get_args(key, r)
        return ops.value_of(self._call("get", args, args["key"]))

    def get_versioned(self, key: Any, r: int | None = None) -> Versioned:
        args = ops.get_args(key, r)
        return ops.versioned_of(self._call("getv", args, args["key"]))

    def put(self, key: Any, value: Any, context: Any = None, w: int | None = None) -> None:
        if value is None:
            raise InvalidInput("value must be bytes or str, not None (use delete)")
        args = ops.write_args(key, value, context, w)
        self._call("put", args, args["key"])

    def delete(self, key: Any, context: Any = None, w: int | None = None) -> None:
        args = ops.write_args(key, None, context, w)
        self._call("del", args, args["key"])

    def get_many(self, keys: Iterable[Any], r: int | None = None) -> list[bytes | None]:
        """The values of ``keys`` in the order given (None for a missing key, as ``get``), read
        with up to 128 requests in flight (each a quorum read with ``r``).

        Every key is checked before anything is sent (``InvalidInput``). Every key is read;
        if any failed, :class:`ring.MultiKeyError` names each with its error (``.values`` holds
        what was read). ``Unavailable`` when no node can be reached at all."""
        call = ops.get_many_call(keys, r)
        return call.finish(self._many(call))  # type: ignore[no-any-return]

    def get_versioned_many(self, keys: Iterable[Any], r: int | None = None) -> list[Versioned]:
        """``get_versioned`` of each of ``keys``, in the order given, pipelined and reported
        as :meth:`get_many` (``.values`` of a ``MultiKeyError`` holds the ``Versioned`` read)."""
        call = ops.get_versioned_many_call(keys, r)
        return call.finish(self._many(call))  # type: ignore[no-any-return]

    def put_many(
        self, items: Iterable[tuple[Any, Any]] | Mapping[Any, Any], w: int | None = None
    ) -> None:
        """Store ``(key, value)`` pairs (or a mapping), each as ``put(key, value, w=w)``, with
        up to 128 requests in flight; for a key given twice the last value wins. Not atomic:
        every pair is checked before anything is sent (``InvalidInput``), every key is
        written, and if any failed :class:`ring.MultiKeyError` names each with its error (the
        others are stored; a failed one may be stored on fewer than ``w`` replicas, as after a
        failed ``put``)."""
        call = ops.put_many_call(items, w)
        call.finish(self._many(call))

    def delete_many(self, keys: Iterable[Any], w: int | None = None) -> None:
        """Delete ``keys``, each as ``delete(key, w=w)``, with up to 128 requests in flight;
        errors as :meth:`put_many`."""
        call = ops.delete_many_call(keys, w)
        call.finish(self._many(call))

    def scan(
        self,
        prefix: Any = None,
        start: Any = None,
        stop: Any = None,
        reverse: bool = False,
        limit: int | None = None,
        page: int = ops.DEFAULT_PAGE,
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` pairs in key order, fetched ``page`` at a time."""
        cursor = ops.ScanCursor(prefix, start, stop, reverse, limit, page)
        while not cursor.done:
            try:
                result = self._call("scan", cursor.next_args())
            except ReplyTooLarge:
                if cursor.shrink():
                    continue
                raise
            yield from cursor.feed(result)

    def records(
        self,
        after: bytes | None = None,
        max_bytes: int = RECORDS_PAGE_BYTES,
        hints: bool = False,
    ) -> dict[str, Any]:
        """One page of the stored records of the node this client is connected to (not a
        cluster-wide read: give the client that one node's address only, or a failover would
        mix two nodes' pages). Without ``hints``: the records of the partitions it owns, in key
        order after the cursor ``after``; with ``hints``: the hints it keeps for other nodes.
        Returns ``{"items": [key, record, ...], "after": cursor, "done": bool, "epoch": int,
        "partitions": [...]}`` (``partitions``: the partitions the node owns at ``epoch``);
        pass ``after`` back for the next page until ``done``."""
        return records_of(
            self._call("records", records_args(after, max_bytes, hints)), self.address
        )

    def absorb(self, key: Any, record: bytes, w: int | None = None) -> None:
        """Merge a whole stored record (as a dump holds it: clocks, siblings, tombstones) into
        the key's replicas with ``reconcile``, replicated as a put is (W acknowledgements,
        hints for replicas that are down). Loading the same record twice changes nothing."""
        self._call("absorb", absorb_args(key, record, w))

    def status(self) -> dict[str, Any]:
        """The contacted node's view: ``{"node", "members": [...], "counters": {...}}``."""
        result = self._call("status", {})
        if not isinstance(result, dict):
            raise ProtocolError("a status answer is a map")
        return result

    def ring_info(self) -> dict[str, Any]:
        """Partitions, N, members, and primary/replica partition counts per node."""
        result = self._call("ring", {})
        if not isinstance(result, dict):
            raise ProtocolError("a ring answer is a map")
        return result

    def locate(self, key: bytes | str) -> dict[str, Any]:
        """Where ``key`` lives: ``{"partition", "owners", "pending", "epoch"}`` (``owners`` answer
        its reads; ``pending`` is the list it moves to while its partition is transferred)."""
        result = self._call("locate", {"key": ops.key_of(key)})
        if not isinstance(result, dict):
            raise ProtocolError("a locate answer is a map")
        return result

    def leave(self, name: str) -> dict[str, Any]:
        """Ask the cluster to take member ``name`` out for good after it handed off every
        partition it holds (its ``ringd`` then exits 0). Returns what will move once the change
        was accepted; ``InvalidInput`` for a name that is not a member."""
        return self._change("leave", name)

    def remove(self, name: str) -> dict[str, Any]:
        """Take a member that is gone for good out of the cluster: its partitions are rebuilt on
        their new owners from the surviving replicas. ``InvalidInput`` for a name that is not a
        member, or one that is still alive (use ``leave``)."""
        return self._change("remove", name)

    def _change(self, op: str, name: str) -> dict[str, Any]:
        result = self._call(op, {"name": name})
        if not isinstance(result, dict):
            raise ProtocolError(f"a {op} answer is a map")
        return result

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def route_epoch(self) -> int | None:
        """The epoch of the ownership table keyed requests are routed by; None while there is
        none (``smart=False``, not fetched yet, or no node gave one): the plain way."""
        return self._routes.epoch if self.smart else None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()
            for link in self._links.values():
                link.close()
            self._links.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"via {self.node or 'no node yet'}"
        return f"<ring.Client {','.join(self.addresses)} {state}>"


def records_args(after: bytes | None, max_bytes: int, hints: bool) -> dict[str, Any]:
    if after is not None and not isinstance(after, bytes):
        raise InvalidInput("records: after is the bytes cursor of the previous page, or None")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise InvalidInput(f"records: max_bytes must be a positive integer, not {max_bytes!r}")
    return {"after": after, "max_bytes": max_bytes, "hints": bool(hints)}


def records_of(result: Any, address: str) -> dict[str, Any]:
    """A ``records`` answer, checked: every item a byte string, keys and records alternating."""
    if not isinstance(result, dict):
        raise ProtocolError(f"a records answer from {address} is a map")
    items, after = result.get("items"), result.get("after")
    epoch, parts = result.get("epoch"), result.get("partitions")
    if (
        not isinstance(items, list)
        or len(items) % 2
        or not all(isinstance(x, bytes) for x in items)
        or (after is not None and not isinstance(after, bytes))
        or not isinstance(result.get("done"), bool)
        or not isinstance(epoch, int)
        or not isinstance(parts, list)
        or not all(isinstance(p, int) for p in parts)
    ):
        raise ProtocolError(f"a records answer from {address} is malformed")
    return result


def absorb_args(key: Any, record: bytes, w: int | None) -> dict[str, Any]:
    args = ops.get_args(key, None)
    if not isinstance(record, bytes | bytearray | memoryview):
        raise InvalidInput("absorb takes a stored record (bytes, as a dump holds it)")
    args["record"] = bytes(record)
    if w is not None:
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise InvalidInput(f"w must be a positive integer, not {w!r}")
        args["w"] = w
    return args


def connect(
    addresses: str | list[str] | tuple[str, ...],
    cluster: str = DEFAULT_CLUSTER,
    timeout: float | None = ops.DEFAULT_TIMEOUT_S,
    smart: bool = True,
    *,
    secret: str | bytes | None = None,
    tls_ca: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Client:
    """Connect to a ringkv cluster through any of ``addresses`` (``"host:port,host:port"``).

    With ``smart`` (the default) each keyed request goes straight to a replica of its key, by
    the ownership table the client fetches from the cluster (``ring.net.routing``): no
    forwarding hop on a cluster of more than N nodes. ``smart=False`` sends every request to
    the connected node, which forwards it. Raises ``ring.Unavailable`` (listing the addresses
    tried) when no node can be reached.

    ``secret`` (str or bytes; surrounding whitespace is stripped, as from ringd's
    ``--secret-file``): the cluster secret, proved at every connection's hello (see the module
    docstring); a node that does not know it, or refuses ours, raises ``AuthenticationFailed``
    ("authentication failed", a ``ring.ProtocolError``). ``tls_ca``: the PEM CA file that signed
    the nodes' certificates (TLS; the certificate must name the host in the address), or
    ``ssl_context`` for a context of your own.
    """
    return Client(
        addresses,
        cluster=cluster,
        timeout=timeout,
        smart=smart,
        secret=secret,
        tls_ca=tls_ca,
        ssl_context=ssl_context,
    ).connect()
