"""`ringctl cluster local|stop`, `status`, `ring` and `--nodes` data commands, for real:
three ringd processes on 127.0.0.1, stopped by PID at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def ringctl(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None):
    return subprocess.run(
        [sys.executable, "-m", "ring.cli.ringctl", *args],
        capture_output=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        timeout=90,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def test_local_cluster_status_data_commands_and_stop(tmp_path: Path) -> None:
    root = tmp_path / "cluster"
    started = ringctl(
        "-o", "json", "cluster", "local", "--nodes", "3", "--dir", str(root), "--detach"
    )
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    pids = [n["pid"] for n in info["nodes"]]
    nodes = info["RINGKV_NODES"]
    try:
        env = {"RINGKV_NODES": nodes}
        # cluster local returns once every node serves: each passes the health check at once.
        for address in nodes.split(","):
            check = ringctl("--nodes", address, "-o", "json", "status", "--check")
            assert check.returncode == 0, check.stderr
            assert json.loads(check.stdout)["serving"] is True
            assert json.loads(check.stdout)["hints"] == {}
        deadline = time.monotonic() + 30
        while True:
            status = ringctl("-o", "json", "status", env=env)
            info = json.loads(status.stdout) if status.returncode == 0 else {}
            members = info.get("members", [])
            if (
                len(members) == 3
                and all(m["state"] == "up" and m["partitions"] == 1024 for m in members)
                and info["transfers_pending"] == 0
            ):
                break
            assert time.monotonic() < deadline, f"cluster did not converge: {status.stdout!r}"
            time.sleep(0.2)
        assert sorted(m["name"] for m in members) == ["node1", "node2", "node3"]
        assert {m["address"] for m in members} == set(nodes.split(","))

        assert ringctl("put", "greeting", "hello", env=env).returncode == 0
        assert ringctl("put", "big", "-", env=env, stdin=b"x" * 100_000).returncode == 0
        # every node answers for every key: any node coordinates
        for address in nodes.split(","):
            got = ringctl("--nodes", address, "get", "greeting")
            assert got.returncode == 0 and got.stdout == b"hello"
        missing = ringctl("get", "nope", env=env)
        assert missing.returncode == 1 and b"not found" in missing.stderr
        assert ringctl("del", "greeting", env=env).returncode == 0
        assert ringctl("get", "greeting", env=env).returncode == 1
        scan = ringctl("scan", env=env)
        assert scan.returncode == 0 and scan.stdout.split(b"\t")[0] == b"big"

        ring_info = json.loads(ringctl("-o", "json", "ring", env=env).stdout)
        assert ring_info["partitions"] == 1024 and ring_info["n"] == 3
        assert sum(m["primary"] for m in ring_info["members"]) == 1024
        assert {m["replicas"] for m in ring_info["members"]} == {1024}  # N=3 on 3 nodes
        assert ring_info["transfers_pending"] == 0 and ring_info["epoch"] >= 2

        again = ringctl("cluster", "local", "--nodes", "3", "--dir", str(root), "--detach")
        assert again.returncode == 4 and b"already runs" in again.stderr
        # save works on the cluster too (RINGKV_NODES)
        assert ringctl("save", str(tmp_path / "d.dump"), env=env).returncode == 0
    finally:
        stopped = ringctl("cluster", "stop", "--dir", str(root))
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert stopped.returncode == 0
    assert not any(_alive(pid) for pid in pids)
    down = ringctl("--nodes", nodes, "status")
    assert down.returncode == 5 and b"connection refused" in down.stderr
