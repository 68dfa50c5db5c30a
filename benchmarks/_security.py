"""The cluster benchmark's secured runs (issue 13): ``--secure secret`` runs ringkv again with a
cluster secret (handshake, MACed records, signed gossip), ``--secure tls`` with TLS on client
and peer connections (a throwaway CA made with ``openssl``, IP SAN 127.0.0.1), ``--secure
secret+tls`` with both. Each is measured in the same rounds as the plain ringkv run and
reported as the ratio of its put and get rates (and p99s) to the plain run's.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _load import LoadConfig
from _report import Row

MODES = ("secret", "tls", "secret+tls")


@dataclass(frozen=True)
class Secured:
    mode: str
    flags: tuple[str, ...]  # what every ringd gets
    secret: bytes | None
    tls_ca: str | None

    @property
    def system(self) -> str:
        return f"ringkv+{self.mode}"

    def config(self, cfg: LoadConfig) -> LoadConfig:
        return dataclasses.replace(cfg, secret=self.secret, tls_ca=self.tls_ca)

    def status(self, address: str) -> tuple[Any, Any]:
        """``(error, status)`` of one node, as ``_wire.call`` answers, over a secured client;
        OSError when it cannot answer (yet)."""
        import ring

        try:
            with ring.connect(address, timeout=2, secret=self.secret, tls_ca=self.tls_ca) as c:
                return None, c.status()
        except ring.RingError as exc:
            raise OSError(str(exc)) from exc


def prepare(mode: str, work: Path) -> Secured:
    """The files a mode needs (a random secret; a CA and a node certificate), under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    flags: list[str] = []
    secret = tls_ca = None
    if "secret" in mode:
        secret = os.urandom(32).hex().encode()
        (work / "secret").write_bytes(secret + b"\n")
        flags += ["--secret-file", str(work / "secret")]
    if "tls" in mode:
        cert, key, tls_ca = make_pki(work)
        flags += ["--tls-cert", cert, "--tls-key", key, "--tls-ca", tls_ca]
    return Secured(mode, tuple(flags), secret, tls_ca)


def make_pki(d: Path) -> tuple[str, str, str]:
    """The README's commands: a CA, and a certificate for 127.0.0.1 it signed."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SystemExit("--secure tls needs the openssl command")

    def run(*argv: str) -> None:
        subprocess.run([openssl, *argv], cwd=d, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ca")
    run("req", *ec, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=node")
    (d / "node.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-out", "node.pem", "-extfile", "node.ext",
    )  # fmt: skip
    return str(d / "node.pem"), str(d / "node.key"), str(d / "ca.pem")


def lines(plain: list[list[Row]], secured: dict[str, list[list[Row]]]) -> list[str]:
    """Per mode and op: the secured rate, p50 and p99 beside the plain run's of the same
    rounds, as the median of the per-round ratios (with the range of the rate's), and the
    servers' CPU per operation likewise."""
    out = []
    for mode, runs in secured.items():
        for op in ("put", "get"):
            pairs = []
            for a, b in zip(plain, runs, strict=False):
                x = next((r for r in a if r.key == ("ringkv", op)), None)
                y = next((r for r in b if r.op == op), None)
                if x is not None and y is not None and x.ops_per_s and x.p99_ms:
                    pairs.append((x, y))
            if not pairs:
                continue
            rate = [y.ops_per_s / x.ops_per_s for x, y in pairs]
            p50 = [y.p50_ms / x.p50_ms for x, y in pairs if x.p50_ms]
            p99 = [y.p99_ms / x.p99_ms for x, y in pairs]
            cpu = [y.server_cpu_us / x.server_cpu_us for x, y in pairs if x.server_cpu_us]
            out.append(
                f"{mode:<10} {op}: {statistics.median(y.ops_per_s for _, y in pairs):,.0f}/s "
                f"against {statistics.median(x.ops_per_s for x, _ in pairs):,.0f}/s plain: "
                f"{statistics.median(rate):.2f}x (rounds {min(rate):.2f}-{max(rate):.2f}); "
                f"p50 {statistics.median(y.p50_ms for _, y in pairs):.3f} against "
                f"{statistics.median(x.p50_ms for x, _ in pairs):.3f} ms "
                f"({statistics.median(p50):.2f}x), "
                f"p99 {statistics.median(y.p99_ms for _, y in pairs):.2f} against "
                f"{statistics.median(x.p99_ms for x, _ in pairs):.2f} ms "
                f"({statistics.median(p99):.2f}x)"
                + (f"; servers' CPU/op {statistics.median(cpu):.2f}x" if cpu else "")
            )
    return out
