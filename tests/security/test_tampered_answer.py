"""A man in the middle who does not know the cluster secret appends bytes to the node's hello
answer (real uvloop sockets on 127.0.0.1: a relay in front of a node runtime with a fake core).

What users rely on: nothing a connecting side reads before the session is keyed can pass as a
reply. ``ring.connect`` (smart or not), ``ring.aio.connect`` and a node's link to a peer refuse
the connection (AuthenticationFailed; the link fails and counts it) instead of returning forged
frames, whether the forgery is whole frames or a partial one left waiting in a buffer.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import pytest

import ring
import ring.aio
from ring.net.auth import AuthenticationFailed, Security
from tests.net.fakecore import start_node, uvloop_test, wait_for

SECRET = b"a-long-cluster-secret-for-tests"


def frame(obj: Any) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


FORGED = b"".join(frame([i, None, b"FORGED"]) for i in range(1, 4))
TAILS = {
    "forged frames": FORGED,
    "a partial frame": FORGED[:-3],
}


async def relay(target: str, tail: bytes) -> tuple[str, Callable[[], Awaitable[None]]]:
    """A TCP relay to ``target`` that appends ``tail`` to the first bytes the node sends (its
    hello answer); returns its address and a function that stops it and its connections."""
    host, port = target.rsplit(":", 1)
    writers: list[asyncio.StreamWriter] = []

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection(host, int(port))
        writers.extend((cw, sw))

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, extra: bytes) -> None:
            while data := await r.read(65536):
                w.write(data + extra)
                extra = b""
            w.close()

        await asyncio.gather(pipe(cr, sw, b""), pipe(sr, cw, tail), return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)

    async def stop() -> None:
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()

    return f"127.0.0.1:{server.sockets[0].getsockname()[1]}", stop


def sync_get(address: str, smart: bool) -> Any:
    with ring.connect(address, secret=SECRET, smart=smart, timeout=5) as db:
        return db.get("k")


@uvloop_test
async def test_clients_refuse_bytes_appended_to_the_hello_answer() -> None:
    runtime, core, address = await start_node("n1", security=Security((SECRET,)))
    core.data[b"k"] = b"real"
    try:
        # Through a relay that changes nothing, every client is served the real value.
        clean, stop = await relay(address, b"")
        try:
            for smart in (False, True):
                assert await asyncio.to_thread(sync_get, clean, smart) == b"real"
            async with await ring.aio.connect(clean, secret=SECRET, smart=False) as client:
                assert await client.get("k") == b"real"
        finally:
            await stop()
        for what, tail in TAILS.items():
            tampered, stop = await relay(address, tail)
            try:
                for smart in (False, True):
                    with pytest.raises(AuthenticationFailed, match="tampered"):
                        await asyncio.to_thread(sync_get, tampered, smart)
                for smart in (False, True):
                    with pytest.raises(AuthenticationFailed, match="tampered"):
                        await ring.aio.connect(tampered, secret=SECRET, smart=smart)
            finally:
                await stop()
            assert core.requests.count("get") == 3, f"{what}: a forged reply was taken"
    finally:
        await runtime.shutdown()


@uvloop_test
async def test_a_peer_link_refuses_bytes_appended_to_the_hello_answer() -> None:
    nodes = [await start_node(name, security=Security((SECRET,))) for name in "abc"]
    (a, core_a, addr_a), (_, core_b, addr_b), (_, core_c, addr_c) = nodes
    clean, stop_clean = await relay(addr_b, b"")
    tampered, stop_tampered = await relay(addr_c, FORGED)
    try:
        core_a.peers = {"b": clean, "c": tampered}
        core_b.peers = core_c.peers = {"a": addr_a}
        core_b.data[b"k"] = b"from b"
        core_c.data[b"k"] = b"from c"
        async with await ring.aio.connect(addr_a, secret=SECRET, smart=False) as client:
            assert await client._call("relay", {"to": "b", "key": b"k"}) == b"from b"
            pending = asyncio.ensure_future(client._call("relay", {"to": "c", "key": b"k"}))
            await wait_for(lambda: a.counters.get("auth_failed_peer_tampered", 0) >= 1)
            assert not pending.done()
            pending.cancel()
        assert core_c.requests == []
    finally:
        await stop_clean()
        await stop_tampered()
        for runtime, _, _ in nodes:
            await runtime.shutdown()
