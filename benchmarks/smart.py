"""Smart against plain clients on a 5-node ringkv cluster, measured in the same run.

    python benchmarks/smart.py [--nodes 5] [--seconds 3] [--inflight 64] [--rounds 3]
                               [--keys 10000] [--value-bytes 100]

Starts ``--nodes`` ``ringd`` processes on 127.0.0.1 (N=3 R=2 W=2; node2.. seeded with node1),
waits until every node sees every node up and the ring settled, then drives them with
``ring.aio`` clients (``benchmarks/_load.py``: three connections, each listing every node
rotated, a put phase then a get phase of ``--seconds`` each after a warm-up) twice per round:
``smart=True``, each request sent to a replica of its key, and ``smart=False``, each sent to the
client's connected node, which forwards a write it is no replica of and reads from three remote
replicas. Each round runs both at ``--inflight`` requests in flight (throughput) and at one
(p50 latency), alternating which goes first. Prints per round and the median over rounds, with
the smart/plain ratio of each figure and the CPU microseconds the nodes spent per operation
(``/proc``). The nodes' ``forwards`` and ``reads_not_replica`` counters are shown as a check
that the smart client saved the hop. Every process is stopped by its PID in a ``finally``.

On N nodes a key has N-3 non-replicas, so a plain client's connected node is no replica of
2/5 of the keys here; with 3 nodes (N=3) the two clients send the same requests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import uvloop
from _load import LoadConfig, run_load
from _procs import Child, Meter, stop_all
from _report import CLIENT, Row, row_of
from _wire import call
from cluster import ringd_command, start_ringd, wait_members_up

HOPS = ("forwards", "reads_not_replica")


def hops(nodes: list[Child]) -> dict[str, int]:
    out = dict.fromkeys(HOPS, 0)
    for node in nodes:
        error, status = call(node.address, "status", {})
        counters = status.get("counters", {}) if error is None else {}
        for k in HOPS:
            out[k] += int(counters.get(k, 0))
    return out


def measure(nodes: list[Child], cfg: LoadConfig, label: str) -> tuple[list[Row], dict[str, int]]:
    entry = [n.address for n in nodes]
    before = hops(nodes)
    meter = Meter({**{n.name: n.pid for n in nodes}, CLIENT: os.getpid()})
    results = uvloop.run(run_load(entry, cfg, meter))
    after = hops(nodes)
    rows = [row_of(label, r, meter.used.get(r.op)) for r in results]
    return rows, {k: after[k] - before[k] for k in HOPS}


def line(row: Row, moved: dict[str, int] | None = None) -> str:
    text = (
        f"  {row.system:<14} {row.op:<4} {row.ops_per_s:>9,.0f} ops/s  p50 {row.p50_ms:6.3f} ms"
        f"  p99 {row.p99_ms:6.3f} ms  nodes {row.server_cpu_us:6.1f} us CPU/op"
    )
    if moved is not None:
        text += f"  forwards +{moved['forwards']} reads_not_replica +{moved['reads_not_replica']}"
    return text + "".join(f"  [{n}]" for n in row.notes)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--nodes", type=int, default=5, help="ringd processes (5)")
    p.add_argument("--seconds", type=float, default=3.0, help="measured time per phase (3)")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured start of a phase (0.5)")
    p.add_argument("--inflight", type=int, default=64, help="requests in flight (64)")
    p.add_argument("--keys", type=int, default=10_000, help="key space (10000)")
    p.add_argument("--value-bytes", type=int, default=100, help="value size (100)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of both clients (3)")
    p.add_argument("--ringd", metavar="CMD", help="the ringd command (default: ringd on PATH)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = LoadConfig(
        inflight=args.inflight,
        connections=3,
        keys=args.keys,
        value_bytes=args.value_bytes,
        seconds=args.seconds,
        warmup_s=args.warmup,
        client="aio",
    )
    loads = {"": base, " 1-in-flight": replace(base, inflight=1, connections=1)}
    print(
        f"{args.nodes} ringd nodes, N=3 R=2 W=2, ring.aio clients; {args.rounds} round(s) of "
        f"{args.seconds:g} s per phase; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    children: list[Child] = []
    figures: dict[tuple[str, str, str], list[Row]] = {}
    with tempfile.TemporaryDirectory(prefix="ringkv-smart-") as tmp:
        try:
            nodes = start_ringd(ringd_command(args.ringd), Path(tmp), children, args.nodes)
            wait_members_up(nodes)
            for rnd in range(args.rounds):
                print(f"round {rnd + 1}")
                order = [True, False] if rnd % 2 == 0 else [False, True]
                for suffix, cfg in loads.items():
                    for smart in order:
                        label = ("smart" if smart else "plain") + suffix
                        rows, moved = measure(nodes, replace(cfg, smart=smart), label)
                        for row in rows:
                            print(line(row, moved if row.op == "get" else None))
                            figures.setdefault((suffix, row.op, label), []).append(row)
        finally:
            stop_all(children)
    print(f"median of {args.rounds} round(s); ratio = smart / plain (same run)")
    for suffix in loads:
        for op in ("put", "get"):
            smart = figures[(suffix, op, "smart" + suffix)]
            plain = figures[(suffix, op, "plain" + suffix)]

            def med(rows: list[Row], attr: str) -> float:
                return statistics.median(getattr(r, attr) for r in rows)

            rate = [s.ops_per_s / p.ops_per_s for s, p in zip(smart, plain)]
            p50 = [s.p50_ms / p.p50_ms for s, p in zip(smart, plain)]
            print(
                f"  {op}{suffix or f' {args.inflight} in flight'}: "
                f"smart {med(smart, 'ops_per_s'):,.0f} ops/s p50 {med(smart, 'p50_ms'):.3f} ms, "
                f"plain {med(plain, 'ops_per_s'):,.0f} ops/s p50 {med(plain, 'p50_ms'):.3f} ms; "
                f"rate x{statistics.median(rate):.2f} (range {min(rate):.2f}-{max(rate):.2f}), "
                f"p50 x{statistics.median(p50):.2f} (range {min(p50):.2f}-{max(p50):.2f}), "
                f"nodes' CPU/op {med(smart, 'server_cpu_us'):.0f} vs "
                f"{med(plain, 'server_cpu_us'):.0f} us"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
