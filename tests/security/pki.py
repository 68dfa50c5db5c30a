"""A throwaway certificate authority for TLS tests, made with the ``openssl`` command line (the
same commands the README shows).

``make_pki(dir)`` writes ``ca.pem``/``ca.key`` and a node certificate ``node.pem``/``node.key``
for IP 127.0.0.1 and DNS localhost, signed by that CA, plus ``other-ca.pem`` (a second CA that
signed nothing of ours) and ``wrong-host.pem``/``wrong-host.key`` (signed by the CA, for a host
name that is not 127.0.0.1).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

OPENSSL = shutil.which("openssl")


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path
    wrong_host_cert: Path
    wrong_host_key: Path

    def ringd_flags(self) -> list[str]:
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key), "--tls-ca", str(self.ca)]


def _run(*argv: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *argv], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str) -> None:
    _run(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        cwd=d,
    )  # fmt: skip


def _leaf(d: Path, name: str, san: str) -> None:
    _run(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=d,
    )  # fmt: skip
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    _run(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        cwd=d,
    )  # fmt: skip


def make_pki(d: Path) -> Pki:
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "other-ca")
    _leaf(d, "node", "IP:127.0.0.1,DNS:localhost")
    _leaf(d, "wrong-host", "DNS:elsewhere.invalid")
    return Pki(
        d / "ca.pem",
        d / "node.pem",
        d / "node.key",
        d / "other-ca.pem",
        d / "wrong-host.pem",
        d / "wrong-host.key",
    )
