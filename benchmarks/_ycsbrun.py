"""The drivers and the targets of ``ycsb.py``: run a pre-generated operation sequence against
the embedded store, raw rocksdict, a 3-node ringd cluster, the replicated echo or redis-server.

A target returns one :class:`TargetRun`: its load phase (timed apart) and one :class:`Phase`
per workload and mode. ``run_sync`` runs a sequence one operation after another; ``run_async``
keeps a number of requests in flight (a closed loop: one task per in-flight slot, each starting
its next operation when its last one is answered). Both run the first ``warmup`` operations
unmeasured. Every process started is stopped by its PID in a ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop
from _procs import Child, ChildFailed, free_port, spawn, stop_all, usage, wait_ready
from _ycsbgen import WORKLOADS, Op
from cluster import ringd_command, start_ringd, wait_members_up

from ring.storage.rocks import _options  # the baseline runs on the store's own settings

ECHO_READY = re.compile(r"echo \S+ listening on (\S+)")
REDIS_READY = re.compile(r"Ready to accept connections")
REDIS_INDEX = b"ycsb:index"
LOAD = "load"
MIN_SERVER_CPU_S = 0.5

# --- measurement ---------------------------------------------------------------------------------


@dataclass
class Phase:
    """One run of one operation sequence: latencies per operation kind, in nanoseconds."""

    workload: str
    mode: str  # "1 thread", "64 in flight", "1 in flight"
    latencies: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0
    errors: int = 0
    first_error: str | None = None
    misses: int = 0  # reads that found nothing: their record was inserted and acknowledged
    stalls: int = 0  # operations that waited for the answer to their key's insert
    cut_short: bool = False  # --seconds ended the window before the sequence ran out
    # CPU seconds over the measured window: this process (the client) and the servers.
    client_cpu_s: float = math.nan
    server_cpu_s: float = math.nan

    @property
    def ops(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def summary(self) -> dict[str, dict[str, float]]:
        """Figures of the whole mix ("all"), then of each operation in the workload's order."""
        out = {"all": _figures(sorted(x for v in self.latencies.values() for x in v), self)}
        for kind, _ in WORKLOADS[self.workload].mix if self.workload in WORKLOADS else ():
            if kind in self.latencies:
                out[kind] = _figures(sorted(self.latencies[kind]), self)
        return out


def _figures(lat: list[int], phase: Phase) -> dict[str, float]:
    def pct(q: float, least: int) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6 if len(lat) >= least else math.nan

    rate = len(lat) / phase.seconds if phase.seconds > 0 else math.nan
    return {
        "count": len(lat),
        "ops_per_s": rate,
        "p50_ms": pct(0.50, 1),
        "p99_ms": pct(0.99, 100),
        "p999_ms": pct(0.999, 1000),
        # Share of one core the client used; servers' CPU per operation of the whole mix.
        "client_cores": phase.client_cpu_s / phase.seconds if phase.seconds > 0 else math.nan,
        "server_us_per_op": (
            # /proc counts CPU in 10 ms ticks: below half a second the figure is mostly noise.
            phase.server_cpu_s * 1e6 / phase.ops
            if phase.ops and phase.server_cpu_s >= MIN_SERVER_CPU_S
            else math.nan
        ),
    }


@dataclass
class Budget:
    warmup: int  # operations run before the measured window
    seconds: float | None  # the measured window's length, if bounded by time


def run_sync(
    phase: Phase, ops: list[Op], fns: dict[str, Callable[[bytes, Any, int], Any]], b: Budget
) -> Phase:
    """Run ``ops`` one after another; measure all but the first ``b.warmup``."""
    clock = time.perf_counter_ns
    lat: dict[str, list[int]] = {k: [] for k in {op[0] for op in ops}}
    for kind, key, value, n in ops[: b.warmup]:
        fns[kind](key, value, n)
    start = clock()
    deadline = start + int(b.seconds * 1e9) if b.seconds else None
    end = start
    misses = 0
    for kind, key, value, n in ops[b.warmup :]:
        t0 = clock()
        got = fns[kind](key, value, n)
        end = clock()
        lat[kind].append(end - t0)
        if got is None and kind == "read":
            misses += 1
        if deadline is not None and end >= deadline:
            phase.cut_short = True
            break
    phase.latencies = {k: v for k, v in lat.items() if v}
    phase.seconds = (end - start) / 1e9
    phase.misses = misses
    return phase


