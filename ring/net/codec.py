"""The ringkv wire format: length-prefixed msgpack frames, the hello, and error replies.

A TCP stream is a sequence of frames: a 4-byte big-endian body length, then one msgpack value of
exactly that many bytes. Rules this module keeps:

* the length prefix is checked against ``max_frame_bytes`` *before* any of the body is buffered,
  so a peer cannot make us hold more than one maximal frame per connection;
* a body must decode to exactly one msgpack value; anything else raises :class:`FrameError`,
  which the connection answers with ``[None, "protocol", why]`` before closing;
* msgpack is used with ``use_bin_type=True`` / ``raw=False``: bytes stay bytes, str stays str.

A connection opens with a hello. A client or peer sends ``{"hello": 3, "cluster": str,
"role": "client"|"node", "name": str|None}`` (a peer adds ``"settings"``: N and the ring
size, which must equal the node's); the node answers ``{"hello": 3, "cluster": str,
"name": node_name}``. After that a client sends ``[req_id, op, args]`` and receives
``[req_id, error_or_None, result]``; a peer sends ``messages.to_wire(msg)`` lists.

With a cluster secret both hellos also carry a ``"nonce"``, the node's answer its
``"proofs"``, the connecting side then sends its ``{"proof": ..., "key": i}``, and every byte
after that travels in MACed records: see ``ring.net.auth``. A node that refuses a connection
for authentication answers ``[None, "auth", why]``.
"""

from __future__ import annotations

import reprlib
import struct
from typing import Any

import msgpack

from ring.common import settings_mismatch
from ring.errors import (
    AuthenticationFailed,
    CorruptData,
    InvalidInput,
    ProtocolError,
    QuorumError,
    RingError,
    Unavailable,
)

# 2: forwards carry hops and a time budget, scans a byte limit, node hellos the settings.
# 3: replica requests carry the sender's table epoch; ownership tables and handoff pages travel.
PROTOCOL_VERSION = 4
DEFAULT_CLUSTER = "ringkv"
# Must exceed the 16 MiB value limit plus a 64 KiB key plus the envelope.
MAX_FRAME_BYTES = 32 * 1024 * 1024
_HEADER = 4
_MAX_ENCODABLE = (1 << 32) - 1
_pack_length = struct.Struct(">I").pack
_unpack_length = struct.Struct(">I").unpack_from


class FrameError(Exception):
    """A frame that breaks the protocol: too large, not msgpack, or the wrong shape."""


class FrameTooLarge(FrameError):
    """An outgoing value whose encoding exceeds the frame limit."""


class ReplyTooLarge(RingError):
    """The answer would not fit in one frame (a scan page of large values): ask for less."""


def new_packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True)


def unpack(data: bytes | memoryview) -> Any:
    """Decode exactly one msgpack value (a frame body or a datagram); raise FrameError for
    anything else."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types (TypeError for a map key
        # that is a list, ValueError, ExtraData, FormatError, StackError, UnicodeDecodeError)
        raise FrameError(f"not one msgpack value: {str(exc) or type(exc).__name__}") from None


def pack(packer: msgpack.Packer, obj: Any) -> bytes:
    """Encode ``obj`` as one msgpack value (no length prefix), e.g. for a datagram."""
    data: bytes = packer.pack(obj)
    return data


def encode_frame(packer: msgpack.Packer, obj: Any, max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """One frame: length prefix plus body. Raises FrameTooLarge above ``max_bytes``."""
    body: bytes = packer.pack(obj)
    size = len(body)
    if size > max_bytes or size > _MAX_ENCODABLE:
        raise FrameTooLarge(f"frame of {size} bytes exceeds the limit of {max_bytes} bytes")
    return _pack_length(size) + body


class FrameDecoder:
    """Splits a byte stream into decoded frame bodies.

    ``feed`` returns every complete frame in order and keeps the rest buffered. After a
    FrameError the decoder is poisoned: the stream position is lost and the connection must close.
    """

    __slots__ = ("_buf", "_max")

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()  # the start of an incomplete frame, if any
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[Any]:
        buf = self._buf
        if buf:
            buf += data
            data = buf  # type: ignore[assignment]  # bytes-like either way
        out: list[Any] = []
        pos = 0
        end = len(data)
        limit = self._max
        view = memoryview(data)
        try:
            while end - pos >= _HEADER:
                (length,) = _unpack_length(data, pos)
                if length > limit:
                    raise FrameError(f"frame length {length} exceeds the limit of {limit} bytes")
                if length == 0:
                    raise FrameError("empty frame")
                start = pos + _HEADER
                if end - start < length:
                    break
                try:
                    out.append(unpack(view[start : start + length]))
                except FrameError as exc:
                    raise FrameError(f"frame is {exc}") from None
                pos = start + length
        finally:
            view.release()
        # Keep only the incomplete tail; whole chunks (the common case) are never copied.
        if data is buf:
            del buf[:pos]
        elif pos < end:
            self._buf = bytearray(data[pos:])
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)


# --- hello -----------------------------------------------------------------------------------


def client_hello(
    cluster: str,
    role: str = "client",
    name: str | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A client's or a peer's hello; a peer also sends the settings every member shares."""
    hello: dict[str, Any] = {"hello": PROTOCOL_VERSION, "cluster": cluster, "role": role}
    hello["name"] = name
    if settings is not None:
        hello["settings"] = settings
    return hello


