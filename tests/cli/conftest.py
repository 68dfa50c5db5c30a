"""Helpers for ringctl tests: run it in-process (fast) or as a real process (the console path)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import ring
from ring.cli.ringctl import main
from ring.core import record as rec


@dataclass
class Result:
    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8")


class FakeStderr(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def run_main(*argv: str | bytes, stdin: bytes = b"", tty_stderr: bool = False) -> Result:
    """``main(argv)`` with private stdin/stdout/stderr."""
    args = [os.fsdecode(a) for a in argv]
    out = io.BytesIO()
    err = FakeStderr(tty_stderr)
    fake_in = io.TextIOWrapper(io.BytesIO(stdin))
    fake_out = io.TextIOWrapper(out, write_through=True)
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = fake_in, fake_out, err
    try:
        code = main(args)
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    value = out.getvalue()
    fake_in.detach()
    fake_out.detach()
    return Result(code, value, err.getvalue())


def run_process(*argv: str | bytes, stdin: bytes = b"", cwd: Path | None = None) -> Result:
    """The real thing: ``python -m ring.cli.ringctl`` in a child process."""
    env = {k: v for k, v in os.environ.items() if k not in ("RINGKV_DATA", "RINGKV_DEBUG")}
    proc = subprocess.run(
        [sys.executable, "-m", "ring.cli.ringctl", *argv],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def records(path: str | Path) -> dict[bytes, rec.Record]:
    """Every stored record (tombstones included), decoded, keyed by user key."""
    with ring.open(str(path)) as store:
        return {key: rec.decode(raw) for key, raw in store.scan_records()}


@pytest.fixture
def data(tmp_path: Path) -> str:
    return str(tmp_path / "data")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RINGKV_DATA", raising=False)
    monkeypatch.delenv("RINGKV_DEBUG", raising=False)
