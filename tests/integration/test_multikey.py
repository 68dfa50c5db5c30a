"""``get_many``, ``put_many`` and ``delete_many`` on a real three-node ``ringd`` cluster, through
``ring.connect`` and ``ring.aio.connect``.

What a user relies on: values in the order asked (None for a missing key, once per occurrence);
more keys than one window of requests in flight; bad input refused before anything is sent;
every key attempted, and the keys that failed (W or R larger than the live replicas) named
together in one ``MultiKeyError`` with each key's own error; a node that dies between calls
costs a failover, not a key.

Every process is started on port 0 and killed by PID in a ``finally``; no fixed sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import ring
import ring.aio
import ring.client
from ring.multikey import WINDOW
from tests.integration.harness import Cluster

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def _start(root: Path) -> Cluster:
    c = Cluster(root)
    c.start("a", "b", "c")
    c.converge({"a": "up", "b": "up", "c": "up"})
    return c


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One healthy cluster for the tests that kill nothing."""
    c = Cluster(tmp_path_factory.mktemp("multikey"))
    try:
        c.start("a", "b", "c")
        c.converge({"a": "up", "b": "up", "c": "up"})
        yield c
    finally:
        c.close()


@pytest.fixture
def wounded(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster whose node c was killed: W=3 and R=3 cannot be met."""
    c = Cluster(tmp_path)
    try:
        c.start("a", "b", "c")
        c.converge({"a": "up", "b": "up", "c": "up"})
        c.kill9("c")
        yield c
    finally:
        c.close()


def _keys(prefix: str, n: int) -> list[str]:
    return [f"{prefix}:{i:04d}" for i in range(n)]


def test_sync_client_reads_and_writes_many_keys_in_order(cluster: Cluster) -> None:
    keys = _keys("s", 2 * WINDOW + 44)  # three windows
    with cluster.client("a") as writer, cluster.client("b") as reader:
        writer.put_many([(k, f"v-{k}") for k in keys] + [(keys[0], "last")], w=3)
        asked = [keys[5], "s:missing", keys[0], *keys, keys[5]]
        expected = [f"v-{keys[5]}".encode(), None, b"last"]
        expected += [b"last"] + [f"v-{k}".encode() for k in keys[1:]] + [expected[0]]
        assert reader.get_many(asked, r=3) == expected
        assert [reader.get(k, r=3) for k in keys[:3]] == expected[3:6]
        # Written as put without a context: a plain overwrite, no siblings.
        assert reader.get_versioned(keys[0], r=3).values == (b"last",)
        writer.delete_many([*keys[::2], keys[0], "s:never"], w=3)
        got = reader.get_many(keys, r=3)
        assert got == [None if i % 2 == 0 else f"v-{k}".encode() for i, k in enumerate(keys)]
        assert reader.get_many([]) == [] and writer.put_many({}) is None
        writer.put_many({"s:m1": "1", b"s:m2": b"2"})
        assert reader.get_many(["s:m2", "s:m1"], r=3) == [b"2", b"1"]
        # After a multi-key call the connection still serves single requests.
        writer.put("s:after", "x")
        assert writer.get("s:after") == b"x"


def test_sync_client_refuses_bad_input_before_sending_anything(cluster: Cluster) -> None:
    with cluster.client("a") as db:
        with pytest.raises(ring.InvalidInput, match="item 2"):
            db.put_many([("bad:1", "x"), ("bad:2", "y"), ("bad:3", b"v" * (16 * MIB + 1))])
        with pytest.raises(ring.InvalidInput, match="key 1"):
            db.delete_many(["bad:1", 3.5])
        with pytest.raises(ring.InvalidInput, match="single key"):
            db.get_many("bad:1")
        with pytest.raises(ring.InvalidInput, match="w must be"):
            db.put_many([("bad:1", "x")], w=0)
        assert db.get_many(["bad:1", "bad:2"], r=3) == [None, None]
        # A w above N is refused by the node, for every key; none is dropped.
        with pytest.raises(ring.MultiKeyError) as err:
            db.put_many([("bad:1", "x"), ("bad:2", "y")], w=4)
        assert list(err.value.errors) == [b"bad:1", b"bad:2"]
        assert all(isinstance(e, ring.InvalidInput) for e in err.value.errors.values())


async def test_async_client_reads_and_writes_many_keys_in_order(cluster: Cluster) -> None:
    keys = _keys("a", WINDOW + 72)
    async with await ring.aio.connect(cluster.addresses["c"]) as db:
        await db.put_many([(k, f"w-{k}") for k in keys] + [(keys[1], "last")], w=3)
        values = await db.get_many([*keys, "a:missing", keys[1]], r=3)
        assert values[-2:] == [None, b"last"]
        assert values[:-2] == [b"last" if k == keys[1] else f"w-{k}".encode() for k in keys]
        await db.delete_many(keys[:10], w=3)
        assert await db.get_many(keys[:12], r=3) == [None] * 10 + [
            f"w-{k}".encode() for k in keys[10:12]
        ]
        assert await db.get_many([]) == []
        with pytest.raises(ring.InvalidInput, match="item 1"):
            await db.put_many([(keys[11], "changed"), ("a:x", None)])
        assert await db.get(keys[11], r=3) == f"w-{keys[11]}".encode()


def test_sync_client_names_every_key_that_missed_its_quorum(wounded: Cluster) -> None:
    keys = _keys("q", 40)
    with wounded.client("a", "b") as db:
        with pytest.raises(ring.MultiKeyError) as err:
            db.put_many([(k, "v") for k in keys], w=3)
        assert list(err.value.errors) == [k.encode() for k in keys]
        for e in err.value.errors.values():
            assert isinstance(e, ring.QuorumError) and (e.replied, e.needed) == (2, 3)
        assert "40 of 40 keys failed" in str(err.value)
        # Every key was attempted, not only the first: the live replicas hold each one.
        assert db.get_many(keys, r=2) == [b"v"] * 40
        with pytest.raises(ring.MultiKeyError) as err:
            db.get_many([keys[0], keys[1], keys[0]], r=3)
        assert list(err.value.errors) == [keys[0].encode(), keys[1].encode()]
        assert err.value.values == [None, None, None]
        db.delete_many(keys[:20], w=2)
        assert db.get_many(keys[18:22], r=2) == [None, None, b"v", b"v"]


async def test_async_client_names_every_key_that_missed_its_quorum(wounded: Cluster) -> None:
    keys = _keys("aq", 30)
    async with await ring.aio.connect([wounded.addresses["b"]]) as db:
        await db.put_many([(k, "v") for k in keys], w=2)
        with pytest.raises(ring.MultiKeyError) as err:
            await db.delete_many(keys, w=3)
        assert list(err.value.errors) == [k.encode() for k in keys]
        assert all(isinstance(e, ring.QuorumError) for e in err.value.errors.values())
        assert await db.get_many(keys, r=2) == [None] * 30  # attempted: deleted on a and b
        with pytest.raises(ring.MultiKeyError) as err:
            await db.get_many(keys[:3], r=3)
        assert len(err.value.errors) == 3


def test_a_node_that_died_between_calls_costs_a_failover_not_a_key(tmp_path: Path) -> None:
    c = _start(tmp_path)
    try:
        keys = _keys("f", 60)
        with c.client("c", "a") as db:
            assert db.node == "c"
            c.kill9("c")  # the client's connection to c is now dead
            db.put_many([(k, k) for k in keys], w=2)
            assert db.node == "a"
            assert db.get_many(keys, r=2) == [k.encode() for k in keys]
        with ring.client.Client(c.addresses["c"]) as gone:  # not connected yet
            with pytest.raises(ring.Unavailable) as unavailable:
                gone.get_many(keys)
            assert not isinstance(unavailable.value, ring.MultiKeyError)
    finally:
        c.close()


async def test_async_client_fails_over_when_its_node_dies(tmp_path: Path) -> None:
    c = _start(tmp_path)
    try:
        keys = _keys("af", 50)
        db = await ring.aio.connect([c.addresses["b"], c.addresses["a"]])
        try:
            assert db.node == "b"
            c.kill9("b")
            await db.put_many([(k, k) for k in keys], w=2)
            assert await db.get_many(keys, r=2) == [k.encode() for k in keys]
            assert db.node == "a"
        finally:
            await db.close()
    finally:
        c.close()


def test_get_versioned_many_gives_siblings_and_contexts_in_order(cluster: Cluster) -> None:
    keys = _keys("gv", WINDOW + 10)
    with cluster.client("a") as db:
        db.put_many([(k, f"v-{k}") for k in keys], w=3)
        # Two writes that did not see each other: siblings, whose context a put can supersede.
        base = db.get_versioned(keys[3], r=3)
        db.put(keys[3], "left", context=base.context, w=3)
        db.put(keys[3], "right", context=base.context, w=3)
        got = db.get_versioned_many([keys[3], "gv:missing", *keys], r=3)
        assert len(got) == len(keys) + 2
        assert sorted(got[0].values) == [b"left", b"right"] and got[2 + 3] == got[0]
        assert got[1].values == () and got[1].value is None
        assert [v.values for v in got[2:4]] == [(f"v-{k}".encode(),) for k in keys[:2]]
        db.put(keys[3], "merged", context=got[0].context, w=3)
        assert db.get_versioned(keys[3], r=3).values == (b"merged",)


async def test_async_get_versioned_many(cluster: Cluster) -> None:
    keys = _keys("agv", 20)
    async with await ring.aio.connect(cluster.addresses["b"]) as db:
        await db.put_many([(k, k) for k in keys], w=3)
        got = await db.get_versioned_many([*keys, "agv:none"], r=3)
        assert [v.value for v in got] == [k.encode() for k in keys] + [None]
        with pytest.raises(ring.InvalidInput):
            await db.get_versioned_many(["ok", 5])


def test_get_versioned_many_names_keys_that_missed_their_quorum(wounded: Cluster) -> None:
    with wounded.client("a") as db:
        db.put_many([("gq:1", "x"), ("gq:2", "y")], w=2)
        assert [v.values for v in db.get_versioned_many(["gq:1", "gq:2"], r=2)] == [
            (b"x",),
            (b"y",),
        ]
        with pytest.raises(ring.MultiKeyError) as err:
            db.get_versioned_many(["gq:1", "gq:2"], r=3)
        assert list(err.value.errors) == [b"gq:1", b"gq:2"]
        assert "get_versioned_many" in str(err.value)
