"""A 3-node ringkv cluster under load, beside a replicated echo and redis, measured in one run.

    python benchmarks/cluster.py [--seconds 5] [--inflight 64] [--keys 10000] [--value-bytes 100]
                                 [--rounds 1] [--client raw|aio] [--profile DIR] [--no-redis]
                                 [--metrics [--scrape-s 1]] [--secure secret|tls|secret+tls]

Starts, one system at a time, on 127.0.0.1:

* **ringkv** - three ``ringd`` processes (node2 and node3 seeded with node1, N=3 R=2 W=2);
  waits until every node sees all three members ``up``, then drives them;
* **echo** - the in-memory replicated echo of ``benchmarks/_echo.py``: a coordinator that
  forwards each put or get to two replica processes and answers after both, written like ringd.
  It is the ceiling a Python ring can reach on this machine;
* **redis** - ``redis-server`` without persistence, driven by ``redis-benchmark -t set`` then
  ``-t get`` with one client per request in flight (skipped with a note when not installed).

ringkv and echo get the same load (``benchmarks/_load.py``): ``--inflight`` requests in flight
over ``--connections`` connections (spread over the three ringd nodes; all to the echo's
coordinator), a put phase then a get phase of ``--seconds`` each after a short warm-up, over
``--keys`` keys with ``--value-bytes`` values. ``--rounds`` repeats the systems in turn and
reports medians. Every process started is stopped by its PID in a ``finally`` (SIGTERM, then
SIGKILL after a deadline).

The load generator shares the machine's cores with the servers, and the machine may be shared
with other work: compare ratios from the same run, and look at CPU per operation (from
``/proc``), which noise moves least.

Targets (issue 12): at 64 in flight ringkv puts >= 0.35x and gets >= 0.45x the echo's rate, p99
<= 3 ms; at ``--inflight 1`` put p50 <= 2.5x and get p50 <= 2x the echo's p50.

``--metrics`` runs ringkv a second time in every round with ``ringd --metrics``, each node
scraped every ``--scrape-s`` seconds during the load, and prints its put and get rates and p99
beside the plain run's of the same rounds, as ratios (issue 13: puts >= 0.97x).

``--secure MODE`` (repeatable) runs ringkv once more in every round with the cluster secret
(``secret``), TLS (``tls``) or both (``secret+tls``), the load generator connecting as a secured
client must (``benchmarks/_security.py``), and prints each one's put and get rates and p99s
beside the plain run's of the same rounds, as ratios.

``--profile DIR`` adds one more ringkv load run with py-spy sampling node1 (put and get phases
apart) and prints where its time goes; the table's figures come from the unprofiled runs.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import uvloop
from _load import LoadConfig, run_load
from _procs import Child, ChildFailed, Meter, Usage, free_port, spawn, stop_all, usage, wait_ready
from _profile import Profile, Sampler, py_spy
from _report import CLIENT, Row, add_usage, costs, median_rows, row_of, table, targets
from _security import MODES, Secured, prepare
from _security import lines as security_lines
from _wire import call

RINGD_READY = re.compile(r"ringd (\S+) listening on (\S+)")
METRICS_READY = re.compile(r"ringd \S+ metrics on (\S+)")
ECHO_READY = re.compile(r"echo \S+ listening on (\S+)")
REDIS_READY = re.compile(r"Ready to accept connections")
# A ringd log line for a member's state change; counted to report false suspicions under load.
MEMBER_CHANGE = re.compile(r"member (\S+): (\w+) -> (suspect|down)")
STOPPING = re.compile(r"stopping")
MEMBERS_UP_TIMEOUT_S = 30.0


# --- ringkv --------------------------------------------------------------------------------------


def ringd_command(explicit: str | None) -> list[str]:
    if explicit:
        return explicit.split()
    beside = Path(sys.executable).with_name("ringd")
    found = str(beside) if beside.exists() else shutil.which("ringd")
    if found is None:
        raise SystemExit("ringd is not on PATH: pip install -e . (or pass --ringd CMD)")
    return [found]


def start_ringd(
    ringd: list[str], work: Path, children: list[Child], nodes: int = 3, extra: tuple[str, ...] = ()
) -> list[Child]:
    """node1 first, founding the cluster; the others seeded with its address. Each one's data
    lives under ``work``."""
    started: list[Child] = []
    seeds: list[str] = []
    for i in range(1, nodes + 1):
        name = f"node{i}"
        data = work / f"{name}-data"
        argv = [*ringd, "--name", name, "--listen", "127.0.0.1:0", "--data", str(data)]
        argv += ["--n", "3", "--r", "2", "--w", "2", *extra]
        argv += ["--seeds", ",".join(seeds)] if seeds else ["--new-cluster"]
        child = spawn(name, argv, work)
        children.append(child)
        child.address = wait_ready(child, RINGD_READY).group(2)
        started.append(child)
        if not seeds:
            seeds.append(child.address)
    return started


def members_up(address: str, secured: Secured | None = None) -> list[str]:
    """Names of the members ``address`` sees as up and owning their share of the ring, once no
    partition moves any more; [] when it cannot answer yet or the ring has not settled."""
    try:
        error, status = secured.status(address) if secured else call(address, "status", {})
    except OSError:
        return []
    if error is not None or not isinstance(status, dict) or status.get("transfers_pending"):
        return []
    return sorted(
        m["name"]
        for m in status.get("members", [])
        if m.get("state") == "up" and m.get("partitions")
    )


def wait_members_up(
    nodes: list[Child], timeout_s: float = MEMBERS_UP_TIMEOUT_S, secured: Secured | None = None
) -> None:
    """Until every node sees every node up, each owning its share of a settled ring (what
    ``ringctl status -o json`` shows)."""
    want = sorted(n.name for n in nodes)
    deadline = time.monotonic() + timeout_s
    while True:
        views = {n.name: members_up(n.address, secured) for n in nodes}
        if all(view == want for view in views.values()):
            return
        for n in nodes:
            if n.proc.poll() is not None:
                raise ChildFailed(f"{n.name} exited with {n.proc.returncode}:\n{n.log_tail()}")
        if time.monotonic() > deadline:
            raise ChildFailed(f"members not all up after {timeout_s:g} s; views: {views}")
        time.sleep(0.1)


def suspicions(nodes: list[Child]) -> list[str]:
    """Members seen suspect or down while serving (before shutdown): false alarms under load."""
    seen = []
    for node in nodes:
        text = node.log_path.read_text(errors="replace")
        stop = STOPPING.search(text)
        for m in MEMBER_CHANGE.finditer(text, 0, stop.start() if stop else len(text)):
            seen.append(f"{node.name} saw {m.group(1)} {m.group(2)} -> {m.group(3)}")
    return seen


def bench_ringkv(
    args: argparse.Namespace,
    cfg: LoadConfig,
    work: Path,
    profile: bool,
    metrics: bool = False,
    secured: Secured | None = None,
) -> tuple[list[Row], list[str]]:
    """The rows, and notes for below the table (false suspicions; profiles when asked for).
    With ``metrics`` the nodes run with ``--metrics`` and each is scraped every
    ``--scrape-s`` seconds while the load runs."""
    children: list[Child] = []
    work.mkdir(parents=True, exist_ok=True)
    scraper: Scraper | None = None
    try:
        extra = ("--metrics", "127.0.0.1:0") if metrics else ()
        if secured is not None:  # ringd with the secret or TLS; the client connects as it must
            extra, cfg = extra + secured.flags, secured.config(cfg)
        nodes = start_ringd(ringd_command(args.ringd), work, children, extra=extra)
        wait_members_up(nodes, secured=secured)
        entry = [nodes[0].address] if args.one_entry else [n.address for n in nodes]
        meter = Meter({**{n.name: n.pid for n in nodes}, CLIENT: os.getpid()})
        if metrics:
            scraper = Scraper([metrics_url(n) for n in nodes], args.scrape_s)
        put, get = uvloop.run(run_load(entry, cfg, meter))
        system = "ringkv+metrics" if metrics else "ringkv"
        system = secured.system if secured is not None else system
        rows = [row_of(system, r, meter.used.get(r.op)) for r in (put, get)]
        notes = [f"under load: {s}" for s in suspicions(nodes)]
        if scraper is not None:
            scraper.stop()
            notes.append(f"metrics run: {scraper.summary()}")
        if profile:
            notes += profile_ringkv(nodes[0], entry, cfg, Path(args.profile))
        return rows, notes
    finally:
        if scraper is not None:
            scraper.stop()
        stop_all(children)


def metrics_url(node: Child) -> str:
    match = METRICS_READY.search(node.log_path.read_text(errors="replace"))
    if match is None:
        raise ChildFailed(f"{node.name} printed no metrics address:\n{node.log_tail()}")
    return match.group(1)


class Scraper:
    """Scrapes every node's /metrics every ``every_s`` seconds from a thread, as Prometheus
    would (every 15 s by default: this is more often), until ``stop``."""

    def __init__(self, urls: list[str], every_s: float) -> None:
        self.urls, self.every_s = urls, every_s
        self.scrapes = self.failures = self.bytes = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            for url in self.urls:
                started = time.perf_counter()
                try:
                    with urllib.request.urlopen(url, timeout=5) as answer:
                        self.bytes += len(answer.read())
                    self.scrapes += 1
                except OSError:
                    self.failures += 1
                self.seconds += time.perf_counter() - started

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def summary(self) -> str:
        mean_ms = self.seconds / max(1, self.scrapes + self.failures) * 1000
        return (
            f"{self.scrapes} scrapes ({self.failures} failed) every {self.every_s:g} s, "
            f"{self.bytes // max(1, self.scrapes):,} bytes and {mean_ms:.1f} ms each"
        )


def metrics_lines(plain: list[list[Row]], metered: list[list[Row]]) -> list[str]:
    """ringkv with --metrics (scraped) beside the plain ringkv of the same rounds: the median
    of the per-round ratios of ops/s, with their range, and the p99s."""
    out = []
    for op in ("put", "get"):
        pairs = []
        for a, b in zip(plain, metered, strict=True):
            x = next((r for r in a if r.key == ("ringkv", op)), None)
            y = next((r for r in b if r.op == op), None)
            if x is not None and y is not None and x.ops_per_s:
                pairs.append((x, y))
        if not pairs:
            continue
        ratios = [y.ops_per_s / x.ops_per_s for x, y in pairs]
        p99 = [y.p99_ms / x.p99_ms for x, y in pairs if x.p99_ms]
        cpu = [y.server_cpu_us / x.server_cpu_us for x, y in pairs if x.server_cpu_us > 0]
        on = statistics.median(y.ops_per_s for _, y in pairs)
        off = statistics.median(x.ops_per_s for x, _ in pairs)
        out.append(
            f"{op}: {on:,.0f}/s with metrics against {off:,.0f}/s without: "
            f"{statistics.median(ratios):.3f}x (rounds {min(ratios):.3f}-{max(ratios):.3f}); "
            f"p99 {statistics.median(y.p99_ms for _, y in pairs):.2f} against "
            f"{statistics.median(x.p99_ms for x, _ in pairs):.2f} ms"
            + (f" ({statistics.median(p99):.2f}x)" if p99 else "")
            + (
                f"; nodes' CPU per {op} {statistics.median(y.server_cpu_us for _, y in pairs):.1f}"
                f" against {statistics.median(x.server_cpu_us for x, _ in pairs):.1f} us "
                f"({statistics.median(cpu):.3f}x, rounds {min(cpu):.3f}-{max(cpu):.3f})"
                if cpu
                else ""
            )
        )
    return out


def profile_ringkv(node: Child, entry: list[str], cfg: LoadConfig, out_dir: Path) -> list[str]:
    if py_spy() is None:
        return ["profile skipped: py-spy is not installed (pip install py-spy)"]
    out_dir.mkdir(parents=True, exist_ok=True)
    samplers = {op: Sampler(node.pid, out_dir / f"{node.name}-{op}.txt") for op in ("put", "get")}

    def hook(op: str, opened: bool) -> None:
        if opened:
            samplers[op].start()
        else:
            samplers[op].stop()

    put, get = uvloop.run(run_load(entry, cfg, hook))
    reports = []
    for result in (put, get):
        sampler = samplers[result.op]
        profile: Profile | None = sampler.wait()
        head = (
            f"profiled run, {result.op}s: {result.ops_per_s:,.0f}/s, "
            f"p99 {result.percentile_ms(0.99):.2f} ms (py-spy slows the node it samples)"
        )
        if profile is None:
            body = f"  py-spy failed; see {sampler.out.with_suffix('.log')}"
        else:
            body = profile.report(f"{node.name} (pid {node.pid}) during {result.op}s")
            body += f"\n  collapsed stacks: {sampler.out}"
        reports.append(f"{head}\n{body}")
    return reports


# --- echo ----------------------------------------------------------------------------------------


def bench_echo(cfg: LoadConfig, work: Path) -> list[Row]:
    script = str(Path(__file__).with_name("_echo.py"))
    children: list[Child] = []
    try:
        replicas = []
        for name in ("r1", "r2"):
            child = spawn(f"echo-{name}", [sys.executable, script, "replica"], work)
            children.append(child)
            replicas.append(wait_ready(child, ECHO_READY).group(1))
        argv = [sys.executable, script, "coordinator", "--replicas", ",".join(replicas)]
        coordinator = spawn("echo-coordinator", argv, work)
        children.append(coordinator)
        address = wait_ready(coordinator, ECHO_READY).group(1)
        pids = {c.name.removeprefix("echo-"): c.pid for c in children}
        meter = Meter({**pids, CLIENT: os.getpid()})
        put, get = uvloop.run(run_load([address], cfg, meter))
        return [row_of("echo", r, meter.used.get(r.op)) for r in (put, get)]
    finally:
        stop_all(children)


# --- redis ---------------------------------------------------------------------------------------


def redis_tools() -> tuple[str, str] | None:
    server, bench = shutil.which("redis-server"), shutil.which("redis-benchmark")
    return (server, bench) if server and bench else None


def bench_redis(cfg: LoadConfig, work: Path) -> list[Row]:
    tools = redis_tools()
    assert tools is not None
    server, bench = tools
    port = free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--daemonize", "no", "--dir", str(work)]
    children = [spawn("redis-server", argv, work)]
    try:
        wait_ready(children[0], REDIS_READY)
        # redis-benchmark has no duration option: ask for about what a phase takes at ~50k/s.
        requests = max(20_000, int(cfg.seconds * 50_000))
        rows = []
        for test in ("set", "get"):
            argv = [bench, "-h", "127.0.0.1", "-p", str(port), "-c", str(cfg.inflight), "-P", "1"]
            argv += ["-n", str(requests), "-d", str(cfg.value_bytes), "-r", str(cfg.keys)]
            argv += ["-t", test, "--csv"]
            rows.append(redis_test(argv, children[0].pid, requests))
        return rows
    finally:
        stop_all(children)


def redis_test(argv: list[str], server_pid: int, requests: int) -> Row:
    """One ``redis-benchmark --csv`` run, with the CPU the server and the benchmark spent."""
    server_before = usage(server_pid)
    client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_after = usage(server_pid)
    if done.returncode != 0:
        raise ChildFailed(f"redis-benchmark failed ({done.returncode}): {done.stderr[:300]}")
    rec = next(csv.DictReader(io.StringIO(done.stdout)))
    row = Row(
        "redis",
        rec["test"],
        float(rec["rps"]),
        float(rec.get("p50_latency_ms") or "nan"),
        float(rec.get("p99_latency_ms") or "nan"),
    )
    client_cpu_s = (client_after.ru_utime + client_after.ru_stime) - (
        client_before.ru_utime + client_before.ru_stime
    )
    if server_before is not None and server_after is not None:
        used = {"server": server_after - server_before, CLIENT: Usage(client_cpu_s, 0, 0)}
        add_usage(row, used, requests)
    return row


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--seconds", type=float, default=5.0, help="measured time per phase (5)")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured start of a phase (0.5)")
    p.add_argument("--inflight", type=int, default=64, help="requests in flight (64)")
    p.add_argument("--connections", type=int, default=3, help="client connections (3)")
    p.add_argument("--keys", type=int, default=10_000, help="key space (10000)")
    p.add_argument("--value-bytes", type=int, default=100, help="value size (100)")
    p.add_argument("--rounds", type=int, default=1, help="run every system this often (1)")
    p.add_argument(
        "--client",
        choices=["raw", "aio"],
        default="raw",
        help="load driver: pipelined raw protocol (default) or ring.aio clients",
    )
    p.add_argument(
        "--one-entry",
        action="store_true",
        help="send all ringkv load to node1 instead of spreading it over the nodes",
    )
    p.add_argument(
        "--only",
        choices=["ringkv", "echo", "redis"],
        action="append",
        help="run only these systems (repeatable)",
    )
    p.add_argument("--no-redis", action="store_true", help="skip the redis baseline")
    p.add_argument(
        "--metrics",
        action="store_true",
        help="also run ringkv with --metrics in every round, scraped, and print the ratio",
    )
    p.add_argument(
        "--scrape-s", type=float, default=1.0, help="with --metrics: scrape every node this often"
    )
    p.add_argument(
        "--secure",
        choices=MODES,
        action="append",
        default=[],
        help="also run ringkv with the cluster secret, TLS or both in every round, and print "
        "the ratios to the plain run (repeatable)",
    )
    p.add_argument("--profile", metavar="DIR", help="also profile node1 with py-spy into DIR")
    p.add_argument("--ringd", metavar="CMD", help="the ringd command (default: ringd on PATH)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    args = p.parse_args(argv)
    positive = (args.inflight, args.connections, args.keys, args.seconds, args.rounds)
    if min(positive) <= 0 or args.value_bytes < 0:
        p.error("--inflight, --connections, --keys, --seconds and --rounds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = LoadConfig(
        inflight=args.inflight,
        connections=args.connections,
        keys=args.keys,
        value_bytes=args.value_bytes,
        seconds=args.seconds,
        warmup_s=args.warmup,
        client=args.client,
    )
    systems = args.only or ["ringkv", "echo", "redis"]
    notes: list[str] = []
    if args.no_redis and "redis" in systems:
        systems.remove("redis")
    if "redis" in systems and redis_tools() is None:
        systems.remove("redis")
        notes.append("redis skipped: redis-server and redis-benchmark are not installed")
    work = Path(tempfile.mkdtemp(prefix="ringkv-bench-cluster-"))
    rounds: list[list[Row]] = []
    metered: list[list[Row]] = []  # ringkv with --metrics, per round (--metrics)
    secure = {mode: prepare(mode, work / f"secure-{mode}") for mode in args.secure}
    secured: dict[str, list[list[Row]]] = {mode: [] for mode in args.secure}  # per round
    failed = False
    try:
        for i in range(args.rounds):
            rows: list[Row] = []
            for system in systems:
                if system == "ringkv":
                    profile = bool(args.profile) and i == args.rounds - 1
                    # Secured runs go after the plain one in even rounds, before in odd ones.
                    for mode in secure if i % 2 else ():
                        path = work / f"{mode}-{i}"
                        more, _ = bench_ringkv(args, cfg, path, False, secured=secure[mode])
                        secured[mode].append(more)
                    # With --metrics, the metered run goes first in odd rounds (drift cancels).
                    if args.metrics and i % 2:
                        more, more_notes = bench_ringkv(
                            args, cfg, work / f"metrics-{i}", False, True
                        )
                        metered.append(more)
                        notes += more_notes
                    more, more_notes = bench_ringkv(args, cfg, work / f"ringkv-{i}", profile)
                    rows += more
                    notes += more_notes
                    if args.metrics and not i % 2:
                        more, more_notes = bench_ringkv(
                            args, cfg, work / f"metrics-{i}", False, True
                        )
                        metered.append(more)
                        notes += more_notes
                    for mode in () if i % 2 else secure:
                        path = work / f"{mode}-{i}"
                        more, _ = bench_ringkv(args, cfg, path, False, secured=secure[mode])
                        secured[mode].append(more)
                elif system == "echo":
                    rows += bench_echo(cfg, work)
                else:
                    rows += bench_redis(cfg, work)
            rounds.append(rows)
    except ChildFailed as exc:
        failed = True
        print(f"benchmark aborted: {exc}\n(logs kept in {work})", file=sys.stderr)
    finally:
        if not (failed or args.keep):
            shutil.rmtree(work, ignore_errors=True)
    if not rounds:
        return 1
    report(args, cfg, median_rows(rounds), notes, len(rounds))
    if metered:
        print("\nringkv with --metrics (every node scraped while loaded), same rounds:")
        for line in metrics_lines(rounds, metered):
            print(f"  {line}")
    if any(secured.values()):
        print("\nringkv with the cluster secret / TLS, same rounds, against the plain run:")
        for line in security_lines(rounds, secured):
            print(f"  {line}")
    if args.keep:
        print(f"work directory: {work}")
    return 1 if failed else 0


def report(
    args: argparse.Namespace, cfg: LoadConfig, rows: list[Row], notes: list[str], rounds: int
) -> None:
    entry = "node1 only" if args.one_entry else "all 3 nodes"
    print(
        f"\n{cfg.inflight} in flight over {cfg.connections} connections ({args.client} client, "
        f"ringkv entry: {entry}); {cfg.keys} keys, {cfg.value_bytes}-byte values; "
        f"{cfg.seconds:g} s per phase"
        + (f", median of {rounds} rounds" if rounds > 1 else "")
        + "; ringkv N=3 R=2 W=2; redis: redis-benchmark -c "
        + f"{cfg.inflight} -P 1\n"
    )
    print(table(rows))
    print("\ntargets (issue 12):")
    for line in targets(rows, cfg.inflight):
        print(f"  {line}")
    lines = costs(rows)
    if lines:
        print("\nCPU per operation (from /proc over the measured window; client = load generator):")
        for line in lines:
            print(f"  {line}")
    for row in rows:
        for note in row.notes:
            print(f"  {row.system} {row.op}: {note}")
    for note in notes:
        print(f"\n{note}" if "\n" in note else f"  {note}")


if __name__ == "__main__":
    sys.exit(main())
