"""The asyncio cluster client: ``client = await ring.aio.connect("host:port,host:port")``.

The async twin of :mod:`ring.client`: the same methods as coroutines (``scan`` is an async
generator), the same errors, the same failover across the listed nodes. Many requests may be in
flight on one connection: replies carry the request id and may come in any order. The protocol
object works by callbacks; a future per request exists only at the API edge, and all frames
written in one loop iteration go out in a single ``transport.write``.

With ``smart`` (the default) each keyed request goes to a replica of its key over a connection
kept to that member, as in :mod:`ring.client` (``ring.net.routing``); a table check runs as a
task beside the requests (only the first fetch is waited for), and a member's connection is
opened once, by the first request that needs it; the others wait for it, and go the plain way
when it cannot be opened.

``get_many``, ``put_many`` and ``delete_many`` put a window of requests (128, about 8 MiB) on
the connections at once, a future each without a task, and hand a request whose node failed to
``_call`` for failover; see :mod:`ring.multikey` for the rules they share with ``ring.connect``.

``secret=``, ``tls_ca=`` and ``ssl_context=`` are those of ``ring.connect`` (the cluster secret's
handshake and MACed records, TLS), with the same process defaults (``ring.client.set_defaults``).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, cast

from ring.client import (
    RECORDS_PAGE_BYTES,
    TLS_HINT,
    NodeUnavailable,
    absorb_args,
    describe,
    records_args,
    records_of,
    security_of,
)
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

__all__ = ["AsyncClient", "connect"]

CLOSE_WAIT_S = 1.0  # close() waits at most this long for its connections to close


class _Connection(asyncio.Protocol):
    def __init__(
        self,
        cluster: str,
        max_frame_bytes: int,
        address: str = "",
        security: ClientSecurity | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.cluster = cluster
        self.security = security
        self.handshake: ClientHandshake | None = None
        self.session: Session | None = None  # the record layer, with a secret
        self._hs_buf = bytearray()  # with a secret: the raw bytes of the hello answer so far
        self.decoder = FrameDecoder(max_frame_bytes)
        self.max_frame_bytes = max_frame_bytes
        self.packer = new_packer()
        self.transport: asyncio.Transport | None = None
        self.hello: asyncio.Future[str] = self.loop.create_future()
        self.waiters: dict[int, asyncio.Future[tuple[Any, Any]]] = {}
        self.out: list[bytes] = []
        self.closed = False
        self.lost: asyncio.Future[None] = self.loop.create_future()  # the transport is closed
        self.address = address  # where it was opened
        self._next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        hello = client_hello(self.cluster)
        sec = self.security
        if sec is not None and sec.secrets:
            self.handshake = ClientHandshake(sec.secrets, hello)
            hello = self.handshake.hello
        self.transport.write(encode_frame(self.packer, hello))

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            try:
                data = self.session.opener.feed(data)
            except AuthError as exc:
                self._fail(
                    AuthenticationFailed(
                        f"authentication failed: {self.address} sent a record that failed its "
                        f"MAC ({exc})"
                    )
                )
                return
            if not data:
                return
        elif self.handshake is not None:
            self._answer_received(data)
            return
        try:
            frames = self.decoder.feed(data)
        except FrameError as exc:
            self._fail(ProtocolError(f"bad frame from the node: {exc}"))
            return
        for frame in frames:
            if not self.hello.done():
                try:
                    self.hello.set_result(self._greeted(frame))
                except ProtocolError as exc:
                    self._fail(exc)
                    return
            elif isinstance(frame, list) and len(frame) == 3 and frame[0] is not None:
                waiter = self.waiters.pop(frame[0], None)
                if waiter is not None and not waiter.done():
                    waiter.set_result((frame[1], frame[2]))
            else:
                why = frame[2] if isinstance(frame, list) and len(frame) == 3 else str(frame)[:100]
                self._fail(ProtocolError(f"the node closed the connection: {why}"))
                return

    def _answer_received(self, data: bytes) -> None:
        """With a secret, before the session: the hello answer, read raw so that nothing sent
        after it can pass as a reply (take_hello_answer refuses it)."""
        if self.closed or self.hello.done():
            return
        self._hs_buf += data
        try:
            whole, frame = take_hello_answer(self._hs_buf)
            if whole:
                self.hello.set_result(self._greeted(frame))
        except ProtocolError as exc:
            self._fail(exc)

    def _greeted(self, frame: Any) -> str:
        """The node's name from its hello answer; with a secret, once it proved it and we
        answered with our proof (nothing else is sent before)."""
        name = check_server_hello(frame, self.cluster)
        if self.handshake is not None:
            proof, self.session = self.handshake.finish(frame, f"node {name} at {self.address}")
            assert self.transport is not None
            self.transport.write(encode_frame(self.packer, proof))
        return name

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if exc is None and not self.hello.done():
            tls = self.security is not None and self.security.ssl is not None
            exc = ConnectionResetError(
                "the node closed the connection during the hello" if tls else TLS_HINT
            )
        self._fail(exc or ConnectionResetError("the node closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        self.closed = True
        if not self.hello.done():
            self.hello.set_exception(exc)
            self.hello.exception()  # retrieved here so an unawaited failure is not logged
        waiters, self.waiters = self.waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def request(self, op: str, args: dict[str, Any], timeout: float | None) -> asyncio.Future[Any]:
        self._next_id += 1
        req_id = self._next_id
        frame = encode_frame(self.packer, [req_id, op, args], self.max_frame_bytes)
        waiter: asyncio.Future[tuple[Any, Any]] = self.loop.create_future()
        if self.closed:
            waiter.set_exception(ConnectionResetError("the connection to the node is closed"))
            return waiter
        self.waiters[req_id] = waiter
        if not self.out:
            self.loop.call_soon(self._flush)
        self.out.append(frame)
        if timeout is not None:
            timer = self.loop.call_later(timeout, self._expire, req_id)
            waiter.add_done_callback(lambda _: timer.cancel())
        return waiter

    def _expire(self, req_id: int) -> None:
        waiter = self.waiters.pop(req_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    def _flush(self) -> None:
        out, self.out = self.out, []
        if out and self.transport is not None and not self.closed:
            data = b"".join(out)
            if self.session is not None:
                data = self.session.sealer.seal(data)
            self.transport.write(data)

    def close(self) -> None:
        self._fail(ConnectionAbortedError("the client closed the connection"))


class AsyncClient:
    """A connection to a ringkv cluster through any of ``addresses``; see :mod:`ring.aio`."""

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
        self._conn: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._closed = False
        self._routes = Routes()
        self._links: dict[str, _Connection] = {}  # member name -> routed connection
        self._opening: dict[str, asyncio.Task[_Connection | None]] = {}
        self._checking: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return self.addresses[self._index % len(self.addresses)]

    @property
    def node(self) -> str | None:
        conn = self._conn
        if conn is None or conn.closed or not conn.hello.done() or conn.hello.exception():
            return None
        return conn.hello.result()

    async def _open(self) -> _Connection:
        try:
            conn = await self._dial(self.address, self.timeout)
        except (OSError, TimeoutError):
            self._index += 1
            raise
        finally:
            self._connecting = None
        self._conn = conn
        self._routes.answered(conn.hello.result(), conn.address)
        return conn

    async def _dial(self, address: str, timeout: float | None) -> _Connection:
        """A connection to ``address`` that the node greeted."""
        host, port = parse_address(address)
        loop = asyncio.get_running_loop()
        sec = self.security
        tls = sec.ssl if sec is not None else None

        def protocol() -> _Connection:
            return _Connection(self.cluster, self.max_frame_bytes, address, sec)

        _, conn = await asyncio.wait_for(
            loop.create_connection(protocol, host, port)
            if tls is None
            else loop.create_connection(protocol, host, port, ssl=tls, server_hostname=host),
            timeout,
        )
        try:
            await asyncio.wait_for(asyncio.shield(conn.hello), timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    # --- routing (ring.net.routing) ------------------------------------------------------

    def _routed(self, key: bytes) -> _Connection | None:
        """The open connection to the member a request for ``key`` goes to, if there is one
        now; else None (the plain way), after starting what makes one: a check of the table
        when due, a connection to the member."""
        routes, now = self._routes, time.monotonic()
        if routes.due(now) and self._checking is None:
            routes.checked(now)
            self._checking = asyncio.get_running_loop().create_task(self._check_table())
        plain = self._conn
        connected = self.node
        name = routes.target(key, now, connected)
        if name is None:
            return None
        if name == connected:
            return plain
        conn = self._links.get(name)
        if conn is not None and not conn.closed:
            return conn
        if name not in self._opening and len(self._links) < MAX_LINKS:
            task = asyncio.get_running_loop().create_task(self._link(name))
            self._opening[name] = task
        return None

    async def _route(self, key: bytes) -> _Connection | None:
        """:meth:`_routed`, waiting for the table (the first time) and the connection."""
        conn = self._routed(key)
        if conn is not None:
            return conn
        if self._checking is not None:
            await asyncio.shield(self._checking)
            conn = self._routed(key)
        name = self._routes.target(key, time.monotonic(), self.node)
        task = self._opening.get(name) if name is not None else None
        if conn is None and task is not None:
            conn = await asyncio.shield(task)
        return conn

    async def _check_table(self) -> None:
        try:
            self._routes.update(await self._call("ring", self._routes.request_args()))
        except (RingError, OSError, TimeoutError):
            pass  # the plain way it is, until the next check
        finally:
            self._checking = None

    async def _link(self, name: str) -> _Connection | None:
        address = self._routes.address_of(name)
        try:
            if address is None:
                return None
            timeout = CONNECT_TIMEOUT_S
            if self.timeout is not None:
                timeout = min(timeout, self.timeout)
            conn = await self._dial(address, timeout)
            if conn.hello.result() != name or self._closed:
                conn.close()
                raise ConnectionRefusedError(f"{address} is not {name}")
            self._links[name] = conn
            self._routes.reached(name)
            return conn
        except (OSError, TimeoutError, RingError):
            self._routes.unreachable(name, time.monotonic())
            return None
        finally:
            self._opening.pop(name, None)

    def _lost(self, conn: _Connection) -> None:
        """A routed connection failed: close it and pass its member over for a while."""
        name = conn.hello.result() if conn.hello.done() and not conn.hello.exception() else None
        if conn is self._conn:
            self._discard(conn)
        else:
            conn.close()
        if name is not None:
            if self._links.get(name) is conn:
                del self._links[name]
            self._routes.unreachable(name, time.monotonic())

    async def _keyed(self, op: str, args: dict[str, Any]) -> Any:
        """One request for ``args["key"]``: to a replica of it when smart, else (or when that
        fails) the plain way."""
        if self.smart and not self._closed:
            conn = self._routed(args["key"]) or await self._route(args["key"])
            if conn is not None:
                try:
                    error, result = await conn.request(op, args, self.timeout)
                    if error is None:
                        return result
                    if error != "unavailable":
                        raise error_of(error, result)
                    self._lost(conn)
                except (OSError, TimeoutError):
                    self._lost(conn)  # the plain way serves it (and may forward)
                except ProtocolError:
                    self._lost(conn)
                    raise
        return await self._call(op, args)

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._open())
        return await asyncio.shield(self._connecting)

    def _discard(self, conn: _Connection | None) -> None:
        if conn is not None and conn is self._conn:
            self._conn = None
            conn.close()
            self._index += 1

    async def _call(self, op: str | None, args: dict[str, Any] | None) -> Any:
        errors: list[str] = []
        for _ in range(len(self.addresses)):
            if self._closed:
                raise StoreClosed("the client is closed; connect again with ring.aio.connect()")
            address, conn = self.address, None
            try:
                conn = await self._connection()
                if op is None:
                    return None
                error, result = await conn.request(op, args or {}, self.timeout)
                if error is None:
                    return result
                if error == "unavailable":
                    raise NodeUnavailable(str(result))
                raise error_of(error, result)
            except (OSError, TimeoutError, NodeUnavailable) as exc:
                errors.append(f"{address} ({describe(exc)})")
                self._discard(conn)
            except ProtocolError:
                self._discard(conn)
                raise
        raise Unavailable(
            f"no ringkv node could serve the request; tried {', '.join(errors)}. "
            "Check that ringd is running there, or list more nodes."
        )

    async def _many(self, call: ops.ManyCall) -> list[Any]:
        """One outcome per request of ``call``: its result, or the exception a single call
        would raise. At most a window of requests is in flight, sent straight on the
        connection (a future each, no task); a request whose node fails (the connection, a
        timeout, "unavailable") is retried through ``_call``, which fails over as a single
        request does. Raises (nothing sent) only when no node can be reached at all, or the
        client is closed; cancelling the call cancels what it still waits for."""
        outcomes: list[Any] = [None] * len(call.args)
        if not outcomes:
            return outcomes
        await self._call(None, None)  # connected, or Unavailable before anything is sent
        if self.smart:
            await self._prepare(call.args)
        loop = asyncio.get_running_loop()
        window = Window(call.sizes)
        finished: asyncio.Future[None] = loop.create_future()
        waiting: set[asyncio.Future[Any]] = set()

        def start() -> None:
            plain = self._conn
            for i in window.admit():
                conn = self._routed(call.args[i]["key"]) if self.smart else None
                conn = conn or plain
                if conn is None or conn.closed:
                    fut: asyncio.Future[Any] = loop.create_task(self._call(call.op, call.args[i]))
                    fut.add_done_callback(functools.partial(retried, i))
                else:
                    fut = conn.request(call.op, call.args[i], self.timeout)
                    fut.add_done_callback(functools.partial(answered, i, conn))
                waiting.add(fut)

        def answered(i: int, conn: _Connection, fut: asyncio.Future[tuple[Any, Any]]) -> None:
            waiting.discard(fut)
            if finished.done():
                return
            exc = None if fut.cancelled() else fut.exception()
            if exc is None and not fut.cancelled():
                error, result = fut.result()
                if error != "unavailable":
                    settle(i, result if error is None else error_of(error, result))
                    return
            elif isinstance(exc, ProtocolError):
                self._lost(conn)
                settle(i, exc)
                return
            # The node failed this request: the plain way gets it, as ``_call`` would send it.
            self._lost(conn)
            task = loop.create_task(self._call(call.op, call.args[i]))
            task.add_done_callback(functools.partial(retried, i))
            waiting.add(task)

        def retried(i: int, task: asyncio.Future[Any]) -> None:
            waiting.discard(task)
            if finished.done():
                return
            if task.cancelled():
                finished.cancel()
                return
            exc = task.exception()
            if exc is not None and not isinstance(exc, Exception):
                finished.set_exception(exc)  # KeyboardInterrupt and the like: not a key's error
                return
            settle(i, exc if exc is not None else task.result())

        def settle(i: int, outcome: Any) -> None:
            outcomes[i] = outcome
            window.release(i)
            if window.idle:
                finished.set_result(None)
            else:
                start()

        start()
        try:
            await finished
        finally:
            for fut in waiting:
                fut.cancel()
        return outcomes

    async def _prepare(self, args: list[dict[str, Any]]) -> None:
        """Before a multi-key call: the table fetched or checked when due, and the connections
        to the members the keys go to opened (what cannot be reached goes the plain way)."""
        for a in args:
            self._routed(a["key"])
        if self._checking is not None:
            await asyncio.shield(self._checking)
            for a in args:
                self._routed(a["key"])
        if self._opening:
            await asyncio.gather(*[asyncio.shield(t) for t in list(self._opening.values())])

    async def connect(self) -> AsyncClient:
        await self._call(None, None)
        return self

    async def get(self, key: Any, r: int | None = None) -> bytes | None:
        return ops.value_of(await self._keyed("get", ops.get_args(key, r)))

    async def get_versioned(self, key: Any, r: int | None = None) -> Versioned:
        return ops.versioned_of(await self._keyed("getv", ops.get_args(key, r)))

    async def put(self, key: Any, value: Any, context: Any = None, w: int | None = None) -> None:
        if value is None:
            raise InvalidInput("value must be bytes or str, not None (use delete)")
        await self._keyed("put", ops.write_args(key, value, context, w))

    async def delete(self, key: Any, context: Any = None, w: int | None = None) -> None:
        await self._keyed("del", ops.write_args(key, None, context, w))

    async def get_many(self, keys: Iterable[Any], r: int | None = None) -> list[bytes | None]:
        """``ring.Client.get_many``: the values of ``keys`` in order, up to 128 reads in
        flight; failed keys reported together in ``ring.MultiKeyError``."""
        call = ops.get_many_call(keys, r)
        return call.finish(await self._many(call))  # type: ignore[no-any-return]

    async def get_versioned_many(
        self, keys: Iterable[Any], r: int | None = None
    ) -> list[Versioned]:
        """``ring.Client.get_versioned_many``: ``get_versioned`` of each key, in order, up to
        128 reads in flight; failed keys reported together in ``ring.MultiKeyError``."""
        call = ops.get_versioned_many_call(keys, r)
        return call.finish(await self._many(call))  # type: ignore[no-any-return]

    async def put_many(
        self, items: Iterable[tuple[Any, Any]] | Mapping[Any, Any], w: int | None = None
    ) -> None:
        """``ring.Client.put_many``: every pair written (not atomically), up to 128 in flight;
        failed keys reported together in ``ring.MultiKeyError``."""
        call = ops.put_many_call(items, w)
        call.finish(await self._many(call))

    async def delete_many(self, keys: Iterable[Any], w: int | None = None) -> None:
        """``ring.Client.delete_many``: as ``put_many``, deleting."""
        call = ops.delete_many_call(keys, w)
        call.finish(await self._many(call))

    async def scan(
        self,
        prefix: Any = None,
        start: Any = None,
        stop: Any = None,
        reverse: bool = False,
        limit: int | None = None,
        page: int = ops.DEFAULT_PAGE,
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        cursor = ops.ScanCursor(prefix, start, stop, reverse, limit, page)
        while not cursor.done:
            try:
                result = await self._call("scan", cursor.next_args())
            except ReplyTooLarge:
                if cursor.shrink():
                    continue
                raise
            for item in cursor.feed(result):
                yield item

    async def records(
        self,
        after: bytes | None = None,
        max_bytes: int = RECORDS_PAGE_BYTES,
        hints: bool = False,
    ) -> dict[str, Any]:
        """``ring.Client.records``: one page of the connected node's own records (or hints)."""
        address = self.address
        return records_of(
            await self._call("records", records_args(after, max_bytes, hints)), address
        )

    async def absorb(self, key: Any, record: bytes, w: int | None = None) -> None:
        """``ring.Client.absorb``: merge a whole stored record into the key's replicas."""
        await self._call("absorb", absorb_args(key, record, w))

    async def status(self) -> dict[str, Any]:
        result = await self._call("status", {})
        if not isinstance(result, dict):
            raise ProtocolError("a status answer is a map")
        return result

    async def ring_info(self) -> dict[str, Any]:
        result = await self._call("ring", {})
        if not isinstance(result, dict):
            raise ProtocolError("a ring answer is a map")
        return result

    async def leave(self, name: str) -> dict[str, Any]:
        """``ring.Client.leave``: hand off every partition of ``name``, then take it out."""
        return await self._change("leave", name)

    async def remove(self, name: str) -> dict[str, Any]:
        """``ring.Client.remove``: take a member that is gone for good out of the cluster."""
        return await self._change("remove", name)

    async def _change(self, op: str, name: str) -> dict[str, Any]:
        result = await self._call(op, {"name": name})
        if not isinstance(result, dict):
            raise ProtocolError(f"a {op} answer is a map")
        return result

    @property
    def route_epoch(self) -> int | None:
        """The epoch of the ownership table keyed requests are routed by; None while there is
        none (``smart=False``, not fetched yet, or no node gave one): the plain way."""
        return self._routes.epoch if self.smart else None

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        conn, self._conn = self._conn, None
        closing = [conn, *self._links.values()] if conn is not None else [*self._links.values()]
        for task in [*self._opening.values(), self._checking]:
            if task is not None:
                task.cancel()
        self._links.clear()
        for link in closing:
            link.close()
        # Let the transports finish closing (a TLS one says goodbye first), so none is left
        # open when the caller's loop ends right after this.
        lost = [c.lost for c in closing if c.transport is not None and not c.lost.done()]
        if lost:
            await asyncio.wait(lost, timeout=CLOSE_WAIT_S)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"via {self.node or 'no node yet'}"
        return f"<ring.aio.AsyncClient {','.join(self.addresses)} {state}>"


async def connect(
    addresses: str | list[str] | tuple[str, ...],
    cluster: str = DEFAULT_CLUSTER,
    timeout: float | None = ops.DEFAULT_TIMEOUT_S,
    smart: bool = True,
    *,
    secret: str | bytes | None = None,
    tls_ca: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncClient:
    """Connect to a ringkv cluster; raises ``ring.Unavailable`` when no node can be reached.
    ``smart``: as ``ring.connect`` (each keyed request straight to a replica of its key);
    ``secret``, ``tls_ca``, ``ssl_context``: as ``ring.connect`` (``AuthenticationFailed``
    when a node does not know the secret)."""
    client = AsyncClient(
        addresses,
        cluster=cluster,
        timeout=timeout,
        smart=smart,
        secret=secret,
        tls_ca=tls_ca,
        ssl_context=ssl_context,
    )
    return await client.connect()