def server_hello(cluster: str, name: str) -> dict[str, Any]:
    return {"hello": PROTOCOL_VERSION, "cluster": cluster, "name": name}


_brief = reprlib.Repr()  # keyword arguments only from Python 3.12
_brief.maxlevel, _brief.maxstring, _brief.maxother = 2, 48, 48
_brief.maxlist = _brief.maxdict = _brief.maxtuple = 4


def _shown(value: Any) -> str:
    """``repr`` of a value a connecting side sent, bounded (at most ~64 characters, however
    long or deeply nested it is): error messages that quote it go to logs."""
    return _brief.repr(value)[:64]


def check_client_hello(
    obj: Any, cluster: str, settings: dict[str, Any] | None = None, us: str = "this node"
) -> tuple[str, str | None]:
    """Validate a hello sent to a node; return ``(role, name)`` or raise FrameError. A peer's
    hello must carry ``settings`` equal to ours (N and the ring size: what every member of a
    cluster shares); the error names both values."""
    if not isinstance(obj, dict) or "hello" not in obj:
        raise FrameError(
            f"expected a hello map {{'hello': {PROTOCOL_VERSION}, 'cluster': ..., 'role': ...}} "
            "first"
        )
    if obj["hello"] != PROTOCOL_VERSION:
        raise FrameError(
            f"protocol version {_shown(obj['hello'])} is not supported (this node speaks "
            f"{PROTOCOL_VERSION})"
        )
    if obj.get("cluster") != cluster:
        raise FrameError(
            f"this node belongs to cluster {cluster!r}, not {_shown(obj.get('cluster'))}"
        )
    role = obj.get("role", "client")
    name = obj.get("name")
    if role not in ("client", "node"):
        raise FrameError(f"unknown role {_shown(role)} (use 'client' or 'node')")
    if role == "node" and (not isinstance(name, str) or not name):
        raise FrameError("a node hello must carry the node's name")
    if name is not None and not isinstance(name, str):
        raise FrameError("hello name must be a string or nil")
    if role == "node" and settings is not None:
        theirs = obj.get("settings")
        if not isinstance(theirs, dict):
            raise FrameError("a node hello must carry the cluster settings")
        why = settings_mismatch(settings, theirs, us, str(name))
        if why:
            raise FrameError(f"refused node {_shown(name)}: {why[:200]}")
    return role, name


def check_server_hello(obj: Any, cluster: str) -> str:
    """Validate the node's answer to our hello; return its name or raise ProtocolError
    (``AuthenticationFailed`` when the node refused us for the cluster secret)."""
    if isinstance(obj, list) and len(obj) == 3 and obj[0] is None and obj[1] is not None:
        if obj[1] == "auth":
            raise AuthenticationFailed(f"the node refused the connection: {obj[2]}")
        raise ProtocolError(f"the node refused the connection: {obj[2]}")
    if not isinstance(obj, dict) or obj.get("hello") != PROTOCOL_VERSION:
        raise ProtocolError(f"expected a hello answer, got {str(obj)[:100]}")
    if obj.get("cluster") != cluster:
        raise ProtocolError(f"the node belongs to cluster {obj.get('cluster')!r}, not {cluster!r}")
    name = obj.get("name")
    if not isinstance(name, str):
        raise ProtocolError("the node's hello answer carries no name")
    return name


def protocol_error(why: str) -> list[Any]:
    """The frame sent before closing a connection that broke the protocol."""
    return [None, "protocol", why]


def auth_error(why: str) -> list[Any]:
    """The frame sent before closing a connection refused for the cluster secret."""
    return [None, "auth", why]


# --- replies as exceptions (shared by both clients) ---------------------------------------------


def error_of(error: str, result: Any) -> RingError:
    """The exception a client raises for the reply ``[req_id, error, result]``."""
    message = result.get("message") if isinstance(result, dict) else result
    text = str(message) if message is not None else error
    if error == "quorum" or (error == "timeout" and isinstance(result, dict)):
        replied = result.get("replied", 0) if isinstance(result, dict) else 0
        needed = result.get("needed", 0) if isinstance(result, dict) else 0
        return QuorumError(text, replied=int(replied or 0), needed=int(needed or 0))
    if error == "invalid":
        return InvalidInput(text)
    if error in ("unavailable", "timeout"):
        return Unavailable(text)
    if error == "protocol":
        return ProtocolError(text)
    if error == "too_large":
        return ReplyTooLarge(text)
    if error == "corrupt":
        return CorruptData(text)
    return RingError(f"{error}: {text}" if text != error else text)


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (``"[v6]:port"`` too) to ``(host, port)``; raises InvalidInput."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise InvalidInput(f"address {address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_addresses(addresses: str | list[str] | tuple[str, ...]) -> list[str]:
    """A comma-separated string or a list of ``host:port`` to a list of addresses."""
    items = addresses.split(",") if isinstance(addresses, str) else list(addresses)
    out = [a.strip() for a in items if a and a.strip()]
    if not out:
        raise InvalidInput("no node address given (expected host:port[,host:port...])")
    for a in out:
        parse_address(a)
    return out
