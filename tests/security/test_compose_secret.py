"""docker-compose.yml gives every node the cluster secret as a compose secret.

The file's own layout, read without a YAML library: a top-level secret ``ringkv`` from a file in
the repository, mounted in every node (the ``x-node`` anchor every service merges), and
``RINGKV_SECRET_FILE`` pointing ringd and the healthcheck's ringctl at where compose mounts it.
Then ringd with node1's environment as compose gives it (the secret at the repository's file,
where compose would mount it) refuses a client without the secret and passes the healthcheck
command, which finds the secret in the same environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ring
from ring.net.auth import AuthenticationFailed, read_secret_file
from tests.integration.harness import stop_gracefully, wait_until

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
MOUNTED = "/run/secrets/ringkv"


def environments(text: str) -> dict[str, dict[str, str]]:
    """Each service's RINGKV_* environment."""
    out: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.split("\nservices:\n", 1)[1].splitlines():
        if re.fullmatch(r"  (\w+):", line):
            current = out.setdefault(line.strip(" :"), {})
        elif current is not None and (m := re.fullmatch(r"      (RINGKV_\w+): (.+)", line)):
            current[m.group(1)] = m.group(2).strip('"')
        elif line and not line.startswith(" "):
            break
    return out


def test_every_node_gets_the_secret_from_a_file_in_the_repository() -> None:
    text = COMPOSE.read_text()
    top = re.search(r"\nsecrets:\n  ringkv:\n    file: (\S+)\n", text)
    assert top is not None, "a top-level compose secret named ringkv"
    secret_path = (REPO / top.group(1)).resolve()
    assert secret_path.is_file() and read_secret_file(str(secret_path))
    anchor = text.split("x-node: &node\n", 1)[1].split("\nservices:", 1)[0]
    assert "\n  secrets: [ringkv]\n" in "\n" + anchor, "the x-node anchor mounts the secret"
    services = environments(text)
    assert sorted(services) == ["node1", "node2", "node3"]
    assert text.count("    <<: *node\n") == len(services)
    for name, env in services.items():
        assert env.get("RINGKV_SECRET_FILE") == MOUNTED, name


def test_a_node_started_as_compose_starts_it_needs_the_secret(tmp_path: Path) -> None:
    text = COMPOSE.read_text()
    secret_file = REPO / re.search(r"\n    file: (\S+)\n", text).group(1)  # type: ignore[union-attr]
    env = {k: v for k, v in environments(text)["node1"].items() if k.startswith("RINGKV_")}
    env.pop("RINGKV_SEEDS")  # compose's host names do not resolve here
    env.pop("RINGKV_METRICS", None)
    env |= {"RINGKV_SECRET_FILE": str(secret_file), "RINGKV_LISTEN": "127.0.0.1:0"}
    env |= {"RINGKV_ADVERTISE": "", "RINGKV_DATA": str(tmp_path / "node1")}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RINGKV_")}
    out = tmp_path / "node1.out"
    with open(out, "wb") as stdout, open(tmp_path / "node1.log", "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ring.cli.ringd"], stdout=stdout, stderr=stderr, env=clean | env
        )
    try:
        address = wait_until(
            lambda: (m := re.search(r"listening on (\S+)", out.read_text())) and m.group(1),
            what="node1 to listen",
        )
        wait_until(lambda: "serving" in out.read_text(), what="node1 to serve")
        with pytest.raises(AuthenticationFailed):
            ring.connect(address)
        # The healthcheck, with the environment compose gives the container.
        check = subprocess.run(
            [sys.executable, "-m", "ring.cli.ringctl", "--nodes", address, "status", "--check"],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean | {"RINGKV_SECRET_FILE": str(secret_file)},
        )
        assert check.returncode == 0, check.stderr
    finally:
        code = stop_gracefully(proc)
    assert code == 0
