"""Multi-key calls against the same keys one call at a time, measured in the same run.

    python benchmarks/multikey.py [--keys 100] [--runs 20] [--value-bytes 100] [--json]
                                  [--ringd CMD]

For each path it times ``--keys`` sequential ``get`` calls against one ``get_many`` of the same
keys, and ``--keys`` sequential ``put`` calls against one ``put_many`` (same values, existing
keys: overwrites):

* **embedded** - ``ring.open`` on RocksDB in a temporary directory (each timing repeats the
  call 20 times: one call of 100 keys is too short to time alone);
* **cluster, ring.connect / ring.aio** - three ``ringd`` processes on 127.0.0.1 (node1 founds
  the cluster, N=3 R=2 W=2, the others join through it), started as ``benchmarks/cluster.py``
  does and stopped by their PIDs in a ``finally``; one client connected to node1, the default
  R and W.

Every run times both sides back to back, in alternating order, and gives one ratio
(sequential time / multi-key time); the first run of each path is a warm-up and is not
counted. Printed: the median ratio over ``--runs`` runs with its min-max spread, and the
median times. The machine may be shared with other work: compare the ratios, not the times.

Goal (issue 12): a 100-key ``get_many`` on a 3-node cluster >= 5x faster than 100 gets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from _procs import Child, ChildFailed, stop_all
from cluster import ringd_command, start_ringd, wait_members_up

import ring
import ring.aio

EMBEDDED_REPEAT = 20
GOAL = 5.0


@dataclass
class Result:
    path: str
    op: str
    runs: int
    sequential_ms: float  # median time of the sequential calls
    many_ms: float  # median time of the multi-key call
    ratio: float  # median of the per-run ratios
    ratio_min: float
    ratio_max: float


def summarize(path: str, op: str, pairs: list[tuple[float, float]]) -> Result:
    """``pairs``: (sequential s, many s) per run, the warm-up run first (dropped)."""
    counted = pairs[1:]
    ratios = [s / m for s, m in counted]
    return Result(
        path,
        op,
        len(counted),
        statistics.median(s for s, _ in counted) * 1e3,
        statistics.median(m for _, m in counted) * 1e3,
        statistics.median(ratios),
        min(ratios),
        max(ratios),
    )


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pair_of(run: int, sequential: Callable[[], object], many: Callable[[], object]) -> tuple:
    """Both sides of one run, the order alternating between runs."""
    if run % 2:
        m = timed(many)
        return timed(sequential), m
    s = timed(sequential)
    return s, timed(many)


async def atimed(fn: Callable[[], Awaitable[object]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return time.perf_counter() - t0


async def apair_of(
    run: int,
    sequential: Callable[[], Awaitable[object]],
    many: Callable[[], Awaitable[object]],
) -> tuple[float, float]:
    if run % 2:
        m = await atimed(many)
        return await atimed(sequential), m
    s = await atimed(sequential)
    return s, await atimed(many)


def bench_embedded(keys: list[bytes], value: bytes, runs: int, work: Path) -> list[Result]:
    items = [(k, value) for k in keys]
    with ring.open(str(work / "embedded")) as db:
        db.put_many(items)

        def gets() -> None:
            for _ in range(EMBEDDED_REPEAT):
                for k in keys:
                    db.get(k)

        def get_many() -> None:
            for _ in range(EMBEDDED_REPEAT):
                db.get_many(keys)

        def puts() -> None:
            for _ in range(EMBEDDED_REPEAT):
                for k, v in items:
                    db.put(k, v)

        def put_many() -> None:
            for _ in range(EMBEDDED_REPEAT):
                db.put_many(items)

        get_pairs = [pair_of(i, gets, get_many) for i in range(runs + 1)]
        put_pairs = [pair_of(i, puts, put_many) for i in range(runs + 1)]
    return [
        summarize("embedded", "get", get_pairs),
        summarize("embedded", "put", put_pairs),
    ]


def bench_sync(address: str, keys: list[bytes], value: bytes, runs: int) -> list[Result]:
    items = [(k, value) for k in keys]
    with ring.connect(address) as db:
        db.put_many(items)
        get_pairs = [
            pair_of(i, lambda: [db.get(k) for k in keys], lambda: db.get_many(keys))
            for i in range(runs + 1)
        ]
        put_pairs = [
            pair_of(i, lambda: [db.put(k, v) for k, v in items], lambda: db.put_many(items))
            for i in range(runs + 1)
        ]
    return [
        summarize("3 nodes, ring.connect", "get", get_pairs),
        summarize("3 nodes, ring.connect", "put", put_pairs),
    ]


async def bench_aio(address: str, keys: list[bytes], value: bytes, runs: int) -> list[Result]:
    items = [(k, value) for k in keys]
    async with await ring.aio.connect(address) as db:

        async def gets() -> None:
            for k in keys:
                await db.get(k)

        async def puts() -> None:
            for k, v in items:
                await db.put(k, v)

        async def get_many() -> None:
            await db.get_many(keys)

        async def put_many() -> None:
            await db.put_many(items)

        await put_many()
        get_pairs = [await apair_of(i, gets, get_many) for i in range(runs + 1)]
        put_pairs = [await apair_of(i, puts, put_many) for i in range(runs + 1)]
    return [
        summarize("3 nodes, ring.aio", "get", get_pairs),
        summarize("3 nodes, ring.aio", "put", put_pairs),
    ]


def bench_cluster(
    args: argparse.Namespace, keys: list[bytes], value: bytes, work: Path
) -> list[Result]:
    children: list[Child] = []
    try:
        nodes = start_ringd(ringd_command(args.ringd), work, children)
        wait_members_up(nodes)
        address = nodes[0].address
        results = bench_sync(address, keys, value, args.runs)
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        results += runner(bench_aio(address, keys, value, args.runs))
        return results
    finally:
        stop_all(children)


def table(results: list[Result], keys: int) -> str:
    lines = [
        f"| path | {keys} sequential calls | one multi-key call | speed-up (median) | "
        "min-max | runs |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        many = "get_many" if r.op == "get" else "put_many"
        lines.append(
            f"| {r.path} | {r.op} {r.sequential_ms:.2f} ms | {many} {r.many_ms:.2f} ms | "
            f"{r.ratio:.1f}x | {r.ratio_min:.1f}-{r.ratio_max:.1f}x | {r.runs} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=100, help="keys per call (default 100)")
    p.add_argument("--runs", type=int, default=20, help="counted runs per path (default 20)")
    p.add_argument("--value-bytes", type=int, default=100)
    p.add_argument("--ringd", default=None, help="command that starts ringd (default: on PATH)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--no-cluster", action="store_true", help="the embedded store only")
    args = p.parse_args(argv)
    if args.keys < 1 or args.runs < 1:
        p.error("--keys and --runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keys = [f"mk:{i:06d}".encode() for i in range(args.keys)]
    value = b"v" * args.value_bytes
    work = Path(tempfile.mkdtemp(prefix="ringkv-bench-multikey-"))
    try:
        results = bench_embedded(keys, value, args.runs, work)
        if not args.no_cluster:
            results += bench_cluster(args, keys, value, work)
    except ChildFailed as exc:
        print(f"benchmark aborted: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return 0
    print(table(results, args.keys))
    print(
        f"\nSpeed-up = time of {args.keys} sequential calls / time of one multi-key call of "
        f"the same keys, per run (both timed back to back, order alternating; warm-up run "
        f"dropped); {args.value_bytes}-byte values; embedded timings repeat each side "
        f"{EMBEDDED_REPEAT} times."
    )
    for r in results:
        if r.path.startswith("3 nodes") and r.op == "get":
            met = "met" if r.ratio >= GOAL else "NOT met"
            print(f"goal: {r.path} get_many >= {GOAL:g}x sequential gets: {r.ratio:.1f}x, {met}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
