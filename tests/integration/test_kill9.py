"""An acknowledged write survives ``kill -9`` of the process that made it.

A child process writes in a loop and reports each write on stdout only after the call returned;
the test kills it with SIGKILL mid-stream, reopens the data directory and checks that every
reported write is there. Nothing here waits for a fixed time: the test reads the child's reports
until it has seen enough (or a deadline passes).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ring

ACKS_WANTED = 2000
DEADLINE_S = 60.0

PUT_WRITER = """
import sys
import ring
s = ring.open(sys.argv[1])
out = sys.stdout
i = 0
while True:
    s.put(b"k%d" % i, b"value-%d-" % i + b"x" * (i % 200))
    out.write("%d\\n" % i)
    out.flush()
    i += 1
"""

BATCH_SIZE = 10
BATCH_WRITER = """
import sys
import ring
s = ring.open(sys.argv[1])
size = int(sys.argv[2])
out = sys.stdout
i = 0
while True:
    with s.batch() as b:
        for j in range(size):
            b.put(b"b%d/%d" % (i, j), b"v%d/%d" % (i, j))
        if i:
            b.delete(b"b%d/0" % (i - 1))
    out.write("%d\\n" % i)
    out.flush()
    i += 1
"""


def acknowledgements(proc: subprocess.Popen[bytes], want: int, stderr: Path) -> Iterator[int]:
    """The numbers the child reports, until ``want`` of them or the deadline."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + DEADLINE_S
    buf = b""
    seen = 0
    while seen < want:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"only {seen} acknowledged writes within {DEADLINE_S}s")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            pytest.fail(f"writer exited ({proc.wait()}) early:\n{stderr.read_text()}")
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield int(line)
            seen += 1


def run_and_kill(script: str, path: str, tmp_path: Path, *args: str) -> list[int]:
    """Start ``script``, collect acknowledgements, SIGKILL it, return what was acknowledged."""
    stderr = tmp_path / "writer.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", script, path, *args], stdout=subprocess.PIPE, stderr=err
        )
    try:
        acked = list(acknowledgements(proc, ACKS_WANTED, stderr))
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    # The reports come in order and without gaps, so "acknowledged" is a prefix of the writes.
    assert acked == list(range(len(acked)))
    return acked


def test_acknowledged_puts_survive_kill9(tmp_path: Path) -> None:
    path = str(tmp_path / "data")
    acked = run_and_kill(PUT_WRITER, path, tmp_path)
    with ring.open(path) as s:
        missing = [i for i in acked if s.get(b"k%d" % i) != b"value-%d-" % i + b"x" * (i % 200)]
        assert not missing, f"{len(missing)} acknowledged puts lost, first {missing[:10]}"
        # The store is usable after the crash: new writes work and the old ones stay.
        s.put(b"after", b"crash")
    with ring.open(path) as s:
        assert s.get(b"after") == b"crash"
        assert s.get(b"k0") == b"value-0-"


def test_acknowledged_batches_survive_kill9_whole(tmp_path: Path) -> None:
    path = str(tmp_path / "data")
    acked = run_and_kill(BATCH_WRITER, path, tmp_path, str(BATCH_SIZE))
    with ring.open(path) as s:
        batches: dict[int, set[int]] = {}
        for key, value in s.scan(prefix=b"b"):
            i, j = (int(x) for x in key[1:].split(b"/"))
            assert value == b"v%d/%d" % (i, j)
            batches.setdefault(i, set()).add(j)
    last = acked[-1]
    for i in acked:
        # Batch i wrote keys 0..9; batch i+1 (when it committed) deleted key 0.
        expected = set(range(BATCH_SIZE))
        if i + 1 in batches:
            expected.discard(0)
        assert batches.get(i) == expected, f"batch {i} is incomplete: {batches.get(i)}"
    # A batch committed after the last report read (the child may have committed several
    # before the kill) is there entirely or not at all; the next one, if it committed too,
    # deleted its key 0.
    for i, js in batches.items():
        if i > last:
            expected = set(range(BATCH_SIZE))
            if i + 1 in batches:
                expected.discard(0)
            assert js == expected, f"batch {i} was applied partially: {js}"
            assert 0 not in batches[i - 1]
