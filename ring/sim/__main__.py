"""``python -m ring.sim``: run many seeds, print a summary, exit 1 on any violation.

    python -m ring.sim --nodes 5 --seeds 200 [--seed-start S] [--n 3 --r 2 --w 2] [--ops N]

Environment: ``RINGKV_SIM_SEED=<n>`` replays that one seed (with ``-v``, every violation of it);
``RINGKV_SIM_RUNS=<k>`` overrides ``--seeds``. Every violation prints ``RINGKV_SIM_SEED=<n>`` and
the command that replays it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import TextIO

from ring.sim.runner import RunResult, SimConfig, run_seed

# Counters that are faults the nemesis injected (the others are their consequences).
FAULTS = (
    "lost",
    "duplicated",
    "delayed",
    "partition",
    "partition_one_way",
    "crash",
    "stop",
    "wipe",
    "power_loss",
    "full_restart",
    "skew",
)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ring.sim", description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--seeds", type=int, default=200, help="how many seeds (RINGKV_SIM_RUNS)")
    p.add_argument("--seed-start", type=int, default=0)
    p.add_argument("--n", type=int, default=3)
    p.add_argument("--r", type=int, default=2)
    p.add_argument("--w", type=int, default=2)
    p.add_argument("--ops", type=int, default=200, help="client operations per run")
    p.add_argument("--keys", type=int, default=4, help="keys the clients write and read")
    p.add_argument("--no-faults", action="store_true", help="a perfect network, no crashes")
    p.add_argument("--kv679", action="store_true", help="restarts lose their disk (W-1 per run)")
    p.add_argument("--power", action="store_true", help="crashes are power losses (W-1 per run)")
    p.add_argument("--blind", action="store_true", help="writers never pass a context")
    p.add_argument(
        "--no-changes", action="store_true", help="no joins, leaves or removes during the runs"
    )
    p.add_argument(
        "--min-changes", type=int, default=0, help="at least this many ring changes per run"
    )
    p.add_argument("--spares", type=int, default=1, help="nodes that may join during a run")
    sync = p.add_mutually_exclusive_group()
    sync.add_argument(
        "--sync",
        dest="sync",
        action="store_const",
        const=True,
        default=None,
        help="every node fsyncs every batch (default: drawn per seed)",
    )
    sync.add_argument(
        "--no-sync",
        dest="sync",
        action="store_const",
        const=False,
        help="no node fsyncs (power losses then lose acknowledged writes)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="one line per run")
    p.add_argument("--max-shown", type=int, default=5, help="violations shown per seed")
    return p.parse_args(argv)


def seeds_of(args: argparse.Namespace, env: dict[str, str]) -> list[int]:
    if env.get("RINGKV_SIM_SEED"):
        return [int(env["RINGKV_SIM_SEED"])]
    count = int(env["RINGKV_SIM_RUNS"]) if env.get("RINGKV_SIM_RUNS") else args.seeds
    return list(range(args.seed_start, args.seed_start + count))


def report(result: RunResult, config: SimConfig, shown: int, out: TextIO) -> None:
    print(f"\nRINGKV_SIM_SEED={result.seed}: {len(result.violations)} violation(s)", file=out)
    for v in result.violations[:shown]:
        print(f"  {v}", file=out)
    if len(result.violations) > shown:
        print(f"  ... and {len(result.violations) - shown} more", file=out)
    print(f"  replay: RINGKV_SIM_SEED={result.seed} {config.command()}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    config = SimConfig(
        nodes=args.nodes,
        n=args.n,
        r=args.r,
        w=args.w,
        ops=args.ops,
        keys=args.keys,
        faults=not args.no_faults,
        kv679=args.kv679,
        power=args.power,
        blind=args.blind,
        sync=args.sync,
        changes=not args.no_changes,
        min_changes=args.min_changes,
        spares=args.spares,
    )
    seeds = seeds_of(args, dict(os.environ))
    totals: dict[str, int] = {}
    runs = ops = acked = events = virtual = 0
    failed: list[int] = []
    started, cpu = time.perf_counter(), time.process_time()
    for seed in seeds:
        try:
            result = run_seed(seed, config)
        except Exception as exc:  # a crash of the run is a finding like any other: name the seed
            failed.append(seed)
            print(f"\nRINGKV_SIM_SEED={seed}: the run raised", file=sys.stdout)
            print("".join(traceback.format_exception(exc)), file=sys.stdout)
            print(f"  replay: RINGKV_SIM_SEED={seed} {config.command()}", file=sys.stdout)
            continue
        result.history = None  # free it: a long soak keeps only the numbers
        runs += 1
        ops += result.ops
        acked += result.acked
        events += result.events
        virtual += result.virtual_ms
        for k, v in result.counters.items():
            totals[k] = totals.get(k, 0) + v
        if args.verbose:
            print(
                f"seed {seed}: {result.ops} ops ({result.acked} acked writes), "
                f"{result.virtual_ms} virtual ms, {len(result.violations)} violations, "
                f"trace {result.trace_hash[:16]}"
            )
        if result.violations:
            failed.append(seed)
            report(
                result,
                config,
                len(result.violations) if args.verbose else args.max_shown,
                sys.stdout,
            )
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    faults = ", ".join(f"{k} {totals[k]}" for k in FAULTS if totals.get(k))
    other = ", ".join(f"{k} {v}" for k, v in sorted(totals.items()) if k not in FAULTS)
    print(
        f"\n{runs} runs ({config.nodes} nodes, N={config.n} R={config.r} W={config.w}) in "
        f"{elapsed:.1f} s, {cpu:.1f} s of CPU ({runs / cpu if cpu else 0:.1f} seeds per CPU "
        f"second): {ops} operations, {acked} acknowledged writes, {events} events, "
        f"{virtual / 1000:.0f} virtual s"
    )
    print(f"faults injected: {faults or 'none'}")
    print(f"consequences: {other or 'none'}")
    print(f"violations: {len(failed)} seed(s)" + (f": {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
