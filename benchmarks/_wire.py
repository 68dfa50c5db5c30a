"""The ringkv client wire format, just enough of it for the benchmark's load generator and echo.

A frame is a 4-byte big-endian body length and one msgpack value (``use_bin_type=True``). A
client opens with ``{"hello": 3, "cluster": ..., "role": "client", "name": None}`` and the
server answers ``{"hello": 3, "cluster": ..., "name": ...}``; then requests are
``[req_id, op, args]`` and replies ``[req_id, error, result]``, many in flight per connection.

Kept separate from ``ring.net.codec`` on purpose: the echo baseline must not share code (or
bugs, or speed-ups) with the system it is the ceiling for, and the load generator must work
against anything that speaks the format.
"""

from __future__ import annotations

import socket
from typing import Any

import msgpack

PROTOCOL_VERSION = 4  # equal to ring.net.codec.PROTOCOL_VERSION (tests/net/test_codec.py checks)
CLUSTER = "ringkv"
_HEADER = 4


def new_packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True)


def frame(packer: msgpack.Packer, obj: Any) -> bytes:
    body: bytes = packer.pack(obj)
    return len(body).to_bytes(_HEADER, "big") + body


def client_hello(cluster: str = CLUSTER) -> dict[str, Any]:
    return {"hello": PROTOCOL_VERSION, "cluster": cluster, "role": "client", "name": None}


def server_hello(name: str, cluster: str = CLUSTER) -> dict[str, Any]:
    return {"hello": PROTOCOL_VERSION, "cluster": cluster, "name": name}


class Frames:
    """Splits a TCP byte stream into decoded msgpack values.

    The common case (a read holding only whole frames) copies nothing: bodies are decoded
    straight from a memoryview of the chunk, and only a trailing partial frame is kept.
    """

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[Any]:
        if self._rest:
            data = self._rest + data
        out: list[Any] = []
        end = len(data)
        pos = 0
        unpackb = msgpack.unpackb
        with memoryview(data) as view:
            while end - pos >= _HEADER:
                start = pos + _HEADER
                stop = start + int.from_bytes(view[pos:start], "big")
                if stop > end:
                    break
                out.append(unpackb(view[start:stop], raw=False))
                pos = stop
        self._rest = data[pos:] if pos < end else b""
        return out


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def call(address: str, op: str, args: dict[str, Any], timeout_s: float = 2.0) -> Any:
    """One blocking request on a fresh connection; returns ``(error, result)``."""
    packer = new_packer()
    frames = Frames()
    with socket.create_connection(parse_address(address), timeout=timeout_s) as sock:
        sock.sendall(frame(packer, client_hello()) + frame(packer, [1, op, args]))
        got: list[Any] = []
        while len(got) < 2:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"{address} closed the connection")
            got += frames.feed(data)
    reply = got[1]
    if not isinstance(reply, list) or len(reply) != 3:
        raise ConnectionError(f"{address} answered {str(reply)[:100]}")
    return reply[1], reply[2]
