"""YCSB core workloads A-F on ringkv (embedded and a 3-node cluster), raw rocksdict and redis.

    python benchmarks/ycsb.py [--records 100000] [--ops 10000] [--latency-ops 2000]
                              [--seconds S] [--workloads ABCDEF] [--rounds 3] [--inflight 64]
                              [--targets embedded,raw,cluster,echo,redis] [--quick] [--json]
    python benchmarks/ycsb.py --selftest

The workloads of Cooper et al. (SoCC 2010), with YCSB's own generators (``_ycsbgen.py``):

    A  update heavy       50% read, 50% update              scrambled zipfian (0.99)
    B  read mostly        95% read,  5% update              scrambled zipfian
    C  read only         100% read                          scrambled zipfian
    D  read latest        95% read,  5% insert              latest (zipfian toward new inserts)
    E  short ranges       95% scan (1-100 records, uniform), 5% insert; scan start zipfian
    F  read-modify-write  50% read, 50% read-modify-write   scrambled zipfian

Records are YCSB's 10 fields of 100 bytes stored as one 1 KB value (random, incompressible
bytes); an update rewrites the whole value (YCSB's default updates one field - we have no
fields). Keys are ``"user" + fnvhash64(insert number)``, so inserts land all over the key space
and a scan starts at a zipfian-chosen existing key. The workloads run in YCSB's recommended
order (A B C F D E) after one load phase, timed and reported apart; D and E insert new records.
Every operation sequence is generated before it is run, outside any measurement, and every
target of one comparison runs the same sequence in a round. With requests in flight, an
operation on a key whose insert is still unanswered waits for that answer first (YCSB reads
only acknowledged inserts), so a read that finds nothing is an error, and is reported.

Targets (``_ycsbrun.py``), each started fresh in every round, in turn:

* ``embedded`` - ``ring.open(dir)`` (RocksDB), in process, one thread. Read = ``get``, update
  and insert = ``put`` (no context), read-modify-write = ``get_versioned`` then ``put`` with its
  context (what a correct ringkv RMW does), scan = ``scan(start=key, limit=n)``.
* ``raw`` - the same-run baseline of ``embedded``: rocksdict with the same options doing the same
  operations (get; put; get then put; an iterator from the key for n items).
* ``cluster`` - three ``ringd`` on 127.0.0.1 (N=3 R=2 W=2), driven through ``ring.aio`` on uvloop
  by ``--inflight`` tasks over three clients (one per node), then again one request at a time
  for latency. Scans are the client's ``scan(start=key, limit=n)``; RMW as embedded.
* ``echo`` - the in-memory replicated echo of ``_echo.py`` (the ceiling for a Python ring here),
  driven by the same ``ring.aio`` code; it has no scan and no versions, so it runs A B C D F,
  with RMW as ``get`` then ``put``.
* ``redis`` - ``redis-server`` without persistence, through redis-py's asyncio client (pure-Python
  parser) by the same driver, one connection per in-flight request, nothing pipelined. Read =
  GET, update = SET, RMW = GET then SET (no WATCH), insert = SET + ZADD of the key to an index
  set (one pipelined round trip), scan = ZRANGEBYLEX from the key on that index (LIMIT n) then
  MGET of those keys (two round trips; YCSB's redis binding also keeps such an index). Skipped
  with a note when redis-server or the ``redis`` package (``pip install -e '.[bench]'``) is
  missing.

Honesty: ratios are taken within a round (ring / raw; cluster / redis; cluster / echo) and
printed as their median and range over the rounds; every figure is the median over
``--rounds`` with the range of ops/s beside it. The first ``--warmup`` share of each phase's
operations is run but not measured. Latency is one operation's, as the client saw it, including
client-side queueing; p99.9 is left out ("-") for fewer than 1000 samples. Ratios of ops/s
are printed on a workload's "all" row only (the targets run the same sequence, so each
operation's share is the same); ratios of p50 on every row (above 1: slower). ``--seconds S``
also ends each measured window after S seconds (the warm-up stays a share of ``--ops``).

For the networked targets two more columns say where the time went: ``client``, the share of
one core this process (the load generator) used over the measured window - near 100% means
the client, not the server, set the pace - and ``srv us/op``, the CPU the server processes
spent per operation, their background work included (RocksDB compaction after the load,
gossip; from /proc, in 10 ms ticks, so left out below half a second of it). The
load generator shares the 2 cores with the servers, and other work may share the machine: the
figures are noisy; compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _procs import ChildFailed
from _ycsbgen import ORDER, RECORD_BYTES, WORKLOADS, Keyspace, selftest
from _ycsbrun import BENCHES, Plan, TargetRun, redis_missing

TARGETS = ("embedded", "raw", "cluster", "echo", "redis")


def say(args: argparse.Namespace, text: str) -> None:
    print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


# --- the plan of one round ---------------------------------------------------------------------


def make_plan(args: argparse.Namespace, seed: int, modes: list[tuple[str, int]]) -> Plan:
    rng = random.Random(seed)
    values = [rng.randbytes(RECORD_BYTES) for _ in range(64)]
    keyspace = Keyspace(args.records, values, rng)
    load = keyspace.load()
    phases = []
    for name in ORDER:
        if name in args.workloads:
            for mode, count in modes:
                warmup = int(count * args.warmup)
                ops = keyspace.plan(WORKLOADS[name], warmup + count, args.inflight)
                phases.append((name, mode, ops, warmup))
    return Plan(load, phases)


# --- summaries -----------------------------------------------------------------------------------

Key = tuple[str, str, str, str]  # target, mode, workload, op kind ("all" for the whole mix)


def figures_by_key(runs: list[TargetRun]) -> dict[Key, dict[str, float]]:
    out: dict[Key, dict[str, float]] = {}
    for run in runs:
        for phase in run.phases:
            for kind, figs in phase.summary().items():
                out[(run.target, phase.mode, phase.workload, kind)] = figs
    return out


def spread(values: list[float]) -> dict[str, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return {"median": math.nan, "min": math.nan, "max": math.nan}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# Each target's same-run references.
REFERENCES = {"embedded": ["raw"], "cluster": ["redis", "echo"]}


def summarize(rounds: list[list[TargetRun]]) -> dict[str, Any]:
    """Medians and ranges over rounds of every figure, and of every same-round ratio."""
    per_round = [figures_by_key(runs) for runs in rounds]
    keys: list[Key] = []
    for figs in per_round:
        keys += [k for k in figs if k not in keys]
    rows = []
    for key in keys:
        target, mode, workload, kind = key
        got = [figs[key] for figs in per_round if key in figs]
        row: dict[str, Any] = {
            "target": target,
            "mode": mode,
            "workload": workload,
            "op": kind,
            "rounds": len(got),
        }
        for name in (
            "ops_per_s",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "client_cores",
            "server_us_per_op",
        ):
            row[name] = spread([g[name] for g in got])
        row["count"] = statistics.median(g["count"] for g in got)
        # Ratios within each round: ops/s (>1: faster than the reference) and p50 (>1: slower).
        row["ratios"] = {}
        for ref in REFERENCES.get(target, []):
            pairs = [
                (figs[key], figs[(ref, mode, workload, kind)])
                for figs in per_round
                if key in figs and (ref, mode, workload, kind) in figs
            ]
            if pairs:
                row["ratios"][ref] = {
                    "ops_per_s": spread([a["ops_per_s"] / b["ops_per_s"] for a, b in pairs]),
                    "p50": spread([a["p50_ms"] / b["p50_ms"] for a, b in pairs]),
                }
        rows.append(row)
    loads: dict[str, dict[str, Any]] = {}
    for runs in rounds:
        for run in runs:
            entry = loads.setdefault(run.target, {"records": run.load_records, "rates": []})
            entry["rates"].append(run.load_records / run.load_s if run.load_s else math.nan)
    load = {
        t: {"records": e["records"], "records_per_s": spread(e["rates"])} for t, e in loads.items()
    }
    return {"rows": rows, "load": load}


def _lat(v: float, unit: str) -> str:
    if math.isnan(v):
        return "-"
    if unit == "us":
        v *= 1000
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _ratio(s: dict[str, float] | None, rounds: int) -> str:
    if not s or math.isnan(s["median"]):
        return ""
    if rounds == 1:
        return f"{s['median']:.2f}x"
    return f"{s['median']:.2f}x ({s['min']:.2f}-{s['max']:.2f})"


TITLES = {
    "embedded": "ring.open (RocksDB), in process",
    "raw": "raw rocksdict, same options and operations",
    "cluster": "3 ringd, N=3 R=2 W=2, ring.aio on uvloop",
    "echo": "replicated echo (_echo.py), ring.aio on uvloop",
    "redis": "redis-server (no persistence), redis-py asyncio on uvloop",
}


def tables(summary: dict[str, Any]) -> str:
    """Per target and mode: each workload's whole mix ("all"), then each operation. A ratio of
    ops/s is printed on the "all" rows only: within a round every target runs the same
    sequence, so an operation's share of the ops/s is the same everywhere."""
    out = []
    rows = summary["rows"]
    for target in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == target]
        refs = [ref for ref in REFERENCES.get(target, []) if any(r["target"] == ref for r in rows)]
        unit = "us" if target in ("embedded", "raw") else "ms"
        for mode in dict.fromkeys(r["mode"] for r in mine):
            out.append(f"\n{target}: {TITLES[target]}; {mode}")
            head = f"{'wl':<3}{'op':<7}{'ops/s':>9}{'(range)':>19}{'p50 ' + unit:>8}"
            head += f"{'p99 ' + unit:>8}{'p99.9 ' + unit:>9}"
            if unit == "ms":
                head += f"{'client':>8}{'srv us/op':>10}"
            for ref in refs:
                head += f"{'ops/s / ' + ref:>22}{'p50 / ' + ref:>22}"
            out += [head, "-" * len(head)]
            for r in (r for r in mine if r["mode"] == mode):
                ops = r["ops_per_s"]
                span = f"({ops['min']:,.0f}-{ops['max']:,.0f})" if r["rounds"] > 1 else ""
                op = r["op"]
                line = f"{r['workload']:<3}{op:<7}{ops['median']:>9,.0f}{span:>19}"
                for name in ("p50_ms", "p99_ms"):
                    line += f"{_lat(r[name]['median'], unit):>8}"
                line += f"{_lat(r['p999_ms']['median'], unit):>9}"
                if unit == "ms":
                    cores, server = r["client_cores"]["median"], r["server_us_per_op"]["median"]
                    shown = op == "all" and not math.isnan(cores)
                    srv = "-" if math.isnan(server) else f"{server:.1f}"
                    line += f"{cores:>8.0%}{srv:>10}" if shown else " " * 18
                for ref in refs:
                    ratio = r["ratios"].get(ref, {})
                    rate = _ratio(ratio.get("ops_per_s"), r["rounds"]) if op == "all" else ""
                    line += f"{rate:>22}{_ratio(ratio.get('p50'), r['rounds']):>22}"
                out.append(line)
    out.append("\nload phase (records/s, median and range over rounds):")
    for target, load in summary["load"].items():
        s = load["records_per_s"]
        out.append(
            f"  {target:<9}{load['records']:>9,} records  {s['median']:>9,.0f}/s "
            f"({s['min']:,.0f}-{s['max']:,.0f})"
        )
    return "\n".join(out)