AsyncFns = dict[str, Callable[[bytes, Any, int], Awaitable[Any]]]


def cpu_s(pids: list[int]) -> float:
    used = [u.cpu_s for pid in pids if (u := usage(pid)) is not None]
    return sum(used) if len(used) == len(pids) else math.nan


async def run_async(
    phase: Phase, ops: list[Op], workers: list[AsyncFns], b: Budget, pids: list[int]
) -> Phase:
    """Run ``ops`` with ``len(workers)`` requests in flight (closed loop: each worker starts its
    next operation when its last one is answered); measure all but the first ``b.warmup``, and
    the CPU this process and the servers (``pids``) spend meanwhile."""
    clock = time.perf_counter_ns
    lat: dict[str, list[int]] = {k: [] for k in {op[0] for op in ops}}
    state = {"next": 0, "start": 0, "end": 0, "deadline": 0}
    cpu = {"client": 0.0, "servers": 0.0}
    loop = asyncio.get_running_loop()
    # Inserts in flight, by key. The plan picks keys only among inserts issued a number of
    # operations earlier, but with many in flight such an insert may still be unanswered: an
    # operation on its key waits for the answer (YCSB reads only acknowledged inserts).
    inserting: dict[bytes, asyncio.Future[None]] = {}

    total = len(ops)

    async def worker(fns: AsyncFns) -> None:
        while True:
            i = state["next"]
            if i >= total or (state["deadline"] and clock() >= state["deadline"]):
                if i < total:
                    phase.cut_short = True
                return
            state["next"] = i + 1
            if i == b.warmup:
                state["start"] = clock()
                cpu["client"], cpu["servers"] = time.process_time(), cpu_s(pids)
                if b.seconds:
                    state["deadline"] = state["start"] + int(b.seconds * 1e9)
            kind, key, value, n = ops[i]
            if kind == "insert":
                inserting[key] = loop.create_future()
            elif inserting and key in inserting:
                phase.stalls += 1
                await inserting[key]
            t0 = clock()
            try:
                got = await fns[kind](key, value, n)
            except Exception as exc:
                phase.errors += 1
                phase.first_error = phase.first_error or f"{kind}: {exc!r}"[:200]
                continue
            finally:
                if kind == "insert":
                    inserting.pop(key).set_result(None)
            t1 = clock()
            if i >= b.warmup:
                lat[kind].append(t1 - t0)
                state["end"] = max(state["end"], t1)
                if got is None and kind == "read":
                    phase.misses += 1

    await asyncio.gather(*(worker(fns) for fns in workers))
    phase.client_cpu_s = time.process_time() - cpu["client"]
    phase.server_cpu_s = cpu_s(pids) - cpu["servers"]
    phase.latencies = {k: v for k, v in lat.items() if v}
    phase.seconds = max(0, state["end"] - state["start"]) / 1e9
    return phase


@dataclass
class Plan:
    """The load and each workload's phases, (workload, mode, ops), in the order they run."""

    load: list[Op]
    phases: list[tuple[str, str, list[Op], int]]  # ..., the first this many are a warm-up


# --- targets -------------------------------------------------------------------------------------


@dataclass
class TargetRun:
    target: str
    load_s: float = math.nan
    load_records: int = 0
    phases: list[Phase] = field(default_factory=list)


