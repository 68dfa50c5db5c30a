"""Active anti-entropy and tombstone reaping on real ``ringd`` processes.

Three nodes (N=3 R=2 W=2) on 127.0.0.1 with a short ``--aae-interval-s`` (S). What a node holds
is read from its own disk through the client op ``records`` (``harness.local_records``): no
quorum read, so no read repair can do anti-entropy's work for it.

* **Rebuild without reads.** A replica killed with SIGKILL, its data directory wiped and started
  again with its usual command, gets back every record of its partitions — the same bytes, so
  the same clocks, siblings and tombstones as a healthy replica — within 3·S + 30 s, with no get
  through the cluster (the read-repair counters do not move).
* **Reaping.** With a grace of 1 s and every replica up, the tombstones of deleted keys leave
  every node's disk; live records are untouched; ``ringctl status -o json`` counts the reaps.
* **No resurrection.** A replica is down while keys are deleted: the others keep the tombstones
  past the grace and through many exchanges; once it is back (still holding the old values) the
  tombstones reach it, are reaped everywhere, and the old values never come back — not in an
  R=3 read, not on any disk, not after further exchanges.
* **No resurrection from a fallback.** With four nodes, a non-owner that keeps a hint with the
  old value for a down owner, and is down itself while the delete and the reap happen, brings
  nothing back when it returns.
* **Visibility.** ``ringctl --nodes ... status -o json`` shows each member's ``aae`` block, and
  its exchange count grows.

Nothing sleeps for a fixed time: every wait polls a condition against a deadline.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from ring.core import record as rec
from ring.core.aae import place, tombstone_ts
from tests.integration.harness import (
    Cluster,
    aae_status,
    local_records,
    ringctl,
    wait_until,
)

pytestmark = pytest.mark.integration

NAMES = ("a", "b", "c")
PARTITIONS = 1024  # ringd's default --partitions


def tombstones(records: dict[bytes, bytes]) -> set[bytes]:
    return {k for k, raw in records.items() if tombstone_ts(raw) is not None}


def clocks(raw: bytes) -> tuple[Any, ...]:
    """A record's causal context and its siblings' dots (and which are tombstones)."""
    r = rec.decode(raw)
    return (
        sorted(r.context.items()),
        [(s.actor, s.counter, s.ts_ms, s.value is None) for s in r.siblings],
    )


def same_everywhere(cluster: Cluster, names: tuple[str, ...], count: int) -> dict[bytes, bytes]:
    """Wait until every node in ``names`` holds the same ``count`` records; return them."""

    def equal() -> dict[bytes, bytes] | None:
        first = local_records(cluster, names[0])
        if len(first) != count:
            return None
        for name in names[1:]:
            if local_records(cluster, name) != first:
                return None
        return first

    result: dict[bytes, bytes] = wait_until(equal, 30, f"{count} identical records on {names}")
    return result


def exchanges(cluster: Cluster, names: tuple[str, ...]) -> dict[str, int]:
    return {n: int(aae_status(cluster, n)["exchanges"]) for n in names}


def more_exchanges(cluster: Cluster, names: tuple[str, ...], since: dict[str, int], k: int) -> bool:
    now = exchanges(cluster, names)
    return all(now[n] >= since[n] + k for n in names)


def write_keys(cluster: Cluster, count: int, prefix: bytes = b"key") -> list[bytes]:
    keys = [b"%s-%05d" % (prefix, i) for i in range(count)]
    with cluster.client() as client:
        for i, key in enumerate(keys):
            client.put(key, b"value-%d-" % i + b"x" * (i % 97))
    return keys


def hints_held(cluster: Cluster, name: str) -> dict[str, int]:
    """How many hints ``name`` keeps, per member they are for."""
    with cluster.client(name) as client:
        return dict(client.status()["hints"])


def status_json(cluster: Cluster) -> dict[str, Any]:
    nodes = ",".join(cluster.addresses[n] for n in NAMES)
    done = ringctl("--nodes", nodes, "status", "-o", "json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_wiped_replica_is_rebuilt_by_anti_entropy_without_reads(tmp_path: Path) -> None:
    interval_s = 2.0
    cluster = Cluster(tmp_path, extra=["--aae-interval-s", str(interval_s)])
    try:
        cluster.start(*NAMES)
        cluster.heal()
        keys = write_keys(cluster, 2000)
        deleted = keys[::10]  # 200 keys
        with cluster.client() as client:
            for key in deleted:
                client.delete(key)
        # Every replica got every write (W=2: the third copy arrives after the answer).
        healthy = same_everywhere(cluster, NAMES, len(keys))
        assert tombstones(healthy) == set(deleted)

        repairs_before = {n: cluster.counters(n)["read_repairs"] for n in ("a", "b")}
        aae_before = {n: aae_status(cluster, n) for n in ("a", "b")}
        cluster.kill9("c")
        shutil.rmtree(tmp_path / "c")
        started = time.monotonic()
        cluster.restart("c")  # the same name, port and seeds, an empty data directory
        cluster.wait_serving("c", timeout=3 * interval_s + 30)
        assert local_records(cluster, "c").keys() <= healthy.keys()

        bound = 3 * interval_s + 30
        wait_until(
            lambda: local_records(cluster, "c") == local_records(cluster, "a"),
            bound - (time.monotonic() - started),
            f"c's records to equal a's within 3·S + 30 = {bound:g} s",
            interval=0.2,
        )
        took = time.monotonic() - started
        rebuilt = local_records(cluster, "c")
        assert rebuilt == healthy, "c holds what a held before the kill, byte for byte"
        assert local_records(cluster, "a") == local_records(cluster, "b") == healthy
        assert tombstones(rebuilt) == set(deleted)
        for key, raw in healthy.items():
            assert clocks(rebuilt[key]) == clocks(raw), key

        # Anti-entropy did it, not reads: no read repair anywhere, and exchanges moved the keys.
        assert cluster.counters("c")["read_repairs"] == 0
        for n in ("a", "b"):
            assert cluster.counters(n)["read_repairs"] == repairs_before[n]
        after = {n: aae_status(cluster, n) for n in NAMES}
        assert after["c"]["trees_ready"] is True
        moved = sum(a["keys_repaired"] for a in after.values()) - sum(
            a["keys_repaired"] for a in aae_before.values()
        )
        assert moved >= len(keys), (moved, after)
        print(f"\nwiped replica of {len(keys)} records rebuilt in {took:.2f} s (S={interval_s:g})")
    finally:
        cluster.close()


def test_tombstones_are_reaped_everywhere_when_every_replica_holds_them(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, extra=["--aae-interval-s", "1", "--tombstone-grace-s", "1"])
    try:
        cluster.start(*NAMES)
        cluster.heal()
        keys = write_keys(cluster, 300)
        written = same_everywhere(cluster, NAMES, len(keys))
        deleted = set(keys[::6])
        live = {k: raw for k, raw in written.items() if k not in deleted}
        with cluster.client() as client:
            for key in sorted(deleted):
                client.delete(key)
        deleted_at = time.monotonic()

        def reaped() -> bool:
            return all(local_records(cluster, n) == live for n in NAMES)

        wait_until(reaped, 60, "the tombstones to leave every node, live records untouched")
        # Not before the grace: the newest delete is at most this old when they are gone.
        assert time.monotonic() - deleted_at >= 1.0 - 0.2
        with cluster.client() as client:
            for key in sorted(deleted)[:50]:
                assert client.get(key, r=3) is None
            for key in sorted(live)[:50]:
                assert client.get(key, r=3) == rec.decode_resolved(live[key])

        members = {m["name"]: m for m in status_json(cluster)["members"]}
        assert set(members) == set(NAMES)
        reaps = sum(m["aae"]["tombstones_reaped"] for m in members.values())
        # Each tombstone's first owner reaps it, and tells the other two to delete theirs.
        assert reaps >= len(deleted), members
    finally:
        cluster.close()


def test_a_replica_that_was_down_brings_no_deleted_value_back(tmp_path: Path) -> None:
    grace_s = 1.0
    extra = ["--aae-interval-s", "1", "--tombstone-grace-s", str(grace_s)]
    cluster = Cluster(tmp_path, extra=extra)
    try:
        cluster.start(*NAMES)
        cluster.heal()
        keys = write_keys(cluster, 300)
        written = same_everywhere(cluster, NAMES, len(keys))
        deleted = set(keys[::6])
        live = {k: raw for k, raw in written.items() if k not in deleted}

        cluster.kill9("c")  # c keeps the live values of the keys deleted next
        with cluster.client("a", "b") as client:
            for key in sorted(deleted):
                client.delete(key)
        deleted_at = time.monotonic()
        # Past the grace, and through several exchanges between a and b: nothing is reaped while
        # c, a replica of every partition, may still hold the old values.
        since = exchanges(cluster, ("a", "b"))
        wait_until(
            lambda: (
                time.monotonic() - deleted_at > 3 * grace_s
                and more_exchanges(cluster, ("a", "b"), since, 3)
            ),
            30,
            "the grace to pass and a and b to run 3 more exchanges",
        )
        for n in ("a", "b"):
            held = local_records(cluster, n)
            assert tombstones(held) == deleted, f"{n} reaped while c was down"
            assert aae_status(cluster, n)["tombstones_reaped"] == 0

        cluster.restart("c")  # its data directory still holds the old values
        cluster.wait_serving("c")

        def gone_everywhere() -> bool:
            return all(local_records(cluster, n) == live for n in NAMES)

        wait_until(gone_everywhere, 60, "the tombstones to be reaped on a, b and c")

        def absent() -> None:
            with cluster.client() as client:
                for key in sorted(deleted):
                    assert client.get(key, r=3) is None, f"{key!r} came back"
            for n in NAMES:
                held = local_records(cluster, n)
                back = sorted(deleted & held.keys())
                assert not back, f"{n} holds deleted keys again: {back[:5]}"
                assert held == live, n

        absent()
        # And they stay gone through more exchanges (c's old copies are gone for good).
        since = exchanges(cluster, NAMES)
        wait_until(lambda: more_exchanges(cluster, NAMES, since, 3), 30, "3 more exchanges each")
        absent()
        reaps = {n: aae_status(cluster, n)["tombstones_reaped"] for n in NAMES}
        assert sum(reaps.values()) >= len(deleted), reaps
    finally:
        cluster.close()


def test_ringctl_status_shows_each_members_anti_entropy(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, extra=["--aae-interval-s", "1"])
    try:
        cluster.start(*NAMES)
        cluster.heal()
        write_keys(cluster, 100)
        first = {m["name"]: m["aae"] for m in status_json(cluster)["members"]}
        assert set(first) == set(NAMES)
        for name, a in first.items():
            assert set(a) == {"exchanges", "keys_repaired", "tombstones_reaped", "last_sweep_s"}
            assert isinstance(a["exchanges"], int) and a["exchanges"] >= 0, (name, a)
            assert a["keys_repaired"] >= 0 and a["tombstones_reaped"] == 0, (name, a)
            assert isinstance(a["last_sweep_s"], float) and 0 <= a["last_sweep_s"] < 60, (name, a)

        def grown() -> dict[str, dict[str, Any]] | None:
            now = {m["name"]: m["aae"] for m in status_json(cluster)["members"]}
            ok = all(now[n]["exchanges"] >= first[n]["exchanges"] + 2 for n in NAMES)
            return now if ok else None

        later = wait_until(grown, 30, "every member's exchanges to grow by 2")
        for name, a in later.items():
            # Every partition was compared with each co-replica within about one interval.
            assert a["last_sweep_s"] < 1 + 5, (name, a)

        done = ringctl("--nodes", cluster.addresses["a"], "status")
        assert done.returncode == 0, done.stderr
        assert "ANTI-ENTROPY" in done.stdout and "exchanges" in done.stdout, done.stdout
    finally:
        cluster.close()


def test_a_fallbacks_old_hint_brings_no_reaped_key_back(tmp_path: Path) -> None:
    """Four nodes, N=3: d is the fallback of the partitions a, b and c own. c is down while keys
    of those partitions are written (d keeps the hints for c), then d is down while they are
    deleted (a, the coordinator, keeps the tombstones' hints for c). c comes back and gets the
    tombstones; then d comes back with its hints holding the old values.

    Before reaping asked every member (``ReapCheck``), the owners reaped as soon as all three
    held the tombstones, and d's hints then made every deleted key live again on all of them. A
    core may reap before d is back (d's hints must then not undo it) or wait for d (the hints
    then meet the tombstones): either way no deleted value may come back."""
    names = ("a", "b", "c", "d")
    cluster = Cluster(tmp_path, extra=["--aae-interval-s", "1", "--tombstone-grace-s", "1"])
    try:
        cluster.start(*names)
        cluster.heal()
        # Ten keys of one partition that a, b and c own: one reaping round covers them all.
        by_partition: dict[int, list[bytes]] = {}
        for i in range(100_000):
            key = b"victim-%d" % i
            by_partition.setdefault(place(key, PARTITIONS)[0], []).append(key)
        victims = next(
            keys[:10]
            for _, keys in sorted(by_partition.items())
            if len(keys) >= 10 and set(cluster.locate(keys[0])) == {"a", "b", "c"}
        )

        def sees_down(who: str, gone: str) -> bool:
            return cluster.states(who).get(gone) == "down"

        cluster.kill9("c")
        for n in ("a", "b", "d"):
            wait_until(functools.partial(sees_down, n, "c"), 30, f"{n} to see c down")
        with cluster.client("a") as client:
            for key in victims:
                client.put(key, b"old-" + key)
        assert hints_held(cluster, "d").get("c") == len(victims), "d keeps the hints for c"
        cluster.kill9("d")
        for n in ("a", "b"):
            wait_until(functools.partial(sees_down, n, "d"), 30, f"{n} to see d down")
        with cluster.client("a") as client:
            for key in victims:
                client.delete(key)
        deleted_at = time.monotonic()

        cluster.restart("c")
        cluster.wait_serving("c")
        owners = ("a", "b", "c")
        wait_until(
            lambda: all(set(victims) <= local_records(cluster, n).keys() for n in owners),
            30,
            "c to get the tombstones",
        )
        since = exchanges(cluster, owners)

        def reaped_or_not_yet() -> bool:
            if not any(set(victims) & local_records(cluster, n).keys() for n in owners):
                return True  # reaped on every owner
            # A core that does not reap while a fallback may hold an old value ends up here.
            return time.monotonic() - deleted_at > 3 and more_exchanges(cluster, owners, since, 8)

        wait_until(reaped_or_not_yet, 45, "the tombstones to be reaped, or 8 more exchanges")

        cluster.restart("d")  # it still keeps its hints for c, with the old values
        cluster.wait_serving("d")
        wait_until(lambda: not hints_held(cluster, "d"), 30, "d to deliver its hints")
        since = exchanges(cluster, owners)
        wait_until(lambda: more_exchanges(cluster, owners, since, 2), 30, "2 more exchanges")
        with cluster.client() as client:
            back = [k for k in victims if client.get(k, r=3) is not None]
        assert not back, f"{len(back)} of {len(victims)} deleted keys came back: {back[:3]}"
        wait_until(
            lambda: not any(set(victims) & local_records(cluster, n).keys() for n in names),
            30,
            "the tombstones to be reaped everywhere",
        )
    finally:
        cluster.close()
