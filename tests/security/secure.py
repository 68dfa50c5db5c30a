"""Helpers for the security tests that run real ``ringd`` processes: the integration harness's
``Cluster`` whose own clients (views, counters, reads) use the cluster secret and TLS, secret
files, and ``ringctl`` as a real process with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import ring
import ring.client
from tests.integration.harness import Cluster


class SecureCluster(Cluster):
    """``Cluster`` whose clients connect with ``secret`` and ``tls_ca`` (both may change
    between steps of a test, as a rotation does)."""

    def __init__(
        self, root: Path, *, secret: bytes | None = None, tls_ca: str | None = None, **kw: Any
    ) -> None:
        super().__init__(root, **kw)
        self.secret = secret
        self.tls_ca = tls_ca

    def client(self, *names: str, timeout: float = 5.0, smart: bool = False) -> ring.client.Client:
        return ring.connect(
            [self.addresses[n] for n in names or sorted(self.addresses)],
            timeout=timeout,
            smart=smart,
            secret=self.secret,
            tls_ca=self.tls_ca,
        )

    def refusals(self, name: str) -> dict[str, int]:
        """``name``'s counters of refused connections and datagrams (only those not zero)."""
        counters = self.counters(name)
        return {
            k: v
            for k, v in counters.items()
            if (k.startswith("auth_failed") or k.startswith("udp_refused")) and v
        }


def secret_file(path: Path, secret: bytes) -> str:
    path.write_bytes(secret + b"\n")  # a trailing newline, as an editor leaves it
    return str(path)


def ringctl(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``ringctl ARGV`` as a real process, with none of the RINGKV_* variables of the test's
    environment unless ``env`` gives them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RINGKV_")}
    return subprocess.run(
        [sys.executable, "-m", "ring.cli.ringctl", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )
