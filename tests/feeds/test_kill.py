"""A writer killed with SIGKILL in the middle of a stream of adds leaves a walkable feed.

A child process adds, appends and removes in a loop on a RocksDB store and reports each
operation on stdout only after it returned. The test kills it (by PID) mid-stream, several
times over on the same data, and checks after each kill: every acknowledged entry is there and
every acknowledged removal is gone, the walks agree both ways, the count matches the walk, and
after ``repair`` the feed is clean. The one operation in flight at the kill may or may not have
happened. No fixed sleeps: the test reads the child's reports until it has enough.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ring
from feeds import Feeds
from tests.feeds.harness import CountingStore

ACKS_PER_ROUND = 300
ROUNDS = 3
DEADLINE_S = 60.0

WRITER = """
import sys
import ring
from feeds import Feeds
store = ring.open(sys.argv[1])
feeds = Feeds(store)
out = sys.stdout
i = 0
mine = []
while True:
    if i % 5 == 4 and mine:
        victim = mine.pop(len(mine) // 2)
        feeds.remove("log", victim)
        out.write("r %s\\n" % victim)
    else:
        add = feeds.add if i % 3 else feeds.append
        new = add("log", b"entry %d" % i)
        mine.append(new)
        out.write("a %s\\n" % new)
    out.flush()
    i += 1
"""


def read_acks(proc: subprocess.Popen[bytes], want: int, stderr: Path) -> list[tuple[str, str]]:
    assert proc.stdout is not None
    fd, buf, acks = proc.stdout.fileno(), b"", []
    deadline = time.monotonic() + DEADLINE_S
    while len(acks) < want:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"only {len(acks)} acknowledged operations in {DEADLINE_S} s")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            pytest.fail(f"the writer exited ({proc.wait()}) early:\n{stderr.read_text()}")
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            kind, entry_id = line.decode().split()
            acks.append((kind, entry_id))
    return acks


def run_and_kill(path: str, tmp_path: Path) -> list[tuple[str, str]]:
    stderr = tmp_path / "writer.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, stderr=err
        )
    try:
        acks = read_acks(proc, ACKS_PER_ROUND, stderr)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    return acks


def test_sigkill_mid_stream_then_walk_and_repair(tmp_path: Path) -> None:
    path = str(tmp_path / "data")
    expected: set[str] = set()
    for _ in range(ROUNDS):
        for kind, entry_id in run_and_kill(path, tmp_path):
            (expected.add if kind == "a" else expected.discard)(entry_id)
        with ring.open(path) as store:
            f = Feeds(store)
            forward = [e.id for e in f.entries("log")]
            assert [e.id for e in f.entries("log", reverse=True)] == forward[::-1]
            assert forward == sorted(forward) and len(set(forward)) == len(forward)
            assert len(set(forward) ^ expected) <= 1, "only the operation in flight may differ"
            assert f.count("log") == len(forward)
            report = f.repair("log")
            after = [e.id for e in f.entries("log")]
            assert report.count_after == f.count("log") == len(after)
            assert len(set(after) ^ expected) <= 1
            counting = CountingStore(store)
            assert [e.id for e in Feeds(counting).entries("log")] == after
            assert counting.writes == 0 and "scan" not in counting.counts
            expected = set(after)  # the in-flight add, if repair rolled it forward, is in now
