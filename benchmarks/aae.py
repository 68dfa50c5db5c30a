"""Anti-entropy on real ``ringd`` clusters: wiped-replica rebuild, its cost, idle CPU, save/load.

    python benchmarks/aae.py [--quick] [--json] [--keys 100000] [--interval-s 2]
                             [--idle-keys 10000] [--idle-s 20] [--inflight 64] [--value-bytes 100]

Three ``ringd`` processes on 127.0.0.1 (N=3 R=2 W=2, node1 founds, the others seeded with it),
each figure beside a baseline or bound measured or fixed in the same run:

a. **rebuild**: ``--keys`` keys written (pipelined puts through every node) until every node
   holds all of them; node3 is killed (SIGKILL), its data directory removed, and it is started
   again with the same name, port and seeds under ``--aae-interval-s S``. With no request at
   all, the time until node3 holds as many records as a healthy replica, beside the bound
   3·S + 30 s. Completion is watched cheaply (the members' ``aae.keys_repaired`` counters, every
   0.1 s) and then confirmed by counting node3's records with the ``records`` op;
b. **puts during a rebuild**: the cluster's put rate (the closed-loop load of
   ``benchmarks/_load.py``, ``--inflight`` puts in flight through node1 and node2, overwriting
   the same keys) over a window as long as the rebuild in (a), first on the healthy cluster,
   then from node3's restart after a second wipe, as a ratio;
c. **idle CPU**: a cluster holding ``--idle-keys`` keys, nothing changing, ``--idle-s`` seconds
   of each ringd's CPU (``/proc/PID/stat`` utime + stime) with S = 2, beside the same with the
   default S = 60 (anti-entropy idle): % of a core per node, goal ≤ 10 %;
d. **save / load**: ``ringctl --nodes ... save FILE`` of the cluster of (a) and ``ringctl
   --nodes ... load FILE`` into a fresh cluster, in records/s, beside ``ringctl --data DIR load``
   and ``save`` of the same dump on an embedded directory.

``--quick`` runs small sizes (a smoke run, a minute or so); ``--json`` prints one JSON object
with every figure instead of the table. Every process started is stopped by its PID in a
``finally`` (SIGTERM, then SIGKILL after a deadline). The machine is shared and noisy: compare
the ratios of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import uvloop
from _load import LoadConfig, Phase, PhaseResult, RawConnection, key_names, request_tails, run_phase
from _procs import Child, ChildFailed, spawn, stop_all, usage, wait_ready
from _wire import call, parse_address
from cluster import RINGD_READY, members_up, ringd_command

REBUILD_SLACK_S = 30.0  # the bound is 3·S + this
IDLE_BASELINE_S = 60.0  # ringd's default --aae-interval-s
CPU_GOAL_PCT = 10.0
RECORDS_PAGE = 4 * 1024 * 1024


# --- a cluster of ringd processes ----------------------------------------------------------------


@dataclass
class Ringd:
    """Three (or more) ringd nodes under ``work``; node1 founds, the others are seeded with it.
    A node is restarted on its port with the same seeds; every process is stopped by PID."""

    work: Path
    extra: list[str] = field(default_factory=list)
    ringd: list[str] = field(default_factory=list)
    nodes: dict[str, Child] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)  # everything ever started, for stop_all

    def start(self, count: int = 3) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        for i in range(1, count + 1):
            self._spawn(f"node{i}", "127.0.0.1:0")

    def _spawn(self, name: str, listen: str) -> None:
        seeds = [c.address for n, c in sorted(self.nodes.items()) if n != name and c.address]
        argv = [*self.ringd, "--name", name, "--listen", listen]
        argv += ["--data", str(self.work / f"{name}-data"), "--n", "3", "--r", "2", "--w", "2"]
        argv += self.extra
        argv += ["--seeds", ",".join(seeds)] if seeds else []
        argv += ["--new-cluster"] if name == "node1" else []
        child = spawn(f"{name}-{len(self.children)}", argv, self.work)
        self.children.append(child)
        child.address = wait_ready(child, RINGD_READY).group(2)
        self.nodes[name] = child

    @property
    def addresses(self) -> list[str]:
        return [c.address for _, c in sorted(self.nodes.items())]

    def address(self, name: str) -> str:
        return self.nodes[name].address

    def wait_settled(self, timeout_s: float = 60.0) -> None:
        want = sorted(self.nodes)
        deadline = time.monotonic() + timeout_s
        while True:
            views = {n: members_up(c.address) for n, c in self.nodes.items()}
            if all(v == want for v in views.values()):
                return
            for c in self.nodes.values():
                if c.proc.poll() is not None:
                    raise ChildFailed(f"{c.name} exited with {c.proc.returncode}:\n{c.log_tail()}")
            if time.monotonic() > deadline:
                raise ChildFailed(f"the ring did not settle in {timeout_s:g} s; views {views}")
            time.sleep(0.1)

    def kill9_and_wipe(self, name: str) -> None:
        child = self.nodes[name]
        os.kill(child.pid, signal.SIGKILL)
        child.proc.wait()
        shutil.rmtree(self.work / f"{name}-data")

    def restart(self, name: str) -> None:
        """Start ``name`` again on its port, with the others as seeds (the founder too)."""
        old = self.nodes[name]
        old.address, listen = "", old.address
        self._spawn(name, listen)

    def stop(self) -> None:
        stop_all(self.children)


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError, ConnectionError):
            got = condition()
            if got:
                return got
        if time.monotonic() > deadline:
            raise ChildFailed(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every)


# --- asking a node -------------------------------------------------------------------------------


def ask(address: str, op: str, args: dict[str, Any], timeout_s: float = 10.0) -> Any:
    error, result = call(address, op, args, timeout_s)
    if error is not None:
        raise ConnectionError(f"{address} answered {op} with {error}: {result}")
    return result


def aae_of(address: str) -> dict[str, Any]:
    return dict(ask(address, "status", {})["aae"])


def record_count(address: str) -> tuple[int, int]:
    """(records, bytes of keys and records) that ``address`` stores for the partitions it owns,
    from its own disk (the ``records`` op, paged)."""
    count = size = 0
    after: bytes | None = None
    while True:
        page = ask(address, "records", {"after": after, "max_bytes": RECORDS_PAGE}, 30.0)
        items = page["items"]
        count += len(items) // 2
        size += sum(len(x) for x in items)
        if page["done"]:
            return count, size
        after = page["after"]


# --- load ----------------------------------------------------------------------------------------


async def _connect(addresses: list[str], inflight: int, connections: int) -> list[RawConnection]:
    loop = asyncio.get_running_loop()
    conns = []
    for i in range(connections):
        slots = inflight // connections + (1 if i < inflight % connections else 0)
        host, port = parse_address(addresses[i % len(addresses)])
        _, conn = await loop.create_connection(partial(RawConnection, slots), host, port)
        await asyncio.wait_for(conn.hello, 5)
        conns.append(conn)
    return conns


def _close(conns: list[RawConnection]) -> None:
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()


class _Once(Phase):
    """A put phase that writes every key once, then stops."""

    def next_tail(self) -> bytes:
        i = self.next_key
        self.next_key = i + 1
        if self.next_key >= len(self.tails):
            self.stop()
        return self.tails[i]


async def fill(addresses: list[str], keys: int, value_bytes: int, inflight: int) -> PhaseResult:
    """Write ``key_names(keys)`` once, pipelined through every address."""
    value = (bytes(range(256)) * (value_bytes // 256 + 1))[:value_bytes]
    conns = await _connect(addresses, min(inflight, keys), len(addresses))
    try:
        phase = _Once("put", request_tails("put", key_names(keys), value))
        phase.drained = asyncio.get_running_loop().create_future()
        phase.start_recording()
        for conn in conns:
            conn.start(phase)
        await asyncio.wait_for(asyncio.shield(phase.drained), 600)
        result = phase.result()
        if result.errors:
            raise ChildFailed(f"{result.errors} puts failed while filling: {result.first_error}")
        return result
    finally:
        _close(conns)


async def put_window(addresses: list[str], cfg: LoadConfig, before: Callable[[], None]) -> Any:
    """The put rate over ``cfg.seconds`` (after ``cfg.warmup_s``) with ``cfg.inflight`` puts in
    flight over the cluster's keys; ``before`` runs (in a thread) once connected, just before
    the first put."""
    value = (bytes(range(256)) * (cfg.value_bytes // 256 + 1))[: cfg.value_bytes]
    conns = await _connect(addresses, cfg.inflight, cfg.connections)
    try:
        await asyncio.to_thread(before)
        loop = asyncio.get_running_loop()
        phase = Phase("put", request_tails("put", key_names(cfg.keys), value))
        return await run_phase(loop, phase, [c.start for c in conns], cfg)
    finally:
        _close(conns)


# --- (a) and (b): rebuild ------------------------------------------------------------------------


def healthy_counts(cluster: Ringd, keys: int) -> tuple[int, int]:
    """Wait until every node holds ``keys`` records (W=2: the third copy follows the answer)."""

    def every() -> tuple[int, int] | None:
        counts = {n: record_count(c.address) for n, c in cluster.nodes.items()}
        return counts["node1"] if all(n == keys for n, _ in counts.values()) else None

    result: tuple[int, int] = wait_for(every, 120, f"every node to hold {keys} records", 0.5)
    return result


def repaired(cluster: Ringd) -> int:
    return sum(int(aae_of(c.address)["keys_repaired"]) for c in cluster.nodes.values())


def rebuild(cluster: Ringd, healthy: int, bound_s: float) -> dict[str, Any]:
    """Kill -9 node3, wipe it, restart it; the seconds until it holds ``healthy`` records."""
    before = repaired(cluster)
    cluster.kill9_and_wipe("node3")
    t0 = time.monotonic()
    cluster.restart("node3")
    node3 = cluster.address("node3")
    deadline = t0 + bound_s + 60
    took = None
    while time.monotonic() < deadline:
        t = time.monotonic()
        with contextlib.suppress(OSError, ConnectionError):
            if repaired(cluster) - before >= healthy and record_count(node3)[0] == healthy:
                took = t - t0
                break
        time.sleep(0.1)
    if took is None:
        raise ChildFailed(f"node3 was not rebuilt within {bound_s + 60:g} s")
    stats = [aae_of(a) for a in cluster.addresses]
    return {
        "rebuild_s": round(took, 2),
        "pulled_records": sum(s["pulled_records"] for s in stats),
        "pushed_records": sum(s["pushed_records"] for s in stats),
    }


def rebuild_under_load(cluster: Ringd, cfg: LoadConfig, healthy: int) -> dict[str, Any]:
    """Puts over a window on the healthy cluster, then over the same window from node3's
    restart after a second kill -9 and wipe; then how long that rebuild took."""
    entry = [cluster.address("node1"), cluster.address("node2")]
    base = uvloop.run(put_window(entry, cfg, lambda: None))
    restarted: list[float] = []

    def kill_and_restart() -> None:
        cluster.kill9_and_wipe("node3")
        restarted.append(time.monotonic())
        cluster.restart("node3")

    during = uvloop.run(put_window(entry, cfg, kill_and_restart))
    node3 = cluster.address("node3")
    wait_for(lambda: record_count(node3)[0] == healthy, 120, "node3 to be rebuilt", 0.5)
    done_s = time.monotonic() - restarted[0]
    for result in (base, during):
        if result.errors:
            raise ChildFailed(f"{result.errors} puts failed: {result.first_error}")
    return {
        "window_s": round(cfg.seconds, 2),
        "puts_per_s_before": round(base.ops_per_s),
        "puts_per_s_during": round(during.ops_per_s),
        "during_over_before": round(during.ops_per_s / base.ops_per_s, 3),
        "rebuild_under_load_done_within_s": round(done_s, 1),
    }


# --- (c): idle CPU -------------------------------------------------------------------------------


def idle_cpu(args: argparse.Namespace, work: Path, interval_s: float | None) -> dict[str, Any]:
    """% of a core each ringd spends over ``--idle-s`` with nothing changing (after the first
    full sweep), with ``--aae-interval-s interval_s`` (None: ringd's default)."""
    extra = [] if interval_s is None else ["--aae-interval-s", str(interval_s)]
    cluster = Ringd(work, extra, ringd_command(args.ringd))
    try:
        cluster.start()
        cluster.wait_settled()
        uvloop.run(fill(cluster.addresses, args.idle_keys, args.value_bytes, args.inflight))
        healthy_counts(cluster, args.idle_keys)
        if interval_s is not None:
            # Past the first sweep: every node compared with both peers at least once.
            wait_for(
                lambda: all(aae_of(a)["exchanges"] >= 2 for a in cluster.addresses),
                2 * interval_s + 30,
                "a first sweep",
            )
        pids = {n: c.pid for n, c in cluster.nodes.items()}
        ex0 = {n: aae_of(c.address)["exchanges"] for n, c in cluster.nodes.items()}
        u0 = {n: usage(p) for n, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(args.idle_s)  # the measured window: nothing to wait for, by design
        u1 = {n: usage(p) for n, p in pids.items()}
        wall = time.monotonic() - t0
        ex1 = {n: aae_of(c.address)["exchanges"] for n, c in cluster.nodes.items()}
        pct = {}
        for n in pids:
            a, b = u0[n], u1[n]
            if a is None or b is None:
                raise ChildFailed(f"no /proc/{pids[n]}/stat for {n}")
            pct[n] = round(100 * (b.cpu_s - a.cpu_s) / wall, 2)
        return {
            "interval_s": IDLE_BASELINE_S if interval_s is None else interval_s,
            "cpu_pct": pct,
            "exchanges": {n: ex1[n] - ex0[n] for n in pids},
            "wall_s": round(wall, 1),
        }
    finally:
        cluster.stop()


# --- (d): save and load --------------------------------------------------------------------------


def ringctl(cwd: Path, *argv: str) -> tuple[float, dict[str, Any] | None, str]:
    """Seconds, the ``-o json`` summary (None on failure), stderr. Run in ``cwd``: ``python -m``
    puts the working directory first on the path, and ``benchmarks/feeds.py`` would shadow the
    ``feeds`` package."""
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ring.cli.ringctl", "-o", "json", *argv],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=cwd,
    )
    took = time.monotonic() - t0
    if done.returncode != 0:
        return took, None, done.stderr.strip() or f"exit {done.returncode}"
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    return took, json.loads(lines[-1]) if lines else {}, ""


def save_load(args: argparse.Namespace, cluster: Ringd, work: Path) -> dict[str, Any]:
    """Cluster save of ``cluster``, cluster load into a fresh one; embedded load and save of
    the same dump."""
    dumpfile, again = work / "cluster.dump", work / "embedded.dump"
    nodes = ",".join(cluster.addresses)
    save_s, saved, error = ringctl(work, "--nodes", nodes, "save", str(dumpfile))
    if saved is None:
        missing = "unrecognized arguments" in error or "invalid choice" in error
        why = "not available" if missing else f"cluster save failed: {error[-500:]}"
        return {"available": False, "why": why}
    records = int(saved["records"])
    fresh = Ringd(work / "fresh", [], ringd_command(args.ringd))
    try:
        fresh.start()
        fresh.wait_settled()
        load_s, loaded, error = ringctl(
            work, "--nodes", ",".join(fresh.addresses), "load", str(dumpfile)
        )
    finally:
        fresh.stop()
    if loaded is None:
        return {"available": False, "why": f"cluster load failed: {error[-500:]}"}
    data = str(work / "embedded")
    eload_s, eloaded, error = ringctl(work, "--data", data, "load", str(dumpfile))
    esave_s, esaved, error2 = ringctl(work, "--data", data, "save", str(again))
    if eloaded is None or esaved is None:
        return {"available": False, "why": f"embedded load/save failed: {error or error2}"}
    out = {
        "available": True,
        "records": records,
        "dump_mb": round(int(saved["bytes"]) / 1e6, 1),
        "cluster_save_per_s": round(records / save_s),
        "cluster_load_per_s": round(records / load_s),
        "embedded_save_per_s": round(int(esaved["records"]) / esave_s),
        "embedded_load_per_s": round(records / eload_s),
    }
    out["save_ratio"] = round(out["cluster_save_per_s"] / out["embedded_save_per_s"], 3)
    out["load_ratio"] = round(out["cluster_load_per_s"] / out["embedded_load_per_s"], 3)
    return out


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--keys", type=int, default=100_000, help="keys of the rebuild (100000)")
    p.add_argument("--interval-s", type=float, default=2.0, help="--aae-interval-s S (2)")
    p.add_argument("--idle-keys", type=int, default=10_000, help="keys of the idle run (10000)")
    p.add_argument("--idle-s", type=float, default=20.0, help="idle CPU window, seconds (20)")
    p.add_argument("--inflight", type=int, default=64, help="puts in flight (64)")
    p.add_argument("--value-bytes", type=int, default=100, help="value size (100)")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.add_argument("--ringd", metavar="CMD", help="the ringd command (default: ringd on PATH)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    args = p.parse_args(argv)
    if args.quick:
        args.keys, args.idle_keys, args.idle_s = min(args.keys, 5_000), 2_000, 4.0
    if min(args.keys, args.idle_keys, args.inflight) < 1 or args.idle_s <= 0:
        p.error("--keys, --idle-keys, --inflight and --idle-s must be positive")
    if args.keys < args.inflight:
        p.error("--keys must be at least --inflight")
    return args


def run(args: argparse.Namespace, work: Path, say: Callable[[str], None]) -> dict[str, Any]:
    s = args.interval_s
    bound = 3 * s + REBUILD_SLACK_S
    out: dict[str, Any] = {"keys": args.keys, "interval_s": s, "bound_s": bound}
    out["idle_keys"] = args.idle_keys
    cluster = Ringd(work / "rebuild", ["--aae-interval-s", str(s)], ringd_command(args.ringd))
    try:
        cluster.start()
        cluster.wait_settled()
        say(f"writing {args.keys:,} keys")
        t0 = time.monotonic()
        uvloop.run(fill(cluster.addresses, args.keys, args.value_bytes, args.inflight))
        out["fill_puts_per_s"] = round(args.keys / (time.monotonic() - t0))
        healthy, size = healthy_counts(cluster, args.keys)
        out["replica_mb"] = round(size / 1e6, 1)
        say("(a) kill -9, wipe and restart node3; waiting for the rebuild")
        out.update(rebuild(cluster, healthy, bound))
        out["rebuild_mb_s"] = round(size / 1e6 / out["rebuild_s"], 1)
        say("(b) puts before and during a second rebuild")
        window = max(1.0, out["rebuild_s"])
        cfg = LoadConfig(
            inflight=args.inflight,
            connections=2,
            keys=args.keys,
            value_bytes=args.value_bytes,
            seconds=window,
            warmup_s=0.0,
        )
        out.update(rebuild_under_load(cluster, cfg, healthy))
        say("(d) cluster save, cluster load into a fresh cluster, embedded load and save")
        out["save_load"] = save_load(args, cluster, work)
    finally:
        cluster.stop()
    say(f"(c) idle CPU with S={s:g} and with S={IDLE_BASELINE_S:g}, {args.idle_s:g} s each")
    out["idle"] = idle_cpu(args, work / "idle-aae", s)
    out["idle_baseline"] = idle_cpu(args, work / "idle-default", None)
    return out


def report(r: dict[str, Any]) -> None:
    s = r["interval_s"]
    idle, base = r["idle"], r["idle_baseline"]
    nodes = sorted(idle["cpu_pct"])
    worst = max(idle["cpu_pct"][n] - base["cpu_pct"][n] for n in nodes)
    rows: list[tuple[str, str, str, str]] = [
        (
            f"(a) rebuild of a wiped replica, {r['keys']:,} keys ({r['replica_mb']} MB), S={s:g} s",
            f"{r['rebuild_s']:.2f} s",
            f"bound 3·S+30 = {r['bound_s']:g} s",
            f"{r['rebuild_s'] / r['bound_s']:.2f}x",
        ),
        (
            "    its rate (replica bytes / rebuild time)",
            f"{r['rebuild_mb_s']} MB/s",
            "throttle 32 MB/s",
            f"{r['rebuild_mb_s'] / 32:.2f}x",
        ),
        (
            f"(b) puts/s during a rebuild ({r['window_s']:g} s from the restart)",
            f"{r['puts_per_s_during']:,}",
            f"{r['puts_per_s_before']:,} without",
            f"{r['during_over_before']:.2f}x",
        ),
        (
            "    that rebuild, under the load, done within",
            f"{r['rebuild_under_load_done_within_s']:g} s",
            f"bound {r['bound_s']:g} s",
            f"{r['rebuild_under_load_done_within_s'] / r['bound_s']:.2f}x",
        ),
    ]
    for n in nodes:
        rows.append(
            (
                f"(c) idle CPU of {n}, {r['idle_keys']:,} keys, S={s:g} s"
                f" ({idle['exchanges'][n]} exchanges)",
                f"{idle['cpu_pct'][n]:.1f}% of a core",
                f"{base['cpu_pct'][n]:.1f}% with S={base['interval_s']:g} s",
                f"+{idle['cpu_pct'][n] - base['cpu_pct'][n]:.1f} pts",
            )
        )
    sl = r["save_load"]
    if sl.get("available"):
        rows += [
            (
                f"(d) cluster save, {sl['records']:,} records ({sl['dump_mb']} MB)",
                f"{sl['cluster_save_per_s']:,} rec/s",
                f"embedded save {sl['embedded_save_per_s']:,} rec/s",
                f"{sl['save_ratio']:.2f}x",
            ),
            (
                "    cluster load into a fresh cluster",
                f"{sl['cluster_load_per_s']:,} rec/s",
                f"embedded load {sl['embedded_load_per_s']:,} rec/s",
                f"{sl['load_ratio']:.2f}x",
            ),
        ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print(
        f"\nanti-entropy: 3 ringd nodes on 127.0.0.1, N=3 R=2 W=2, --aae-interval-s {s:g}; "
        f"{r['fill_puts_per_s']:,} puts/s while filling\n"
    )
    head = ("", "figure", "baseline / bound", "ratio")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    verdict = "met" if worst <= CPU_GOAL_PCT else "NOT met"
    print(
        f"\nidle anti-entropy costs at most {worst:.1f}% of a core per node over the default "
        f"(goal ≤ {CPU_GOAL_PCT:g}%: {verdict}); measured over {idle['wall_s']:g} s each"
    )
    if not sl.get("available"):
        print(f"cluster save/load: not measured: {sl.get('why', '')}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ringkv-bench-aae-"))
    failed = False

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    try:
        result = run(args, work, say)
    except ChildFailed as exc:
        failed = True
        print(f"benchmark aborted: {exc}\n(logs kept in {work})", file=sys.stderr)
        return 1
    finally:
        if not (failed or args.keep):
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
        if args.keep:
            print(f"work directory: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
