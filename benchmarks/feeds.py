"""Feeds beside the plain key-value rates of the same store, measured in the same run.

    python benchmarks/feeds.py [--entries 20000] [--rounds 3]
                               [--nodes HOST:PORT,... | --local-cluster] [--cluster-entries 2000]

For the embedded store (a fresh RocksDB directory per round) and, if asked, a cluster (one you
name with ``--nodes``, or three ``ringd`` processes this script starts on 127.0.0.1 port 0 with
N=3 R=2 W=2 and stops by PID at the end), it measures:

* the store's own rates: ``put`` of new keys, ``get``, and ``get_versioned`` — the read a feed
  walk makes for every entry, since it must see siblings;
* feed rates on the same store: adds/s, appends/s, removes/s, entries walked/s (one full walk,
  and in pages of 1000);
* the ratios between them, and the store operations each feed call makes (counted through a
  proxy on a fresh feed).

Figures are medians of ``--rounds``. The machine may be shared and noisy: compare the ratios.

Targets: an add or remove costs a small constant number of store operations (<= 5, issue 5);
walking reaches >= 0.5x the store's own get rate (issue 12; issue 5 asked 0.8x). On the embedded
store a walk reads entries ahead through ``scan_versioned``; the operation counts are made
through a proxy without it, as on a cluster (one ``get_versioned`` per entry).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ring
from feeds import Feeds

VALUE = b"v" * 100
PAGE = 1000


class Counting:
    """The store, counting the operations made through it."""

    def __init__(self, store: Any) -> None:
        self.store, self.n = store, 0

    def get_versioned(self, key: Any) -> Any:
        self.n += 1
        return self.store.get_versioned(key)

    def put(self, key: Any, value: Any, context: Any = None) -> None:
        self.n += 1
        self.store.put(key, value, context=context)

    def delete(self, key: Any, context: Any = None) -> None:
        self.n += 1
        self.store.delete(key, context=context)

    def scan(self, *args: Any, **kwargs: Any) -> Iterator[tuple[bytes, bytes]]:
        self.n += 1
        return self.store.scan(*args, **kwargs)


def rate(fn: Callable[[], int]) -> float:
    t0 = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - t0)


def bench_store(store: Any, n: int, tag: str) -> dict[str, float]:
    """One round on ``store``; keys are prefixed with ``tag`` so rounds do not collide."""
    keys = [b"%s:kv:%08d" % (tag.encode(), i) for i in range(n)]
    out: dict[str, float] = {}

    def puts() -> int:
        for k in keys:
            store.put(k, VALUE)
        return n

    def gets() -> int:
        for k in keys:
            store.get(k)
        return n

    def getvs() -> int:
        for k in keys:
            store.get_versioned(k)
        return n

    out["put"], out["get"], out["get_versioned"] = rate(puts), rate(gets), rate(getvs)

    f = Feeds(store)
    feed = f"{tag}:feed"
    ids: list[str] = []

    def adds() -> int:
        ids.extend(f.add(feed, VALUE) for _ in range(n // 2))
        return n // 2

    def appends() -> int:
        ids.extend(f.append(feed, VALUE) for _ in range(n - n // 2))
        return n - n // 2

    def walk() -> int:
        return sum(1 for _ in f.entries(feed))

    def paged() -> int:
        walked, cursor = 0, None
        while True:
            page = f.page(feed, cursor, limit=PAGE)
            walked += len(page.entries)
            if page.next is None:
                return walked
            cursor = page.next

    def removes() -> int:
        victims = ids[::10]
        for entry_id in victims:
            f.remove(feed, entry_id)
        return len(victims)

    out["add"], out["append"] = rate(adds), rate(appends)
    out["walk"], out["walk (pages)"] = rate(walk), rate(paged)
    out["remove"] = rate(removes)
    out["walk after removes"] = rate(walk)  # unlinks what was removed, one run at a time
    return out


def operations_per_call(store: Any, tag: str) -> dict[str, float]:
    counting = Counting(store)
    f = Feeds(counting)
    feed = f"{tag}:ops"
    for i in range(10):
        f.add(feed, b"%d" % i)
    first = next(iter(f.entries(feed, limit=1))).id
    out = {}
    for name, call in [
        ("add", lambda: f.add(feed, VALUE)),
        ("append", lambda: f.append(feed, VALUE)),
        ("get", lambda: f.get(feed, first)),
        ("count", lambda: f.count(feed)),
    ]:
        counting.n = 0
        for _ in range(100):
            call()
        out[name] = counting.n / 100
    victims = [e.id for e in f.entries(feed)][1::2][:100]
    counting.n = 0
    for entry_id in victims:
        f.remove(feed, entry_id)
    out["remove"] = counting.n / len(victims)
    f.entries(feed)  # unlink
    size = sum(1 for _ in f.entries(feed))
    counting.n = 0
    sum(1 for _ in f.entries(feed))
    out["walk, per entry"] = counting.n / size
    return out


def run_rounds(
    make: Callable[[int], tuple[Any, Callable[[], None]]], n: int, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    results: dict[str, list[float]] = {}
    ops: dict[str, float] = {}
    for r in range(rounds):
        store, close = make(r)
        try:
            for name, value in bench_store(store, n, f"r{r}").items():
                results.setdefault(name, []).append(value)
            if r == 0:
                ops = operations_per_call(store, f"r{r}")
        finally:
            close()
    return {k: statistics.median(v) for k, v in results.items()}, ops


def embedded(r: int) -> tuple[Any, Callable[[], None]]:
    path = tempfile.mkdtemp(prefix="ringkv-bench-feeds-")
    store = ring.open(path)

    def close() -> None:
        store.close()
        shutil.rmtree(path, ignore_errors=True)

    return store, close


READY = re.compile(r"ringd (\S+) listening on (\S+)")


def start_local_cluster(work: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """Three ringd on port 0 (node1 founds, node2 and node3 seeded with it); returns their
    addresses."""
    procs: list[subprocess.Popen[bytes]] = []
    addresses: list[str] = []
    for i in range(3):
        name = f"node{i + 1}"
        cmd = [sys.executable, "-m", "ring.cli.ringd", "--name", name, "--listen", "127.0.0.1:0"]
        cmd += ["--data", str(work / name), "--n", "3", "--r", "2", "--w", "2"]
        cmd += ["--seeds", addresses[0]] if addresses else ["--new-cluster"]
        log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        match = READY.search(line)
        if not match:
            raise RuntimeError(f"{name} did not start: {line!r}; see {work / name}.log")
        addresses.append(match.group(2))
    deadline = time.monotonic() + 30
    with ring.connect(",".join(addresses)) as client:
        while True:
            try:
                members = client.status().get("members", [])
                if sum(1 for m in members if m.get("state") == "up") >= 3:
                    break
            except ring.RingError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the local cluster did not come up in 30 s")
            time.sleep(0.1)
    return ",".join(addresses), procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


RATIOS = [
    ("add / put", "add", "put", None),
    ("remove / put", "remove", "put", None),
    ("walk / get", "walk", "get", 0.5),
    ("walk / get_versioned", "walk", "get_versioned", None),
    ("walk (pages) / get", "walk (pages)", "get", None),
]


def report(title: str, n: int, rates: dict[str, float], ops: dict[str, float]) -> None:
    print(f"\n{title}: {n} entries\n")
    print(f"{'operation':<24}{'per second':>14}")
    for name, value in rates.items():
        print(f"{name:<24}{value:>14,.0f}")
    print(f"\n{'ratio':<24}{'value':>14}   target")
    for label, a, b, target in RATIOS:
        value = rates[a] / rates[b]
        mark = (
            ""
            if target is None
            else f"   >= {target}" + ("  ok" if value >= target else "  MISSED")
        )
        print(f"{label:<24}{value:>14.2f}{mark}")
    print(f"\n{'store operations per call':<32}{'':>6}   target")
    for name, value in ops.items():
        mark = (
            "   <= 5" + ("  ok" if value <= 5 else "  MISSED")
            if name in ("add", "append", "remove")
            else ""
        )
        print(f"{name:<32}{value:>6.2f}{mark}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nodes", help="also measure a running cluster through these nodes")
    ap.add_argument("--local-cluster", action="store_true", help="start a 3-node cluster here")
    ap.add_argument("--cluster-entries", type=int, default=2_000)
    args = ap.parse_args()

    rates, ops = run_rounds(embedded, args.entries, args.rounds)
    report("embedded (RocksDB)", args.entries, rates, ops)

    procs: list[subprocess.Popen[bytes]] = []
    work = Path(tempfile.mkdtemp(prefix="ringkv-bench-feeds-cluster-"))
    try:
        nodes = args.nodes
        if args.local_cluster and not nodes:
            nodes, procs = start_local_cluster(work)
        if nodes:

            def cluster(r: int) -> tuple[Any, Callable[[], None]]:
                client = ring.connect(nodes)
                return client, client.close

            rates, ops = run_rounds(cluster, args.cluster_entries, args.rounds)
            report(f"cluster ({nodes})", args.cluster_entries, rates, ops)
    finally:
        stop(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
