"""Anti-entropy and reaping in node cores wired in memory (``corecluster``): a wiped replica is
rebuilt without reads, exchanges merge rather than overwrite, tombstones go only once every
replica holds them."""

from __future__ import annotations

from ring.core import aae
from ring.core import record as rec
from ring.core.layout import DATA
from ring.storage import MemoryStorage
from tests.unit.corecluster import Cluster


def _cluster(**extra: int) -> Cluster:
    c = Cluster(["a", "b", "c"])
    c.cfg.update(aae_interval_ms=1_000, **extra)
    for name in c.names:  # restart with the anti-entropy settings
        c.start(name, incarnation=1)
    c.settle()
    return c


def _records(c: Cluster, name: str) -> dict[bytes, bytes]:
    return {k[1:]: v for k, v in c.storage[name].scan(DATA)}


def test_a_wiped_replica_is_rebuilt_without_reads() -> None:
    c = _cluster()
    for i in range(300):
        assert c.request("a", "put", key=b"k%d" % i, value=b"v%d" % i).error is None
    c.request("a", "del", key=b"k7")
    c.run(500)
    before = _records(c, "b")
    assert len(before) == 300
    c.crash("b")
    c.storage["b"] = MemoryStorage()
    c.start("b", incarnation=2)
    c.run(8_000)
    after = _records(c, "b")
    assert after == before  # every record, tombstone included, with its clocks
    assert c.nodes["b"].aae.stats.keys_repaired + c.nodes["a"].aae.stats.keys_repaired >= 300


def test_an_exchange_merges_concurrent_records() -> None:
    c = _cluster()
    # Two replicas hold concurrent versions of one key (written while apart).
    r1 = rec.encode(rec.write(rec.EMPTY, "x@1", b"one", 1))
    r2 = rec.encode(rec.write(rec.EMPTY, "y@1", b"two", 2))
    c.storage["a"].put(DATA + b"k", r1)
    c.nodes["a"].aae.trees.update(b"k", None, r1)
    c.storage["b"].put(DATA + b"k", r2)
    c.nodes["b"].aae.trees.update(b"k", None, r2)
    c.run(4_000)
    merged = rec.decode(c.storage["c"].get(DATA + b"k") or b"")
    assert sorted(s.value for s in merged.siblings) == [b"one", b"two"]
    assert c.storage["a"].get(DATA + b"k") == c.storage["b"].get(DATA + b"k")


def test_tombstones_are_reaped_once_every_replica_holds_them() -> None:
    c = _cluster(tombstone_grace_ms=2_000)
    for i in range(20):
        c.request("a", "put", key=b"k%d" % i, value=b"v")
    for i in range(10):
        c.request("a", "del", key=b"k%d" % i)
    c.run(500)
    assert all(len(_records(c, n)) == 20 for n in c.names)
    c.run(6_000)
    for n in c.names:
        assert sorted(_records(c, n)) == sorted(b"k%d" % i for i in range(10, 20)), n
    assert sum(c.nodes[n].aae.stats.tombstones_reaped for n in c.names) == 30


def test_no_reaping_while_a_replica_is_down() -> None:
    c = _cluster(tombstone_grace_ms=0)
    c.request("a", "put", key=b"k", value=b"v")
    c.run(200)
    c.crash("c")
    c.request("a", "del", key=b"k")
    c.run(10_000)
    for n in ("a", "b"):
        raw = c.storage[n].get(DATA + b"k")
        assert raw is not None and aae.tombstone_ts(raw) is not None, n
    c.start("c", incarnation=2)  # it comes back with the live value; the delete wins
    c.run(10_000)
    for n in c.names:
        assert c.storage[n].get(DATA + b"k") is None, n
    assert c.request("b", "get", key=b"k", r=3).result is None


def test_records_and_absorb() -> None:
    c = _cluster()
    c.request("a", "put", key=b"x", value=b"1")
    page = c.request("a", "records").result
    assert page["done"] and page["items"][0] == b"x" and page["partitions"]
    r = rec.encode(rec.write(rec.EMPTY, "z@1", b"two", 5))
    assert c.request("b", "absorb", key=b"x", record=r).error is None
    got = c.request("c", "getv", key=b"x", r=3).result
    assert sorted(got[0]) == [b"1", b"two"]
    assert c.request("a", "absorb", key=b"x", record=b"junk").error == "invalid"


def test_a_write_after_a_reap_stays_above_the_reaped_counters() -> None:
    """A replica that missed the reap still holds the tombstone: a new write of the key by the
    node that reaped it must not pass for one that tombstone has seen."""
    c = _cluster(tombstone_grace_ms=0)
    pl = c.nodes["a"].preference_list(b"k")
    coordinator = pl[0]
    c.request(coordinator, "put", key=b"k", value=b"old")
    c.request(coordinator, "del", key=b"k")
    c.run(300)
    tomb = c.storage[pl[1]].get(DATA + b"k")
    assert tomb is not None
    c.run(6_000)
    assert all(c.storage[n].get(DATA + b"k") is None for n in c.names)  # reaped everywhere
    assert c.nodes[coordinator].coordinator.floor >= 2
    c.storage[pl[1]].put(DATA + b"k", tomb)  # as if it had missed the reap
    c.nodes[pl[1]].aae.trees.update(b"k", None, tomb)
    assert c.request(coordinator, "put", key=b"k", value=b"new", w=3).error is None
    for n in c.names:
        got = rec.decode(c.storage[n].get(DATA + b"k") or b"")
        assert [s.value for s in got.live] == [b"new"], n
    # The floor is on disk: a clean restart keeps it (with the actor); an unclean one makes a
    # new actor, which has issued no counter yet.
    node = c.nodes[coordinator]
    floor, actor = node.coordinator.floor, node.actor
    node.stop(c.now)
    c.start(coordinator, incarnation=5)
    assert (c.nodes[coordinator].actor, c.nodes[coordinator].coordinator.floor) == (actor, floor)
    c.start(coordinator, incarnation=6)
    assert c.nodes[coordinator].actor != actor and c.nodes[coordinator].coordinator.floor == 0
