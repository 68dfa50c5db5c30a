"""Hellos built to hurt a node with a cluster secret (a real ``ringd`` on 127.0.0.1, JSON logs).

What users rely on: an unauthenticated connecting side cannot flood the node's log (each refusal
line is bounded and they are rate-limited per address), nor break it with a hello nested too
deeply to print or larger than any real hello: each is answered ``[None, "protocol", why]``,
counted and closed, the log stays JSON without tracebacks, and the node keeps serving.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from ring.net.codec import FrameDecoder
from tests.integration.harness import wait_until
from tests.security.secure import SecureCluster, secret_file

SECRET = b"0f3c9a1e7b5d2c8a4f6e1b3d5c7a9e2f"


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def packed(obj: Any) -> bytes:
    return frame(msgpack.packb(obj, use_bin_type=True))


def nested(depth: int) -> bytes:
    """{"hello": [[[...1]]], "cluster": "ringkv", "role": "client"} as raw msgpack."""
    return b"\x83\xa5hello" + b"\x91" * depth + b"\x01\xa7cluster\xa6ringkv\xa4role\xa6client"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    root = tmp_path_factory.mktemp("abuse")
    path = secret_file(root / "secret", SECRET)
    cluster = SecureCluster(
        root, secret=SECRET, extra=["--secret-file", path, "--log-format", "json"]
    )
    try:
        cluster.start("a")
        yield cluster
    finally:
        cluster.close()


def answer(address: str, data: bytes) -> Any:
    """Send ``data`` on a new connection; the node's one answer frame (then it closes)."""
    host, port = address.rsplit(":", 1)
    decoder = FrameDecoder()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        frames: list[Any] = []
        while not frames:
            chunk = sock.recv(65536)
            assert chunk, "closed without an answer"
            frames = decoder.feed(chunk)
        assert sock.recv(65536) == b"", "the node should close the connection"
    return frames[0]


def test_abusive_hellos_are_answered_counted_and_logged_sparingly(node: SecureCluster) -> None:
    address = node.addresses["a"]
    log_path = node.root / "a.log"
    before = log_path.stat().st_size
    errors_before = node.counters("a").get("protocol_errors", 0)
    hellos = {
        "huge": packed({"hello": 4, "cluster": "A" * 60000, "role": "client"}),
        "long cluster": packed({"hello": 4, "cluster": "A" * 3000, "role": "client"}),
        "nested": frame(nested(1000)),
        "nested cluster": frame(
            b"\x83\xa5hello\x04\xa7cluster" + b"\x91" * 1000 + b"\x01\xa4role\xa6client"
        ),
    }
    sent = 0
    for what, data in hellos.items():
        for _ in range(10):
            refused = answer(address, data + packed({"nonce": os.urandom(32)}))
            sent += 1
            assert refused[:2] == [None, "protocol"], what
            assert len(refused[2]) <= 300, what
    wait_until(
        lambda: node.counters("a").get("protocol_errors", 0) == errors_before + sent,
        10,
        "every refused hello to be counted",
    )
    with node.client() as client:  # still serving
        client.put("k", "v")
        assert client.get("k") == b"v"
    text = Path(log_path).read_bytes()[before:].decode()
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines:
        json.loads(line)  # JSON still: no traceback from the transport
    assert "Traceback" not in text and "Fatal error" not in text
    refusals = [line for line in lines if "closing connection" in line]
    assert 1 <= len(refusals) <= 2, refusals  # one line per address per minute
    assert len(text) < 4000, f"{sent} refused hellos grew the log by {len(text)} bytes"
