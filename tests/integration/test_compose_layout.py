"""docker-compose's layout with real processes: the founder loses its data and comes back.

The outside review's reproduction: node1 of the old compose file (no seeds), killed, its data
directory wiped and started again the same way, served at once as a one-node cluster with W
capped to 1, and acknowledged writes that its real cluster could not find afterwards. Now the
founder runs with ``--new-cluster`` *and* the other nodes as seeds (what the compose file and
``ringctl cluster local`` do; the harness starts the first node so too).

Here: three nodes (N=3 R=2 W=2) under a concurrent load of blind puts, deletes and quorum reads
through all three; the founder ``a`` is killed (SIGKILL), its data directory removed, and it is
started again with its usual command, a few times over. Each time it must rejoin — never found
a cluster of its own — and after the heal an R=3 read of every key through every node returns
every acknowledged write (or what superseded it). Reads made *during* the run are not judged: a
wiped replica answers "not found" for what it lost until it is repaired, so R + W > N does not
hold then (anti-entropy will close that gap); context writes are left out for the same reason.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
from pathlib import Path

import pytest

import ring
from tests.integration.harness import Cluster, History, Load, verify_after_heal, wait_until

pytestmark = pytest.mark.integration

NAMES = ("a", "b", "c")


def test_a_wiped_founder_restarted_with_its_command_loses_no_acknowledged_write(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path)
    load: Load | None = None
    try:
        cluster.start(*NAMES)
        cluster.heal()
        assert cluster.founder == "a"
        history = History()
        addresses = [cluster.addresses[n] for n in NAMES]
        load = Load(addresses, history, threads=4, keys=8, seed=7, context_writes=False).start()
        for _ in range(3):
            load.progress(150)
            wait_until(functools.partial(load.on, cluster.addresses["a"]), 10, "a client on a")
            cluster.kill9("a")
            shutil.rmtree(tmp_path / "a")
            load.progress(80)
            cluster.restart("a")  # --new-cluster, with b and c as seeds: as docker-compose
            cluster.wait_serving("a")
            cluster.heal()
        load.progress(150)
        load.stop()
        log = cluster.log("a", tail=1_000_000)
        assert log.count("serving: founded cluster") == 1, log  # only its very first start
        assert log.count("rejoining it instead of founding") == 3, log
        verdict = verify_after_heal(
            cluster, history, load.keys, "wiped founder", reads_during=False
        )
        assert verdict.stats["acknowledged writes"] > 200, verdict.stats
    finally:
        if load is not None:
            load.stopping.set()
        cluster.close()


def test_a_wiped_founder_whose_seeds_are_silent_waits_instead_of_founding(
    tmp_path: Path,
) -> None:
    """The founder comes back empty while its seeds do not answer (frozen with SIGSTOP, by
    PID): it must not found a cluster of its own and take writes there; it waits, says so in
    its status, and joins once they answer."""
    cluster = Cluster(tmp_path)
    frozen: list[int] = []
    try:
        cluster.start(*NAMES)
        cluster.heal()
        with cluster.client("b") as client:
            for i in range(20):
                client.put(b"k%d" % i, b"v%d" % i, w=3)
        cluster.kill9("a")
        shutil.rmtree(tmp_path / "a")
        for name in ("b", "c"):
            frozen.append(cluster.pid(name))
            os.kill(cluster.pid(name), signal.SIGSTOP)
        cluster.restart("a")

        def status() -> dict[str, object]:
            with cluster.client("a") as client:
                return client.status()

        waiting = wait_until(lambda: status().get("waiting_for"), 10, "a to say what it waits for")
        assert "founding" in str(waiting) and status()["serving"] is False
        with cluster.client("a") as client, pytest.raises(ring.Unavailable, match="serve"):
            client.put(b"lost?", b"x")
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        frozen.clear()
        cluster.wait_serving("a")
        assert "rejoining it instead of founding" in cluster.log("a")
        with cluster.client("a") as client:
            assert [client.get(b"k%d" % i, r=2) for i in range(20)] == [
                b"v%d" % i for i in range(20)
            ]
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        cluster.close()
