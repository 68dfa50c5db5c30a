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
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import ring
from tests.integration.harness import (
    Cluster,
    History,
    Load,
    stop_gracefully,
    verify_after_heal,
    wait_until,
)

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


COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def compose_services() -> dict[str, tuple[dict[str, str], list[str]]]:
    """Each service of docker-compose.yml: its environment and its published ports (the file's
    own simple layout, read without a YAML library)."""
    services: dict[str, tuple[dict[str, str], list[str]]] = {}
    current = None
    for line in COMPOSE.read_text().split("services:", 1)[1].splitlines():
        if re.fullmatch(r"  (\w+):", line):
            current = services.setdefault(line.strip(" :"), ({}, []))
        elif current is not None and (m := re.fullmatch(r"      (RINGKV_\w+): (.+)", line)):
            current[0][m.group(1)] = m.group(2).strip('"')
        elif current is not None and (m := re.fullmatch(r"    ports: \[(.*)\]", line)):
            current[1].extend(p.strip().strip('"') for p in m.group(1).split(","))
        elif line and not line.startswith(" "):
            break
    return services


def test_compose_nodes_serve_metrics_published_on_localhost_only(tmp_path: Path) -> None:
    """Every node of docker-compose.yml serves metrics on 9100 through RINGKV_METRICS, published
    on the host's 127.0.0.1 only; and ringd takes that setting from the environment as compose
    gives it (node1's environment, on 127.0.0.1 with port 0 here, without the seeds that only
    resolve inside compose's network)."""
    services = compose_services()
    assert sorted(services) == ["node1", "node2", "node3"]
    host_ports = set()
    for name, (env, ports) in services.items():
        assert env["RINGKV_METRICS"] == "0.0.0.0:9100", name
        assert ports and all(p.startswith("127.0.0.1:") for p in ports), (name, ports)
        metrics = [p for p in ports if p.endswith(":9100/tcp")]
        assert len(metrics) == 1, (name, ports)
        host_ports.add(metrics[0].split(":")[1])
    assert len(host_ports) == 3
    env = {k: v for k, v in services["node1"][0].items() if k not in ("RINGKV_SEEDS",)}
    env |= {"RINGKV_METRICS": "127.0.0.1:0", "RINGKV_LISTEN": "127.0.0.1:0"}
    env |= {"RINGKV_ADVERTISE": "", "RINGKV_DATA": str(tmp_path / "node1")}
    # The compose secret, which compose mounts at /run/secrets/ringkv.
    env |= {"RINGKV_SECRET_FILE": str(COMPOSE.with_name("compose-secret.txt"))}
    out = tmp_path / "node1.out"
    with open(out, "wb") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ring.cli.ringd"],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **env},
        )
    try:
        url = wait_until(
            lambda: (m := re.search(r"metrics on (\S+)", out.read_text())) and m.group(1),
            what="node1 to serve metrics",
        )
        wait_until(lambda: "serving" in out.read_text(), what="node1 to serve")
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert samples[("ringkv_node_info", (("cluster", "ringkv"), ("node", "node1")))] == 1
        assert samples[("ringkv_serving", ())] == 1
    finally:
        code = stop_gracefully(proc)
    assert code == 0
