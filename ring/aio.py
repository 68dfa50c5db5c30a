"""The asyncio cluster client: ``client = await ring.aio.connect("host:port,host:port")``.

The async twin of :mod:`ring.client`: the same methods as coroutines (``scan`` is an async
generator), the same errors, the same failover across the listed nodes. Many requests may be in
flight on one connection: replies carry the request id and may come in any order. The protocol
object works by callbacks; a future per request exists only at the API edge, and all frames
written in one loop iteration go out in a single ``transport.write``.

``get_many``, ``put_many`` and ``delete_many`` put a window of requests (128, about 8 MiB) on
the connection at once, a future each without a task, and hand a request whose node failed to
``_call`` for failover; see :mod:`ring.multikey` for the rules they share with ``ring.connect``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, cast

from ring.client import (
    RECORDS_PAGE_BYTES,
    NodeUnavailable,
    absorb_args,
    describe,
    records_args,
    records_of,
)
from ring.common import Versioned
from ring.errors import InvalidInput, ProtocolError, StoreClosed, Unavailable
from ring.multikey import Window
from ring.net import clientops as ops
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

__all__ = ["AsyncClient", "connect"]


class _Connection(asyncio.Protocol):
    def __init__(self, cluster: str, max_frame_bytes: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.cluster = cluster
        self.decoder = FrameDecoder(max_frame_bytes)
        self.max_frame_bytes = max_frame_bytes
        self.packer = new_packer()
        self.transport: asyncio.Transport | None = None
        self.hello: asyncio.Future[str] = self.loop.create_future()
        self.waiters: dict[int, asyncio.Future[tuple[Any, Any]]] = {}
        self.out: list[bytes] = []
        self.closed = False
        self._next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(encode_frame(self.packer, client_hello(self.cluster)))

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except FrameError as exc:
            self._fail(ProtocolError(f"bad frame from the node: {exc}"))
            return
        for frame in frames:
            if not self.hello.done():
                try:
                    self.hello.set_result(check_server_hello(frame, self.cluster))
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

    def connection_lost(self, exc: Exception | None) -> None:
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
            self.transport.write(b"".join(out))

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
    ) -> None:
        self.addresses = parse_addresses(addresses)
        self.cluster = cluster
        self.timeout = ops.check_timeout(timeout)
        self.max_frame_bytes = max_frame_bytes
        self._index = 0
        self._conn: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._closed = False

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
        host, port = parse_address(self.address)
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self.cluster, self.max_frame_bytes), host, port
                ),
                self.timeout,
            )
            try:
                await asyncio.wait_for(asyncio.shield(conn.hello), self.timeout)
            except BaseException:
                conn.close()
                raise
        except (OSError, TimeoutError):
            self._index += 1
            raise
        finally:
            self._connecting = None
        self._conn = conn
        return conn

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
        loop = asyncio.get_running_loop()
        window = Window(call.sizes)
        finished: asyncio.Future[None] = loop.create_future()
        waiting: set[asyncio.Future[Any]] = set()

        def start() -> None:
            conn = self._conn
            for i in window.admit():
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
                self._discard(conn)
                settle(i, exc)
                return
            # The node failed this request: the next node gets it, as ``_call`` would send it.
            self._discard(conn)
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

    async def connect(self) -> AsyncClient:
        await self._call(None, None)
        return self

    async def get(self, key: Any, r: int | None = None) -> bytes | None:
        return ops.value_of(await self._call("get", ops.get_args(key, r)))

    async def get_versioned(self, key: Any, r: int | None = None) -> Versioned:
        return ops.versioned_of(await self._call("getv", ops.get_args(key, r)))

    async def put(self, key: Any, value: Any, context: Any = None, w: int | None = None) -> None:
        if value is None:
            raise InvalidInput("value must be bytes or str, not None (use delete)")
        await self._call("put", ops.write_args(key, value, context, w))

    async def delete(self, key: Any, context: Any = None, w: int | None = None) -> None:
        await self._call("del", ops.write_args(key, None, context, w))

    async def get_many(self, keys: Iterable[Any], r: int | None = None) -> list[bytes | None]:
        """``ring.Client.get_many``: the values of ``keys`` in order, up to 128 reads in
        flight; failed keys reported together in ``ring.MultiKeyError``."""
        call = ops.get_many_call(keys, r)
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
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

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
) -> AsyncClient:
    """Connect to a ringkv cluster; raises ``ring.Unavailable`` when no node can be reached."""
    return await AsyncClient(addresses, cluster=cluster, timeout=timeout).connect()