def run_embedded_like(
    target: str, fns: dict[str, Callable[[bytes, Any, int], Any]], plan: Plan, args: Any
) -> TargetRun:
    out = TargetRun(target, load_records=len(plan.load))
    insert = fns["insert"]
    t0 = time.perf_counter()
    for _, key, value, n in plan.load:
        insert(key, value, n)
    out.load_s = time.perf_counter() - t0
    for name, mode, ops, warmup in plan.phases:
        out.phases.append(run_sync(Phase(name, mode), ops, fns, Budget(warmup, args.seconds)))
    return out


def bench_embedded(plan: Plan, args: argparse.Namespace, work: Path) -> TargetRun:
    import ring

    with ring.open(str(work / "ring")) as store:
        get, put, getv, scan = store.get, store.put, store.get_versioned, store.scan

        def rmw(key: bytes, value: bytes, n: int) -> None:
            put(key, value, getv(key).context)

        def scan_n(key: bytes, value: None, n: int) -> int:
            return len(list(scan(start=key, limit=n)))

        fns = {
            "read": lambda key, value, n: get(key),
            "update": lambda key, value, n: put(key, value),
            "insert": lambda key, value, n: put(key, value),
            "rmw": rmw,
            "scan": scan_n,
        }
        return run_embedded_like("embedded", fns, plan, args)


def bench_raw(plan: Plan, args: argparse.Namespace, work: Path) -> TargetRun:
    import rocksdict

    work.mkdir(parents=True, exist_ok=True)
    db = rocksdict.Rdict(str(work / "raw"), options=_options())
    try:
        get, put = db.get, db.put

        def rmw(key: bytes, value: bytes, n: int) -> None:
            get(key)
            put(key, value)

        def scan_n(key: bytes, value: None, n: int) -> int:
            it = db.iter()
            it.seek(key)
            items = []
            while len(items) < n and it.valid():
                items.append((it.key(), it.value()))
                it.next()
            del it
            return len(items)

        fns = {
            "read": lambda key, value, n: get(key),
            "update": lambda key, value, n: put(key, value),
            "insert": lambda key, value, n: put(key, value),
            "rmw": rmw,
            "scan": scan_n,
        }
        return run_embedded_like("raw", fns, plan, args)
    finally:
        db.close()


async def drive_async(
    target: str,
    plan: Plan,
    args: argparse.Namespace,
    make: Callable[[int], AsyncFns],
    pids: list[int],
) -> TargetRun:
    """Load at ``--inflight``, then every phase with the mode's number of workers."""
    out = TargetRun(target, load_records=len(plan.load))
    workers = [make(i) for i in range(args.inflight)]
    load = await run_async(Phase(LOAD, "load"), plan.load, workers, Budget(0, None), pids)
    if load.errors:
        raise ChildFailed(f"{target}: {load.errors} loads failed, first: {load.first_error}")
    out.load_s = load.seconds
    for name, mode, ops, warmup in plan.phases:
        if target == "echo" and name == "E":
            continue
        inflight = 1 if mode == "1 in flight" else args.inflight
        phase = Phase(name, mode)
        budget = Budget(warmup, args.seconds)
        out.phases.append(await run_async(phase, ops, workers[:inflight], budget, pids))
    return out


def ring_fns(client: Any, versioned: bool) -> AsyncFns:
    get, put = client.get, client.put

    async def update(key: bytes, value: bytes, n: int) -> None:
        await put(key, value)

    async def read(key: bytes, value: None, n: int) -> bytes | None:
        return await get(key)

    async def rmw(key: bytes, value: bytes, n: int) -> None:
        if versioned:
            await put(key, value, (await client.get_versioned(key)).context)
        else:
            await get(key)
            await put(key, value)

    async def scan(key: bytes, value: None, n: int) -> int:
        return sum([1 async for _ in client.scan(start=key, limit=n)])

    return {"read": read, "update": update, "insert": update, "rmw": rmw, "scan": scan}


