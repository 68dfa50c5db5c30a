"""Five real ``ringd`` nodes with N=3: the paths a 3-node cluster never takes.

With five nodes a key has two nodes outside its preference list, so writes through them are
forwarded, a down replica's writes go to a fallback node as hints, and a scan must merge pages
from several nodes, each holding only part of the keys. Each is checked where users see it:
answers, ``status`` (hints per target), and finally the data directories themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import ring
from ring.core import record as rec
from ring.core.layout import DATA
from ring.storage import RocksStorage
from tests.integration.harness import Cluster, wait_until

pytestmark = pytest.mark.integration

NAMES = ("a", "b", "c", "d", "e")


@pytest.fixture
def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = Cluster(tmp_path)
    try:
        c.start(*NAMES)
        c.heal()
        OWNERS.clear()
        with c.client("a") as client:
            for key in [b"fwd%02d" % i for i in range(40)] + [b"hint%03d" % i for i in range(200)]:
                OWNERS[key] = tuple(client.locate(key)["owners"])
        yield c
    finally:
        c.close()


OWNERS: dict[bytes, tuple[str, ...]] = {}


def preference_list(key: bytes) -> tuple[str, ...]:
    """The key's replicas, as the cluster's table says (asked once per key)."""
    return OWNERS[key]


def stored(cluster: Cluster, name: str, keys: list[bytes]) -> dict[bytes, rec.Record | None]:
    """What ``name``'s data directory holds for ``keys`` (the node must be stopped)."""
    storage = RocksStorage(str(cluster.root / name))
    try:
        return {k: rec.decode(raw) if (raw := storage.get(DATA + k)) else None for k in keys}
    finally:
        storage.close()


def total(cluster: Cluster, counter: str) -> int:
    """``counter`` summed over the running nodes."""
    return sum(cluster.counters(name).get(counter, 0) for name in sorted(cluster.procs))


def test_writes_through_non_replicas_are_forwarded_to_replicas_only(cluster: Cluster) -> None:
    keys = [b"fwd%02d" % i for i in range(40)]
    for i, key in enumerate(keys):
        outsiders = [n for n in NAMES if n not in preference_list(key)]
        with cluster.client(outsiders[i % 2]) as client:  # only that node: it must forward
            client.put(key, key + b"=v", w=3)
    assert total(cluster, "forwards") >= len(keys)
    for via in NAMES:
        with cluster.client(via) as client:
            assert [client.get(k, r=3) for k in keys] == [k + b"=v" for k in keys]
    for name in NAMES:
        assert cluster.stop(name) == 0
    for name in NAMES:
        held = stored(cluster, name, keys)
        for key in keys:
            assert (held[key] is not None) == (name in preference_list(key)), (name, key)


def test_a_down_replica_gets_its_writes_back_from_fallback_hints(cluster: Cluster) -> None:
    keys = [k for k in (b"hint%03d" % i for i in range(200)) if "e" in preference_list(k)][:30]
    cluster.kill9("e")
    cluster.converge({n: "down" if n == "e" else "up" for n in NAMES})
    for key in keys:
        with cluster.client("a", "b", "c", "d") as client:
            client.put(key, key + b"=v")  # W=2 from the two live replicas
    # A fallback (a live node outside the key's list) stored each of them for e.
    assert total(cluster, "fallback_hints") >= len(keys)
    assert sum(_hints(cluster, n).get("e", 0) for n in "abcd") >= len(keys)
    cluster.restart("e")
    cluster.heal()
    for name in "abcd":
        wait_until(lambda name=name: not _hints(cluster, name), 30, f"{name} to hand off its hints")
    assert total(cluster, "hints_delivered") >= len(keys)
    for name in NAMES:
        assert cluster.stop(name) == 0
    held = stored(cluster, "e", keys)
    assert [held[k].live[0].value if held[k] else None for k in keys] == [k + b"=v" for k in keys]


def _hints(cluster: Cluster, name: str) -> dict[str, int]:
    with cluster.client(name) as client:
        return dict(client.status()["hints"])


def test_scans_merge_every_node_and_need_enough_of_them(cluster: Cluster) -> None:
    keys = [b"s%03d" % i for i in range(200)]
    with cluster.client() as client:
        for key in keys:
            client.put(key, key)
    for via in NAMES:
        with cluster.client(via) as client:
            assert [k for k, _ in client.scan(prefix=b"s", page=37)] == keys
            assert [k for k, _ in client.scan(prefix=b"s", reverse=True, page=50)] == keys[::-1]
    # Five nodes, N=3: any three of them hold a replica of every key.
    cluster.kill9("d")
    cluster.converge({n: "down" if n == "d" else "up" for n in NAMES})
    with cluster.client("a") as client:
        assert [k for k, _ in client.scan(prefix=b"s")] == keys
    cluster.kill9("e")
    cluster.kill9("c")
    cluster.converge({n: "up" if n in "ab" else "down" for n in NAMES})
    with cluster.client("a") as client, pytest.raises(ring.QuorumError) as info:
        list(client.scan(prefix=b"s"))
    assert info.value.replied == 2 and info.value.needed == 3


def test_a_scan_of_values_near_the_size_limit_pages_through(cluster: Cluster) -> None:
    """Three 12 MiB values: one page holding them all would pass the 32 MiB frame limit."""
    big = 12 * 1024 * 1024
    with cluster.client("a", timeout=30) as client:
        for i in range(3):
            client.put(b"big%d" % i, bytes([65 + i]) * big)
    for via in ("a", "c"):
        with cluster.client(via, timeout=30) as client:
            got = [(k, len(v), v[:1]) for k, v in client.scan(prefix=b"big")]
        assert got == [(b"big%d" % i, big, bytes([65 + i])) for i in range(3)]
    assert total(cluster, "peer_frames_dropped") == 0
