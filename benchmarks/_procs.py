"""Child processes of the benchmark: start, wait for the ready line, stop by PID.

Every child writes stderr (and stdout) to its own log file, so a chatty child can never block
on a full pipe; readiness is a regular expression matched against that file. ``stop_all``
sends SIGTERM to each child still running, waits up to a deadline, then SIGKILLs the rest —
always by the PID we started, never by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class ChildFailed(RuntimeError):
    """A child exited, or did not become ready in time; the message carries its log's tail."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    address: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def spawn(name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> Child:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            # Own session: a Ctrl-C on the terminal reaches only the benchmark, whose finally
            # block then stops the children in order.
            start_new_session=True,
        )
    return Child(name, proc, log_path)


def wait_ready(child: Child, ready: re.Pattern[str], timeout_s: float = 15.0) -> re.Match[str]:
    """Wait until the child's log matches ``ready``; raise ChildFailed if it exits or stalls."""
    deadline = time.monotonic() + timeout_s
    while True:
        match = ready.search(child.log_path.read_text(errors="replace"))
        if match:
            return match
        code = child.proc.poll()
        if code is not None:
            raise ChildFailed(f"{child.name} exited with {code}:\n{child.log_tail()}")
        if time.monotonic() > deadline:
            raise ChildFailed(f"{child.name} not ready after {timeout_s:g} s:\n{child.log_tail()}")
        time.sleep(0.02)


def stop_all(children: list[Child], deadline_s: float = 5.0) -> None:
    """SIGTERM every running child, wait up to ``deadline_s``, SIGKILL what is left."""
    for child in children:
        if child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + deadline_s
    for child in children:
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
            child.proc.wait()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now (another process may still take it before the child binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Usage:
    """CPU seconds and read/write syscalls of one process so far (Linux ``/proc``)."""

    cpu_s: float
    reads: int
    writes: int

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.cpu_s - other.cpu_s, self.reads - other.reads, self.writes - other.writes)


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def usage(pid: int) -> Usage | None:
    """None where ``/proc`` is missing or unreadable (not Linux, or the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        io: dict[str, str] = {}
        with contextlib.suppress(OSError), open(f"/proc/{pid}/io") as f:
            io = dict(line.split(": ", 1) for line in f.read().splitlines())
    except OSError:
        return None
    cpu_s = (int(fields[11]) + int(fields[12])) / _TICKS
    return Usage(cpu_s, int(io.get("syscr", 0)), int(io.get("syscw", 0)))


class Meter:
    """Resource use of named processes over each measured window, as a load ``PhaseHook``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, Usage] = {}
        self.used: dict[str, dict[str, Usage]] = {}  # op -> process name -> use in its window

    def __call__(self, op: str, opened: bool) -> None:
        now = {name: u for name, pid in self.pids.items() if (u := usage(pid)) is not None}
        if opened:
            self._start = now
        else:
            self.used[op] = {n: u - self._start[n] for n, u in now.items() if n in self._start}
