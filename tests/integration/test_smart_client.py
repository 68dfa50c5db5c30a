"""Smart clients on five real ``ringd`` nodes with N=3: each keyed request goes to a replica.

A node that is not a replica of a key forwards a write to one (``forwards``) and coordinates a
read from three remote replicas (``reads_not_replica``); both counters are summed over the nodes
before and after a client's requests. A client connected to one node routes by the ownership
table it fetched (``ring.net.routing``): neither counter moves. The same client with
``smart=False`` moves both. Then what must not change: a killed owner, a member joining and one
leaving while the client is connected, and members whose advertised address the client cannot
reach (it goes the plain way) — every request is still served.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from pathlib import Path

import pytest

import ring
from tests.integration.harness import Cluster, wait_until
from tests.integration.test_partitions import enter_netns, ip

pytestmark = pytest.mark.integration

NAMES = ("a", "b", "c", "d", "e")
HOPS = ("forwards", "reads_not_replica")


@pytest.fixture
def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = Cluster(tmp_path)
    try:
        c.start(*NAMES)
        c.heal()
        yield c
    finally:
        c.close()


def hops(cluster: Cluster) -> dict[str, int]:
    """The forwarding counters summed over the running nodes."""
    out = dict.fromkeys(HOPS, 0)
    for name in sorted(cluster.procs):
        counters = cluster.counters(name)
        for k in HOPS:
            out[k] += counters.get(k, 0)
    return out


def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in HOPS}


def owners(cluster: Cluster, keys: list[bytes]) -> dict[bytes, tuple[str, ...]]:
    with cluster.client("a") as client:
        return {k: tuple(client.locate(k)["owners"]) for k in keys}


def exercise(client: ring.client.Client, tag: str, n: int = 40) -> None:
    """Single and multi-key writes and reads of ``n`` keys each, every answer checked."""
    keys = [f"{tag}-{i:03d}".encode() for i in range(n)]
    for key in keys:
        client.put(key, key + b"!")
    assert [client.get(key) for key in keys] == [key + b"!" for key in keys]
    assert client.get_versioned(keys[0]).values == (keys[0] + b"!",)
    many = [f"{tag}-m{i:03d}".encode() for i in range(n)]
    client.put_many([(k, k) for k in many])
    assert client.get_many(many + keys[:3]) == many + [k + b"!" for k in keys[:3]]
    client.delete(keys[0])
    client.delete_many(many[:5])
    assert client.get_many([keys[0], *many[:6]]) == [None] * 6 + [many[5]]


async def aexercise(client: ring.aio.AsyncClient, tag: str, n: int = 40) -> None:
    keys = [f"{tag}-{i:03d}".encode() for i in range(n)]
    await asyncio.gather(*[client.put(k, k + b"!") for k in keys])
    assert await asyncio.gather(*[client.get(k) for k in keys]) == [k + b"!" for k in keys]
    many = [f"{tag}-m{i:03d}".encode() for i in range(n)]
    await client.put_many([(k, k) for k in many])
    assert await client.get_many(many) == many
    await client.delete_many(many[:5])
    assert await client.get_many(many[:6]) == [None] * 5 + [many[5]]


def test_smart_clients_send_every_keyed_request_to_a_replica(cluster: Cluster) -> None:
    address = cluster.addresses["a"]
    before = hops(cluster)
    with ring.connect(address) as client:
        exercise(client, "sync")
        assert client.route_epoch is not None
    assert moved(before, hops(cluster)) == {"forwards": 0, "reads_not_replica": 0}

    before = hops(cluster)

    async def run() -> None:
        async with await ring.aio.connect(address) as client:
            await aexercise(client, "async")
            assert client.route_epoch is not None

    asyncio.run(run())
    assert moved(before, hops(cluster)) == {"forwards": 0, "reads_not_replica": 0}

    # The same requests the plain way: node a is no replica of about 2/5 of the keys.
    before = hops(cluster)
    with ring.connect(address, smart=False) as client:
        exercise(client, "plain")
        assert client.route_epoch is None
    delta = moved(before, hops(cluster))
    assert delta["forwards"] > 0 and delta["reads_not_replica"] > 0, delta


def test_a_killed_owner_costs_no_request(cluster: Cluster) -> None:
    keys = [b"k%03d" % i for i in range(60)]
    of_c = [k for k, o in owners(cluster, keys).items() if o[0] == "c"]
    assert of_c, "no key has c first"
    with ring.connect(cluster.addresses["a"]) as client:
        client.put_many([(k, b"1") for k in keys])  # connections to every owner are open
        cluster.kill9("c")
        cluster.converge({n: "down" if n == "c" else "up" for n in NAMES})
        # The client's connection to c is broken, its table says c is up: each request routed
        # to c finds that out and goes the plain way (a forwards the writes to a live owner).
        for key in of_c:
            client.put(key, b"2")
        assert client.get_many(of_c) == [b"2"] * len(of_c)
        client.put_many([(k, b"3") for k in keys])
        assert client.get_many(keys) == [b"3"] * len(keys)

    async def run() -> None:
        async with await ring.aio.connect(cluster.addresses["b"]) as db:
            await db.put_many([(k, b"4") for k in keys])
            assert await db.get_many(keys) == [b"4"] * len(keys)
            assert await asyncio.gather(*[db.get(k) for k in of_c]) == [b"4"] * len(of_c)

    asyncio.run(run())


def test_a_client_follows_a_member_joining_and_one_leaving(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        cluster.start("a", "b", "c", "d")
        cluster.heal()
        with ring.connect(cluster.addresses["a"]) as client:
            exercise(client, "four")
            first = client.route_epoch
            assert first is not None

            cluster.spawn("e")
            cluster.wait_ready("e")
            cluster.heal()  # e is up and owns its share, nothing moves
            epoch = cluster.ring_state("a")[0]
            assert epoch > first
            # The client checks the table with its requests (at most once a second).
            wait_until(lambda: client.get(b"probe") is None and client.route_epoch == epoch)
            before = hops(cluster)
            exercise(client, "five")
            assert moved(before, hops(cluster)) == {"forwards": 0, "reads_not_replica": 0}

            client.leave("d")  # asked through a (the plain way), while d still serves
            assert cluster.procs["d"].wait(60) == 0, cluster.log("d")
            del cluster.procs["d"]
            cluster.settled(60, members=["a", "b", "c", "e"])
            epoch = cluster.ring_state("a")[0]
            wait_until(lambda: client.get(b"probe") is None and client.route_epoch == epoch)
            before = hops(cluster)
            exercise(client, "after")
            assert moved(before, hops(cluster)) == {"forwards": 0, "reads_not_replica": 0}
    finally:
        cluster.close()


def test_members_the_client_cannot_reach_where_they_advertise(tmp_path: Path) -> None:
    """As docker-compose's ``node1:7070`` seen from the host: the nodes advertise 127.0.0.1
    (their peers reach them there), the client runs in another network namespace and reaches
    them only at the address it was given. Routed connections fail; the plain way serves."""
    ns, host, peer = f"rk-smart-{os.getpid() % 100000}", "10.219.7.1", "10.219.7.2"
    veth = f"rks{os.getpid() % 100000}"
    try:
        ip("netns", "add", ns)
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"no network namespaces here: {exc}")
    cluster = Cluster(
        tmp_path, hosts=dict.fromkeys(NAMES, "0.0.0.0"), extra=["--advertise", "127.0.0.1"]
    )
    try:
        ip("link", "add", veth, "type", "veth", "peer", "name", veth + "n", "netns", ns)
        ip("addr", "add", f"{host}/30", "dev", veth)
        ip("link", "set", veth, "up")
        ip("-n", ns, "addr", "add", f"{peer}/30", "dev", veth + "n")
        ip("-n", ns, "link", "set", veth + "n", "up")
        cluster.start(*NAMES)
        cluster.heal()
        port = cluster.addresses["a"].rsplit(":", 1)[1]
        failures: list[BaseException] = []
        epochs: list[int | None] = []

        def outside() -> None:
            try:
                enter_netns(ns)
                with ring.connect(f"{host}:{port}") as client:
                    exercise(client, "outside")
                    epochs.append(client.route_epoch)

                async def run() -> None:
                    async with await ring.aio.connect(f"{host}:{port}") as db:
                        await aexercise(db, "aoutside")

                asyncio.run(run())
            except BaseException as exc:  # re-raised below
                failures.append(exc)

        before = hops(cluster)
        thread = threading.Thread(target=outside, daemon=True)
        thread.start()
        thread.join(120)
        assert not thread.is_alive(), "the client hangs"
        if failures:
            raise failures[0]
        assert epochs and epochs[0] is not None  # it had a table, and could not use it
        delta = moved(before, hops(cluster))
        assert delta["forwards"] > 0 and delta["reads_not_replica"] > 0, delta
    finally:
        cluster.close()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=30)
