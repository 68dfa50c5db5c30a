"""The sync and async clients against real runtimes with fake cores.

The sync client uses blocking sockets, so it runs in a worker thread while the loop serves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

import ring
import ring.aio
from tests.net.fakecore import free_port, start_node, uvloop_test

T = TypeVar("T")


async def in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


def _crud(client: ring.client.Client) -> dict[str, Any]:
    client.put(b"a", b"1")
    client.put("b", "2", w=2)
    client.put(b"c", b"3", context=client.get_versioned(b"c"))
    out: dict[str, Any] = {
        "get": client.get(b"a", r=1),
        "missing": client.get(b"zz"),
        "versioned": client.get_versioned(b"b"),
        "scan": list(client.scan(page=1)),
        "reverse": list(client.scan(reverse=True, limit=2, page=1)),
        "prefix": list(client.scan(prefix=b"b")),
    }
    client.delete(b"a")
    out["deleted"] = client.get(b"a")
    out["status"] = client.status()
    out["ring"] = client.ring_info()
    return out


@uvloop_test
async def test_sync_client_has_the_store_methods() -> None:
    runtime, _, address = await start_node("n1")
    try:
        with await in_thread(lambda: ring.connect(address)) as client:
            out = await in_thread(lambda: _crud(client))
            assert client.node == "n1"
        assert client.closed
        assert out["get"] == b"1" and out["missing"] is None and out["deleted"] is None
        assert out["versioned"] == ring.Versioned((b"2",), b"ctx", b"2")
        assert out["scan"] == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
        assert out["reverse"] == [(b"c", b"3"), (b"b", b"2")]
        assert out["prefix"] == [(b"b", b"2")]
        assert out["status"]["node"] == "n1" and "counters" in out["status"]
        assert out["ring"]["partitions"] == 8
        with pytest.raises(ring.StoreClosed):
            client.get(b"a")
    finally:
        await runtime.shutdown()


@uvloop_test
async def test_sync_client_fails_over_to_the_next_address() -> None:
    one, core_one, addr_one = await start_node("one")
    two, core_two, addr_two = await start_node("two")
    dead = f"127.0.0.1:{free_port()}"
    try:
        client = await in_thread(
            lambda: ring.connect(f"{dead},{addr_one},{addr_two}", smart=False)  # plain failover
        )
        assert client.node == "one"
        await in_thread(lambda: client.put(b"k", b"v"))
        await one.shutdown()
        assert await in_thread(lambda: client.get(b"k")) is None  # answered by "two"
        assert client.node == "two"
        assert core_two.requests == ["get"]
        # A quorum error is an answer: raised, not retried elsewhere.
        with pytest.raises(ring.QuorumError) as err:
            await in_thread(lambda: client._call("quorum", {}))
        assert (err.value.replied, err.value.needed) == (1, 2)
        assert core_two.requests == ["get", "quorum"] and core_one.requests == ["put"]
        client.close()
    finally:
        await two.shutdown()


@uvloop_test
async def test_no_node_reachable_lists_the_addresses_tried() -> None:
    dead = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    with pytest.raises(ring.Unavailable) as err:
        await in_thread(lambda: ring.connect(",".join(dead), timeout=2))
    assert all(a in str(err.value) for a in dead)
    assert "refused" in str(err.value)
    with pytest.raises(ring.Unavailable) as aerr:
        await ring.aio.connect(dead, timeout=2)
    assert all(a in str(aerr.value) for a in dead)


@uvloop_test
async def test_wrong_cluster_is_a_protocol_error() -> None:
    runtime, _, address = await start_node("n1", cluster="blue")
    try:
        with pytest.raises(ring.ProtocolError, match="blue"):
            await in_thread(lambda: ring.connect(address))
        with pytest.raises(ring.ProtocolError, match="blue"):
            await ring.aio.connect(address)
        client = await ring.aio.connect(address, cluster="blue")
        assert client.node == "n1"
        await client.close()
    finally:
        await runtime.shutdown()


@uvloop_test
async def test_async_client_pipelines_and_fails_over() -> None:
    one, _, addr_one = await start_node("one")
    two, core_two, addr_two = await start_node("two")
    try:
        async with await ring.aio.connect([addr_one, addr_two]) as client:
            await asyncio.gather(*(client.put(f"k{i:03}", f"v{i}") for i in range(200)))
            values = await asyncio.gather(*(client.get(f"k{i:03}") for i in range(200)))
            assert values == [f"v{i}".encode() for i in range(200)]
            assert one.counters["tcp_accepted"] == 1
            items = [kv async for kv in client.scan(start=b"k010", limit=25, page=7)]
            assert [k for k, _ in items] == [f"k{i:03}".encode() for i in range(10, 35)]
            versioned = await client.get_versioned("k001", r=2)
            assert versioned.values == (b"v1",)
            with pytest.raises(ring.QuorumError):
                await client._call("quorum", {})
            await client.delete("k001", context=versioned)
            assert await client.get("k001") is None
            assert (await client.status())["node"] == "one"
            await one.shutdown()
            results = await asyncio.gather(*(client.get(f"k{i:03}") for i in range(50)))
            assert results == [None] * 50  # "two" has none of the data
            assert client.node == "two" and core_two.requests.count("get") == 50
            assert (await client.ring_info())["members"] == ["two"]
        assert client.closed
    finally:
        await two.shutdown()