def finite(obj: Any) -> Any:
    """``obj`` with NaN as null (JSON has no NaN) and tuples as lists."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg(),
    }
    versions = {}
    for name in ("rocksdict", "uvloop", "msgpack", "redis"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[name] = version(name)
    server = shutil.which("redis-server")
    if server:
        with contextlib.suppress(Exception):
            text = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
            versions["redis-server"] = text.split("v=")[1].split()[0]
    info["versions"] = versions
    return info


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--records", type=int, default=100_000, help="records loaded (100000)")
    p.add_argument("--ops", type=int, default=10_000, help="measured operations per workload")
    p.add_argument("--latency-ops", type=int, default=2_000, help="... of the 1-in-flight runs")
    p.add_argument("--seconds", type=float, help="also end each measured window after S seconds")
    p.add_argument("--warmup", type=float, default=0.1, help="unmeasured share added (0.1)")
    p.add_argument("--workloads", default="ABCDEF", help="any of ABCDEF (all)")
    p.add_argument(
        "--targets", default=",".join(TARGETS), help="comma-separated, of " + ", ".join(TARGETS)
    )
    p.add_argument("--inflight", type=int, default=64, help="requests in flight (64)")
    p.add_argument("--rounds", type=int, default=3, help="fresh repeats; medians and ranges (3)")
    p.add_argument("--seed", type=int, default=2010, help="of the operation sequences")
    p.add_argument("--quick", action="store_true", help="a smoke run: small sizes, one round")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the tables")
    p.add_argument("--selftest", action="store_true", help="check the generators and exit")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    args = p.parse_args(argv)
    if args.quick:
        args.records, args.ops, args.latency_ops, args.rounds = 5_000, 2_000, 300, 1
    args.workloads = args.workloads.upper()
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if set(args.workloads) - set(WORKLOADS) or not args.workloads:
        p.error("--workloads takes letters from ABCDEF")
    if set(args.targets) - set(TARGETS):
        p.error(f"--targets takes {', '.join(TARGETS)}")
    if min(args.records, args.ops, args.latency_ops, args.inflight, args.rounds) < 1:
        p.error("--records, --ops, --latency-ops, --inflight and --rounds must be positive")
    if args.records < 2 or not 0 <= args.warmup < 10:
        p.error("--records must be at least 2 and --warmup a share from 0 to 10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.selftest:
        return 1 if selftest() else 0
    notes: list[str] = []
    targets = list(args.targets)
    missing = redis_missing()
    if "redis" in targets and missing:
        targets.remove("redis")
        notes.append(missing)
    if "echo" in targets and "E" in args.workloads:
        notes.append("the echo runs no workload E: it has no scan")
    info = machine()
    say(
        args,
        f"machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}, "
        f"load average {' '.join(f'{x:.2f}' for x in info['loadavg_at_start'])}",
    )
    work = Path(tempfile.mkdtemp(prefix="ringkv-bench-ycsb-"))
    rounds: list[list[TargetRun]] = []
    failed = False
    try:
        for i in range(args.rounds):
            seed = args.seed + i
            embedded_plan = make_plan(args, seed, [("1 thread", args.ops)])
            net_plan = make_plan(
                args,
                seed,
                [(f"{args.inflight} in flight", args.ops), ("1 in flight", args.latency_ops)],
            )
            runs = []
            for target in targets:
                plan = embedded_plan if target in ("embedded", "raw") else net_plan
                say(args, f"round {i + 1}/{args.rounds}: {target} ...")
                t0 = time.monotonic()
                runs.append(BENCHES[target](plan, args, work / f"{target}-{i}"))
                say(args, f"  {time.monotonic() - t0:.0f} s")
            rounds.append(runs)
    except ChildFailed as exc:
        failed = True
        print(f"benchmark aborted: {exc}\n(logs kept in {work})", file=sys.stderr)
    finally:
        if not (failed or args.keep):
            shutil.rmtree(work, ignore_errors=True)
    if not rounds:
        return 1
    notes += phase_notes(rounds)
    summary = summarize(rounds)
    config = {k: v for k, v in vars(args).items() if k not in ("json", "selftest", "keep")}
    config["targets"] = targets
    if args.json:
        doc = {"machine": info, "config": config, "notes": notes, **summary}
        print(json.dumps(finite(doc)))
    else:
        report(args, info, summary, notes, len(rounds))
    if args.keep:
        say(args, f"work directory: {work}")
    return 1 if failed else 0


def phase_notes(rounds: list[list[TargetRun]]) -> list[str]:
    """Errors, empty reads, waits and cut-short windows, per phase, with the count per round."""
    counts: dict[tuple[str, str], list[int]] = {}
    for runs in rounds:
        for run in runs:
            for ph in run.phases:
                where = f"{run.target} {ph.workload} {ph.mode}"
                for what, n in (
                    ("errors (first: {})", ph.errors),
                    (
                        "reads found no record that was loaded or whose insert was answered",
                        ph.misses,
                    ),
                    ("operations waited for the answer to their key's insert first", ph.stalls),
                    ("times --seconds ended the window before the last operation", ph.cut_short),
                ):
                    if n:
                        what = what.format(ph.first_error) if ph.errors else what
                        counts.setdefault((where, what), []).append(int(n))
    return [
        f"{where}: {', '.join(map(str, ns))} {what} (per round that had any)"
        for (where, what), ns in counts.items()
    ]


def report(
    args: argparse.Namespace,
    info: dict[str, Any],
    summary: dict[str, Any],
    notes: list[str],
    rounds: int,
) -> None:
    v = info["versions"]
    print(
        f"\nYCSB core workloads; {args.records:,} records of 1 KB; {args.ops:,} measured "
        f"operations per workload ({args.latency_ops:,} at 1 in flight) after "
        f"{args.warmup:.0%} more unmeasured; median of {rounds} round(s), ops/s range beside.\n"
        f"machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}, "
        f"rocksdict {v.get('rocksdict', '?')}, uvloop {v.get('uvloop', '?')}, redis-server "
        f"{v.get('redis-server', '-')}, redis-py {v.get('redis', '-')}; load average "
        f"{info['loadavg_at_start'][0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
        "(shared and noisy: compare ratios from the same round)."
    )
    print(tables(summary))
    for note in notes:
        print(f"  note: {note}")


if __name__ == "__main__":
    sys.exit(main())
