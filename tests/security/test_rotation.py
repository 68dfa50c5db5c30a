"""Rotating the cluster secret without downtime: a rolling restart of two real ``ringd``
processes (N=2, R=W=2, so every write and quorum read needs both nodes and their links both
ways) from the old secret, through ``--secret-file NEW --old-secret-file OLD``, to the new one.

At every step the pair that is running — old only with new and old, new and old with new and
old, new and old with new only — gossips (both see both up), replicates (writes with W=2
through each node) and reads with R=2 through each node, and neither refuses anything of the
other; clients with the old secret work until the last node that holds it drops it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import ring
from ring.net.auth import AuthenticationFailed
from tests.security.secure import SecureCluster, secret_file

OLD = b"old-secret-7c1e9a3f5b2d8e4a6c0f"
NEW = b"new-secret-2b8d4f6a1c3e5a7c9e0b"


def works(cluster: SecureCluster, written: dict[str, bytes], step: int) -> None:
    """Both nodes up in both views, writes through each with W=2, every key read back with
    R=2 through each, and no refusal counted anywhere."""
    cluster.heal()
    for name in sorted(cluster.addresses):
        key = f"step{step}-via-{name}"
        with cluster.client(name) as client:
            client.put(key, key, w=2)
        written[key] = key.encode()
    for name in sorted(cluster.addresses):
        with cluster.client(name) as client:
            assert client.get_many(list(written), r=2) == list(written.values()), name
        assert cluster.refusals(name) == {}, f"{name} refused something at step {step}"


def test_a_rolling_rotation_keeps_the_cluster_serving(tmp_path: Path) -> None:
    old, new = secret_file(tmp_path / "old", OLD), secret_file(tmp_path / "new", NEW)
    only_old = ["--secret-file", old]
    both = ["--secret-file", new, "--old-secret-file", old]
    only_new = ["--secret-file", new]
    cluster = SecureCluster(tmp_path, n=2, r=2, w=2, secret=OLD, extra=only_old)
    written: dict[str, bytes] = {}
    try:
        cluster.start("a", "b")
        works(cluster, written, 0)
        steps = [  # (node restarted, its secrets, the secret the test's clients use after)
            ("a", both, OLD),  # a: new + old, b: old only
            ("b", both, NEW),  # both new + old (either secret works)
            ("a", only_new, NEW),  # a: new only, b: new + old
            ("b", only_new, NEW),  # both new only
        ]
        for step, (name, flags, client_secret) in enumerate(steps, 1):
            cluster.extra = flags
            assert cluster.stop(name) == 0
            cluster.restart(name)
            cluster.secret = client_secret
            works(cluster, written, step)
            if step == 1:
                # A client that already has the new secret is served by the node that holds
                # it, and refused by the one that does not yet.
                with ring.connect(cluster.addresses["a"], secret=NEW) as client:
                    assert client.get("step0-via-a") == b"step0-via-a"
                with pytest.raises(AuthenticationFailed):
                    ring.connect(cluster.addresses["b"], secret=NEW)
            if step == 2:
                cluster.secret = OLD  # both still take the old secret
                works(cluster, written, 20)
        for name in sorted(cluster.addresses):
            with pytest.raises(AuthenticationFailed, match="authentication failed"):
                ring.connect(cluster.addresses[name], secret=OLD)
    finally:
        cluster.close()
