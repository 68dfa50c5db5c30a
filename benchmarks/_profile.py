"""Sampling a running ringd with py-spy and summing up where its time goes.

``Sampler`` runs ``py-spy record --native --format raw --function`` on one PID between
``start`` and ``stop`` (SIGINT makes py-spy write its file and exit). ``summarize`` reads the
collapsed stacks (one line per distinct stack, frames joined by ``;``, then a sample count).

py-spy's own idle detection does not see uvloop waiting in ``epoll_pwait`` (it shows up as time
in ``Runner.run``), so native stacks are sampled and a sample whose innermost frame is an epoll
wait counts as idle. Every other sample is charged to its innermost *Python* function, so the
C work a function causes (the socket ``write`` under ``FramedConnection.flush``, the WAL append
under ``RocksStorage.put``) counts as its own; what is left in the event loop's C code (libuv
reads, callback dispatch) is charged to the loop's runner frame.

Read the shares of syscall-heavy frames as upper bounds: on this machine py-spy charged
``FramedConnection.flush`` (the socket writes) 13-28 % of ringd's busy samples, where per-call
thread CPU time and ``perf trace`` put the socket writes at 2-7 % of the node's CPU. The
Python-level shares between the core's functions agree with the thread CPU time; the total CPU
per operation in the benchmark's table comes from ``/proc`` and is the figure to trust.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

IDLE_FRAMES = ("epoll_wait", "epoll_pwait", "__GI_epoll", "__epoll")
PYTHON_FRAME = re.compile(r"\((?:.*\.py|<string>):\d+\)$")


@dataclass
class Profile:
    samples: int  # busy samples only
    idle: int
    rate_hz: int
    self_counts: Counter[str] = field(default_factory=Counter)
    inclusive_counts: Counter[str] = field(default_factory=Counter)

    @property
    def busy(self) -> float:
        total = self.samples + self.idle
        return self.samples / total if total else 0.0

    def report(self, title: str, top: int = 15) -> str:
        lines = [
            f"{title}: {self.samples} busy samples of {self.samples + self.idle} "
            f"({self.busy:.0%} busy); shares of the busy samples:",
            f"  {'self':>6} {'incl':>6}  function (file) — self includes the C code it calls",
        ]
        for name, count in self.self_counts.most_common(top):
            share = count / max(1, self.samples)
            incl = self.inclusive_counts[name] / max(1, self.samples)
            lines.append(f"  {share:6.1%} {incl:6.1%}  {name}")
        by_file: Counter[str] = Counter()
        for name, count in self.self_counts.items():
            by_file[name.rpartition(" (")[2].rpartition(":")[0]] += count
        files = [f"{f} {c / max(1, self.samples):.0%}" for f, c in by_file.most_common(8)]
        lines.append(f"  self by file: {', '.join(files)}")
        return "\n".join(lines)


def py_spy() -> str | None:
    return shutil.which("py-spy")


class Sampler:
    def __init__(self, pid: int, out: Path, rate_hz: int = 100) -> None:
        self.pid = pid
        self.out = out
        self.rate_hz = rate_hz
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = py_spy()
        assert exe is not None, "py-spy is not installed (pip install py-spy)"
        argv = [exe, "record", "--pid", str(self.pid), "--rate", str(self.rate_hz)]
        argv += ["--native", "--format", "raw", "--function", "--output", str(self.out)]
        with open(self.out.with_suffix(".log"), "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)

    def wait(self, timeout_s: float = 10.0) -> Profile | None:
        """Wait for py-spy to write its file; None if it failed (see the ``.log`` beside it)."""
        if self.proc is None:
            return None
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        if not self.out.exists():
            return None
        return summarize(self.out.read_text(errors="replace"), self.rate_hz)


def summarize(collapsed: str, rate_hz: int) -> Profile:
    profile = Profile(0, 0, rate_hz)
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_FRAMES):
            profile.idle += count
            continue
        python = [f for f in frames if PYTHON_FRAME.search(f)]
        if not python:
            continue
        profile.samples += count
        profile.self_counts[python[-1]] += count
        for name in set(python):
            profile.inclusive_counts[name] += count
    return profile