async def drive_ring(
    target: str, addresses: list[str], plan: Plan, args: argparse.Namespace, pids: list[int]
) -> TargetRun:
    import ring.aio

    clients = []
    try:
        for i in range(len(addresses)):
            rotated = addresses[i:] + addresses[:i]
            clients.append(await ring.aio.connect(",".join(rotated)))
        fns = [ring_fns(c, versioned=target == "cluster") for c in clients]
        return await drive_async(target, plan, args, lambda i: fns[i % len(fns)], pids)
    finally:
        for client in clients:
            await client.close()


def bench_cluster(plan: Plan, args: argparse.Namespace, work: Path) -> TargetRun:
    children: list[Child] = []
    work.mkdir(parents=True, exist_ok=True)
    try:
        nodes = start_ringd(ringd_command(None), work, children)
        wait_members_up(nodes)
        addresses, pids = [n.address for n in nodes], [n.pid for n in nodes]
        return uvloop.run(drive_ring("cluster", addresses, plan, args, pids))
    finally:
        stop_all(children)


def bench_echo(plan: Plan, args: argparse.Namespace, work: Path) -> TargetRun:
    script = str(Path(__file__).with_name("_echo.py"))
    children: list[Child] = []
    work.mkdir(parents=True, exist_ok=True)
    try:
        replicas = []
        for name in ("r1", "r2"):
            child = spawn(f"echo-{name}", [sys.executable, script, "replica"], work)
            children.append(child)
            replicas.append(wait_ready(child, ECHO_READY).group(1))
        argv = [sys.executable, script, "coordinator", "--replicas", ",".join(replicas)]
        children.append(spawn("echo-coordinator", argv, work))
        address = wait_ready(children[-1], ECHO_READY).group(1)
        pids = [c.pid for c in children]
        return uvloop.run(drive_ring("echo", [address], plan, args, pids))
    finally:
        stop_all(children)


def redis_missing() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis skipped: redis-server is not installed"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis skipped: the redis package is missing (pip install -e '.[bench]')"
    return None


async def drive_redis(port: int, pid: int, plan: Plan, args: argparse.Namespace) -> TargetRun:
    import redis.asyncio

    pool = redis.asyncio.ConnectionPool(host="127.0.0.1", port=port, max_connections=args.inflight)
    r = redis.asyncio.Redis(connection_pool=pool)
    try:

        async def read(key: bytes, value: None, n: int) -> bytes | None:
            return await r.get(key)

        async def update(key: bytes, value: bytes, n: int) -> None:
            await r.set(key, value)

        async def insert(key: bytes, value: bytes, n: int) -> None:
            pipe = r.pipeline(transaction=False)
            pipe.set(key, value)
            pipe.zadd(REDIS_INDEX, {key: 0})
            await pipe.execute()

        async def rmw(key: bytes, value: bytes, n: int) -> None:
            await r.get(key)
            await r.set(key, value)

        async def scan(key: bytes, value: None, n: int) -> int:
            keys = await r.zrangebylex(REDIS_INDEX, b"[" + key, b"+", start=0, num=n)
            if keys:
                await r.mget(keys)
            return len(keys)

        fns: AsyncFns = {"read": read, "update": update, "insert": insert, "rmw": rmw}
        fns["scan"] = scan
        return await drive_async("redis", plan, args, lambda i: fns, [pid])
    finally:
        await r.aclose()
        await pool.disconnect()


def bench_redis(plan: Plan, args: argparse.Namespace, work: Path) -> TargetRun:
    server = shutil.which("redis-server")
    assert server is not None
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--daemonize", "no", "--dir", str(work)]
    children = [spawn("redis-server", argv, work)]
    try:
        wait_ready(children[0], REDIS_READY)
        return uvloop.run(drive_redis(port, children[0].pid, plan, args))
    finally:
        stop_all(children)


BENCHES = {
    "embedded": bench_embedded,
    "raw": bench_raw,
    "cluster": bench_cluster,
    "echo": bench_echo,
    "redis": bench_redis,
}
