"""``ringctl --secret-file F cluster local`` starts its ringd processes with that secret (real
processes on 127.0.0.1, stopped by PID at the end); ``--tls-ca`` is refused clearly (the local
nodes have no certificates)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from tests.security.pki import make_pki
from tests.security.secure import ringctl, secret_file

SECRET = b"0f3c9a1e7b5d2c8a4f6e1b3d5c7a9e2f"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def test_cluster_local_passes_the_secret_to_its_nodes(tmp_path: Path) -> None:
    secret = secret_file(tmp_path / "secret", SECRET)
    root = str(tmp_path / "cluster")
    started = ringctl(
        "--secret-file", secret, "-o", "json", "cluster", "local", "--nodes", "1", "--dir", root,
        "--detach",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    pids = [n["pid"] for n in info["nodes"]]
    nodes = info["RINGKV_NODES"]
    try:
        put = ringctl("--nodes", nodes, "--secret-file", secret, "put", "k", "v")
        assert put.returncode == 0, put.stderr
        got = ringctl("--nodes", nodes, "--secret-file", secret, "get", "k")
        assert got.returncode == 0 and got.stdout == "v"
        refused = ringctl("--nodes", nodes, "get", "k")  # the nodes require the secret
        assert refused.returncode == 5 and "authentication failed" in refused.stderr
    finally:
        stopped = ringctl("cluster", "stop", "--dir", root)
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert stopped.returncode == 0, stopped.stderr


def test_cluster_local_refuses_tls(tmp_path: Path) -> None:
    ca = make_pki(tmp_path / "pki").ca
    done = ringctl("--tls-ca", str(ca), "cluster", "local", "--dir", str(tmp_path / "c"))
    assert done.returncode == 2 and "does not start nodes with TLS" in done.stderr, done
