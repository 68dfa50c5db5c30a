"""Idle connections that never say hello, against a real ``ringd`` with a cluster secret started
under a low limit of open files (256, soft and hard, as a container may impose).

What users rely on: the idle connections cannot take the descriptors the node's store needs;
the oldest of them are dropped (counted), an authenticated client still connects and is
served, writes that make the store open new files succeed, and the node does not exit.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator

import pytest

from tests.integration.harness import wait_until
from tests.security.secure import SecureCluster, secret_file

SECRET = b"0f3c9a1e7b5d2c8a4f6e1b3d5c7a9e2f"
LOW_LIMIT = (
    "import resource, runpy; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)); "
    "runpy.run_module('ring.cli.ringd', run_name='__main__', alter_sys=True)"
)


@pytest.fixture()
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    root = tmp_path_factory.mktemp("flood")
    path = secret_file(root / "secret", SECRET)
    cluster = SecureCluster(
        root,
        secret=SECRET,
        command=[sys.executable, "-c", LOW_LIMIT],
        extra=["--secret-file", path],
    )
    try:
        cluster.start("a")
        yield cluster
    finally:
        cluster.close()


def test_idle_connections_do_not_starve_the_node(node: SecureCluster) -> None:
    address = node.addresses["a"]
    host, port = address.rsplit(":", 1)
    with node.client() as client:
        client.put("before", "x")
    idle: list[socket.socket] = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection((host, int(port)), timeout=10))
        wait_until(
            lambda: node.counters("a").get("pending_dropped", 0) >= 300 - 32,
            15,
            "the oldest idle connections to be dropped",
        )
        # Descriptors are left for the store: the idle connections hold at most 32 of 256.
        held = len(os.listdir(f"/proc/{node.pid('a')}/fd"))
        assert held < 128, f"the node holds {held} descriptors of 256"
        with node.client(timeout=10) as client:
            assert client.get("before") == b"x"
            for i in range(6):  # enough to make the store flush and open new files
                client.put(f"big{i}", os.urandom(8 << 20))
            assert client.get("big5") is not None
    finally:
        for sock in idle:
            sock.close()
    print(f"descriptors held during the flood: {held}")
    assert node.procs["a"].poll() is None, node.log("a")
    assert "Too many open files" not in node.log("a")
