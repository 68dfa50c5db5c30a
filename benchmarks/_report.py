"""Rows of the cluster benchmark, their medians over rounds, the table, the targets.

A row is one operation of one system in one round: throughput and latency as the client saw
them, and what the processes spent per operation over the same window (CPU microseconds per
process, read and write syscalls of the servers). CPU per operation is the steadiest figure on
a shared, noisy machine: when a neighbour steals cycles, throughput and p99 move, CPU per
operation hardly does.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from _load import PhaseResult
from _procs import Usage

# Issue 12's goals. At 64 in flight: rate against the echo ceiling, and p99.
RATE_TARGETS = {"put": 0.35, "get": 0.45}  # ringkv / echo ops per second
P99_TARGET_MS = 3.0
# At 1 in flight: ringkv p50 at most this many times the echo's p50.
P50_TARGETS = {"put": 2.5, "get": 2.0}
CLIENT = "client"  # the process name under which the load generator's own use is kept


@dataclass
class Row:
    system: str
    op: str  # "put"/"get" for ringkv and echo, "SET"/"GET" for redis
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us: dict[str, float] = field(default_factory=dict)  # process -> CPU us per operation
    reads_per_op: float = math.nan  # read syscalls of the servers per operation
    writes_per_op: float = math.nan
    notes: list[str] = field(default_factory=list)
    ops_range: tuple[float, float] | None = None  # lowest and highest ops/s over the rounds

    @property
    def key(self) -> tuple[str, str]:
        return self.system, self.op.lower()

    @property
    def server_cpu_us(self) -> float:
        servers = [us for name, us in self.cpu_us.items() if name != CLIENT]
        return sum(servers) if servers else math.nan


def row_of(system: str, result: PhaseResult, used: dict[str, Usage] | None) -> Row:
    """A row from the load generator's result and the Meter's use over the same window."""
    row = Row(
        system,
        result.op,
        result.ops_per_s,
        result.percentile_ms(0.50),
        result.percentile_ms(0.99),
    )
    if result.errors:
        row.notes.append(f"{result.errors} errors, first: {result.first_error}")
    if result.lost:
        row.notes.append(f"{result.lost} requests never answered")
    ops = len(result.latencies_ns)
    if used and ops:
        add_usage(row, used, ops)
    return row


def add_usage(row: Row, used: dict[str, Usage], ops: int) -> None:
    row.cpu_us = {name: u.cpu_s * 1e6 / ops for name, u in used.items()}
    servers = [u for name, u in used.items() if name != CLIENT]
    row.reads_per_op = sum(u.reads for u in servers) / ops
    row.writes_per_op = sum(u.writes for u in servers) / ops


def median_rows(rounds: list[list[Row]]) -> list[Row]:
    """One row per (system, op) in first-seen order, each figure the median over the rounds."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for rows in rounds:
        for row in rows:
            groups.setdefault(row.key, []).append(row)
    out = []
    for rows in groups.values():
        first = rows[0]

        def med(values: list[float]) -> float:
            values = [v for v in values if not math.isnan(v)]
            return statistics.median(values) if values else math.nan

        out.append(
            Row(
                first.system,
                first.op,
                med([r.ops_per_s for r in rows]),
                med([r.p50_ms for r in rows]),
                med([r.p99_ms for r in rows]),
                {n: med([r.cpu_us.get(n, math.nan) for r in rows]) for n in first.cpu_us},
                med([r.reads_per_op for r in rows]),
                med([r.writes_per_op for r in rows]),
                [note for r in rows for note in r.notes],
                (min(r.ops_per_s for r in rows), max(r.ops_per_s for r in rows)),
            )
        )
    return out


def _ratio(a: Row | None, b: Row | None) -> str:
    if a is None or b is None or not b.ops_per_s:
        return ""
    return f"{a.ops_per_s / b.ops_per_s:.2f}x"


def _num(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def table(rows: list[Row]) -> str:
    by = {r.key: r for r in rows}
    redis_op = {"put": "set", "get": "get"}
    header = f"{'':<11}{'ops/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'CPU us/op':>11}"
    header += f"{'ringkv/echo':>13}{'ringkv/redis':>14}"
    ranged = any(r.ops_range for r in rows)
    if ranged:
        header += f"{'ops/s range':>20}"
    lines = [header, "-" * len(header)]
    for r in rows:
        vs_echo = vs_redis = ""
        if r.system == "ringkv":
            vs_echo = _ratio(r, by.get(("echo", r.op)))
            vs_redis = _ratio(r, by.get(("redis", redis_op[r.op])))
        lines.append(
            f"{r.system + ' ' + r.op:<11}{r.ops_per_s:>10,.0f}{_num(r.p50_ms, '.3f'):>8}"
            f"{_num(r.p99_ms, '.2f'):>8}{_num(r.server_cpu_us, '.1f'):>11}"
            f"{vs_echo:>13}{vs_redis:>14}" + (f"{_spread(r.ops_range):>20}" if r.ops_range else "")
        )
    return "\n".join(lines)


def _spread(span: tuple[float, float]) -> str:
    return f"{span[0]:,.0f}-{span[1]:,.0f}"


def costs(rows: list[Row]) -> list[str]:
    """Per row: CPU per operation of each process, and the servers' syscalls per operation."""
    out = []
    for r in rows:
        if not r.cpu_us:
            continue
        parts = ", ".join(f"{name} {us:.1f}" for name, us in r.cpu_us.items())
        syscalls = ""
        if not math.isnan(r.reads_per_op):
            syscalls = f"; servers {r.reads_per_op:.2f} reads + {r.writes_per_op:.2f} writes/op"
        out.append(f"{r.system} {r.op}: CPU us/op {parts}{syscalls}")
    return out


def targets(rows: list[Row], inflight: int) -> list[str]:
    """Issue 12's goals that this run measures: rates and p99 at 64 in flight, p50 against
    the echo's at 1 in flight."""
    by = {r.key: r for r in rows}
    out = []
    for op in ("put", "get"):
        r, echo = by.get(("ringkv", op)), by.get(("echo", op))
        if inflight == 1:
            if r and echo and echo.p50_ms:
                times, goal = r.p50_ms / echo.p50_ms, P50_TARGETS[op]
                verdict = "met" if times <= goal else "NOT met"
                out.append(
                    f"ringkv {op} p50 <= {goal:g}x the echo's at 1 in flight: {times:.2f}x"
                    f" ({r.p50_ms:.3f} against {echo.p50_ms:.3f} ms) - {verdict}"
                )
            continue
        if inflight != 64:
            continue
        if r and echo and echo.ops_per_s:
            share, goal = r.ops_per_s / echo.ops_per_s, RATE_TARGETS[op]
            verdict = "met" if share >= goal else "NOT met"
            out.append(f"ringkv {op}s >= {goal}x the echo ceiling: {share:.2f}x - {verdict}")
        if r:
            verdict = "met" if r.p99_ms <= P99_TARGET_MS else "NOT met"
            out.append(f"ringkv {op} p99 <= {P99_TARGET_MS:g} ms: {r.p99_ms:.2f} ms - {verdict}")
    return out
