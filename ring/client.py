"""The synchronous cluster client: ``ring.connect("host:port,host:port")``.

It has the embedded store's methods (``get``, ``get_versioned``, ``put``, ``delete``, ``scan``,
``close``, a context manager), each taking ``r=`` / ``w=`` where it applies, plus ``status()``
and ``ring_info()``, the multi-key ``get_many``, ``put_many`` and
``delete_many``, and the two ops a cluster-wide save and load use: ``records()`` (a page of
the connected node's own stored records or hints) and ``absorb()`` (merge a whole stored record
into its key's replicas). Plain blocking sockets, one request at a time per client (a lock makes a
client safe to share between threads) — except for the multi-key methods, which pipeline: up to
a window of requests in flight on the one connection, sent and read at once. Use ``ring.aio``
for many requests in flight otherwise.

Failover: any node coordinates any request, so when the connected node cannot be reached — a
refused or broken connection, a timeout, or a node that says it is shutting down — the client
moves to the next listed address and sends the request there. A quorum error is an answer, not
a failure of the node: it is raised, never retried. A request that fails over may therefore run
twice; a retried ``put`` without a context can leave a sibling holding the same value.
"""

from __future__ import annotations

import selectors
import socket
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

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

_RECV_BYTES = 256 * 1024
RECORDS_PAGE_BYTES = 1024 * 1024  # what one ``records`` page holds by default (a node caps 4 MiB)


class NodeUnavailable(Exception):
    """Internal: this node cannot serve (it said so); try the next one."""


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = getattr(exc, "strerror", None) or str(exc)
    return text or type(exc).__name__


class Client:
    """A connection to a ringkv cluster through any of ``addresses``."""

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
        self.node: str | None = None  # the name of the node we are connected to
        self._index = 0
        self._sock: socket.socket | None = None
        self._decoder = FrameDecoder(max_frame_bytes)
        self._frames: deque[Any] = deque()
        self._packer = new_packer()
        self._next_id = 0
        self._lock = threading.Lock()
        self._closed = False

    # --- connection ----------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.addresses[self._index % len(self.addresses)]

    def _open(self) -> None:
        host, port = parse_address(self.address)
        sock = socket.create_connection((host, port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self._decoder = FrameDecoder(self.max_frame_bytes)
            self._frames.clear()
            sock.sendall(encode_frame(self._packer, client_hello(self.cluster)))
            self.node = check_server_hello(self._read(), self.cluster)
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        self.node = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _read(self) -> Any:
        assert self._sock is not None
        while not self._frames:
            data = self._sock.recv(_RECV_BYTES)
            if not data:
                raise ConnectionResetError("the node closed the connection")
            try:
                self._frames.extend(self._decoder.feed(data))
            except FrameError as exc:
                raise ProtocolError(f"bad frame from {self.address}: {exc}") from None
        return self._frames.popleft()

    def connect(self) -> Client:
        """Connect now (otherwise the first request does); raises Unavailable."""
        self._call(None, None)
        return self

    # --- requests ------------------------------------------------------------------------

    def _call(self, op: str | None, args: dict[str, Any] | None) -> Any:
        with self._lock:
            if self._closed:
                raise StoreClosed("the client is closed; connect again with ring.connect()")
            errors: list[str] = []
            for _ in range(len(self.addresses)):
                address = self.address
                try:
                    if self._sock is None:
                        self._open()
                    return None if op is None else self._roundtrip(op, args or {})
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

    def _roundtrip(self, op: str, args: dict[str, Any]) -> Any:
        assert self._sock is not None
        self._next_id += 1
        req_id = self._next_id
        self._sock.sendall(encode_frame(self._packer, [req_id, op, args], self.max_frame_bytes))
        while True:
            frame = self._read()
            if not isinstance(frame, list) or len(frame) != 3:
                raise ProtocolError(f"unexpected frame from {self.address}: {str(frame)[:100]}")
            if frame[0] is None:
                raise ProtocolError(f"{self.address} closed the connection: {frame[2]}")
            if frame[0] != req_id:
                continue  # the answer to a request abandoned by an earlier timeout
            _, error, result = frame
            if error is None:
                return result
            if error == "unavailable":
                raise NodeUnavailable(str(result))
            raise error_of(error, result)

    def _many(self, call: ops.ManyCall) -> list[Any]:
        """One outcome per request of ``call`` (its result, or the exception a single call would
        raise), pipelined: see :meth:`_pipeline`. Failover as in :meth:`_call`: when the node
        fails, the requests it has not answered go to the next address; those no node answered
        get ``Unavailable``, and after a ``ProtocolError`` the unanswered ones get it. Raises
        (nothing sent) only when no node could be reached at all, or the client is closed."""
        outcomes: list[Any] = [None] * len(call.args)
        if not outcomes:
            return outcomes
        with self._lock:
            if self._closed:
                raise StoreClosed("the client is closed; connect again with ring.connect()")
            window = Window(call.sizes)
            errors: list[str] = []
            sent = False
            for _ in range(len(self.addresses)):
                address = self.address
                try:
                    if self._sock is None:
                        self._open()
                    sent = True
                    self._pipeline(call, window, outcomes)
                    return outcomes
                except (OSError, NodeUnavailable) as exc:
                    errors.append(f"{address} ({describe(exc)})")
                except ProtocolError as exc:
                    self._drop()
                    if not sent:
                        raise
                    for i in window.queue:
                        outcomes[i] = exc
                    return outcomes
                except BaseException:
                    self._drop()  # a frame may be half sent: this connection is unusable
                    raise
                self._drop()
                self._index += 1
            failed = Unavailable(
                f"no ringkv node could serve the request; tried {', '.join(errors)}. "
                "Check that ringd is running there, or list more nodes."
            )
            if not sent:
                raise failed
            for i in window.queue:
                outcomes[i] = failed
            return outcomes

    def _pipeline(self, call: ops.ManyCall, window: Window, outcomes: list[Any]) -> None:
        """Send the requests ``window`` admits and read their replies at once, until every one
        is answered. Sending and reading wait on the socket together: a node stops reading
        while too many replies wait for us, and a blocking send would then never return. Raises
        OSError (a timeout: no progress for ``timeout`` seconds) or NodeUnavailable with the
        requests in flight put back into ``window`` for the next node."""
        sock = self._sock
        assert sock is not None
        waiting: dict[int, int] = {}  # request id -> index of the request in ``call``
        out = bytearray()
        selector = selectors.DefaultSelector()
        events = selectors.EVENT_READ
        selector.register(sock, events)
        sock.setblocking(False)  # a send takes what fits, never waiting; the selector waits
        try:
            while not window.idle:
                for i in window.admit():
                    self._next_id += 1
                    waiting[self._next_id] = i
                    frame = [self._next_id, call.op, call.args[i]]
                    out += encode_frame(self._packer, frame, self.max_frame_bytes)
                if not self._frames:
                    want = selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0)
                    if want != events:
                        events = want
                        selector.modify(sock, events)
                    ready = selector.select(self.timeout)
                    if not ready:
                        raise TimeoutError("no answer within the timeout")
                    mask = ready[0][1]
                    if mask & selectors.EVENT_WRITE:
                        try:
                            del out[: sock.send(out)]
                        except BlockingIOError:
                            pass
                    if mask & selectors.EVENT_READ:
                        self._receive()
                while self._frames:
                    req_id, error, result = self._reply(self._frames.popleft())
                    i = waiting.pop(req_id, -1)
                    if i < 0:
                        continue  # the answer to a request abandoned by an earlier timeout
                    if error == "unavailable":
                        waiting[req_id] = i
                        raise NodeUnavailable(str(result))
                    window.release(i)
                    outcomes[i] = result if error is None else error_of(error, result)
        except BaseException:
            window.retry(waiting.values())
            raise
        finally:
            selector.close()
            sock.settimeout(self.timeout)

    def _receive(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(_RECV_BYTES)
        except BlockingIOError:
            return  # a readiness the selector saw that was gone by now
        if not data:
            raise ConnectionResetError("the node closed the connection")
        try:
            self._frames.extend(self._decoder.feed(data))
        except FrameError as exc:
            raise ProtocolError(f"bad frame from {self.address}: {exc}") from None

    def _reply(self, frame: Any) -> tuple[Any, Any, Any]:
        """A reply frame ``[req_id, error, result]``, checked."""
        if not isinstance(frame, list) or len(frame) != 3:
            raise ProtocolError(f"unexpected frame from {self.address}: {str(frame)[:100]}")
        if frame[0] is None:
            raise ProtocolError(f"{self.address} closed the connection: {frame[2]}")
        return frame[0], frame[1], frame[2]

    def get(self, key: Any, r: int | None = None) -> bytes | None:
        """The value of ``key`` (the resolver's choice among siblings), or ``None``."""
        return ops.value_of(self._call("get", ops.get_args(key, r)))

    def get_versioned(self, key: Any, r: int | None = None) -> Versioned:
        return ops.versioned_of(self._call("getv", ops.get_args(key, r)))

    def put(self, key: Any, value: Any, context: Any = None, w: int | None = None) -> None:
        if value is None:
            raise InvalidInput("value must be bytes or str, not None (use delete)")
        self._call("put", ops.write_args(key, value, context, w))

    def delete(self, key: Any, context: Any = None, w: int | None = None) -> None:
        self._call("del", ops.write_args(key, None, context, w))

    def get_many(self, keys: Iterable[Any], r: int | None = None) -> list[bytes | None]:
        """The values of ``keys`` in the order given (None for a missing key, as ``get``), read
        with up to 128 requests in flight (each a quorum read with ``r``).

        Every key is checked before anything is sent (``InvalidInput``). Every key is read;
        if any failed, :class:`ring.MultiKeyError` names each with its error (``.values`` holds
        what was read). ``Unavailable`` when no node can be reached at all."""
        call = ops.get_many_call(keys, r)
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
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()

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
) -> Client:
    """Connect to a ringkv cluster through any of ``addresses`` (``"host:port,host:port"``).

    Raises ``ring.Unavailable`` (listing the addresses tried) when no node can be reached.
    """
    return Client(addresses, cluster=cluster, timeout=timeout).connect()
