"""Embedded store throughput beside raw rocksdict, measured in the same run.

    python benchmarks/embedded.py [--keys 100000] [--value-bytes 100] [--rounds 3]

Prints ops/s of ``ring.open`` put, get and scan and of raw rocksdict put, get, scan and a
read-modify-write loop (get then put: the least a versioned store must do per write) on the same
keys, and the ratios between them. Figures are medians of ``--rounds``; this machine is noisy, so
compare the ratios, not the absolute numbers.

Then bytes on disk: the same keys with random (incompressible) values written once to each,
both compacted, the sizes of their SST files compared (``--no-disk`` skips it).

Targets (issue 2, again issue 12): embedded get >= 0.70x raw get; embedded put >= 0.80x raw
read-modify-write; embedded scan >= 0.60x raw iteration; bytes on disk per record <= 1.5x raw
rocksdict's.
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

import rocksdict

import ring
from ring.storage.rocks import _options


def timed(fn: Callable[..., int], *args: object) -> float:
    t0 = time.perf_counter()
    n = fn(*args)
    return n / (time.perf_counter() - t0)


def raw_put(db: rocksdict.Rdict, keys: list[bytes], value: bytes) -> int:
    put = db.put
    for k in keys:
        put(k, value)
    return len(keys)


def raw_get(db: rocksdict.Rdict, keys: list[bytes], value: bytes) -> int:
    get = db.get
    for k in keys:
        get(k)
    return len(keys)


def raw_rmw(db: rocksdict.Rdict, keys: list[bytes], value: bytes) -> int:
    get, put = db.get, db.put
    for k in keys:
        old = get(k)
        put(k, old[:4] + value[4:] if old is not None else value)
    return len(keys)


def raw_scan(db: rocksdict.Rdict, keys: list[bytes], value: bytes) -> int:
    return sum(1 for _ in db.items())


def ring_put(store: ring.Store, keys: list[bytes], value: bytes) -> int:
    put = store.put
    for k in keys:
        put(k, value)
    return len(keys)


def ring_get(store: ring.Store, keys: list[bytes], value: bytes) -> int:
    get = store.get
    for k in keys:
        get(k)
    return len(keys)


def ring_scan(store: ring.Store, keys: list[bytes], value: bytes) -> int:
    return sum(1 for _ in store.scan())


RAW_STEPS = [
    ("raw put", raw_put),
    ("raw get", raw_get),
    ("raw read-modify-write", raw_rmw),
    ("raw scan", raw_scan),
]
RING_STEPS = [
    ("ring put (new keys)", ring_put),
    ("ring put (overwrite)", ring_put),
    ("ring get", ring_get),
    ("ring scan", ring_scan),
]


def bench(keys: list[bytes], value: bytes, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    for _ in range(rounds):
        raw_dir = tempfile.mkdtemp(prefix="ringkv-bench-raw-")
        ring_dir = tempfile.mkdtemp(prefix="ringkv-bench-ring-")
        try:
            db = rocksdict.Rdict(raw_dir, options=_options())
            for name, step in RAW_STEPS:
                results.setdefault(name, []).append(timed(step, db, keys, value))
            db.close()
            store = ring.open(ring_dir)
            for name, step in RING_STEPS:
                results.setdefault(name, []).append(timed(step, store, keys, value))
            store.close()
        finally:
            shutil.rmtree(raw_dir, ignore_errors=True)
            shutil.rmtree(ring_dir, ignore_errors=True)
    return results


RATIOS = [
    ("ring get / raw get", "ring get", "raw get", 0.70),
    ("ring put (overwrite) / raw RMW", "ring put (overwrite)", "raw read-modify-write", 0.80),
    ("ring put (new keys) / raw RMW", "ring put (new keys)", "raw read-modify-write", None),
    ("ring put (overwrite) / raw put", "ring put (overwrite)", "raw put", None),
    ("ring scan / raw scan", "ring scan", "raw scan", 0.60),
]


def sst_bytes(path: str) -> int:
    return sum(os.path.getsize(f) for f in glob.glob(os.path.join(path, "*.sst")))


def disk(keys: list[bytes], value_bytes: int) -> tuple[int, int]:
    """SST bytes of raw rocksdict and of ``ring.open`` holding ``keys`` with random values,
    each written once and compacted."""
    rng = random.Random(7)
    values = [rng.randbytes(value_bytes) for _ in keys]
    raw_dir = tempfile.mkdtemp(prefix="ringkv-bench-raw-")
    ring_dir = tempfile.mkdtemp(prefix="ringkv-bench-ring-")
    try:
        db = rocksdict.Rdict(raw_dir, options=_options())
        for k, v in zip(keys, values):
            db.put(k, v)
        db.compact_range(None, None)
        db.close()
        store = ring.open(ring_dir)
        for k, v in zip(keys, values):
            store.put(k, v)
        store.storage._db.compact_range(None, None)  # type: ignore[attr-defined]
        store.close()
        return sst_bytes(raw_dir), sst_bytes(ring_dir)
    finally:
        shutil.rmtree(raw_dir, ignore_errors=True)
        shutil.rmtree(ring_dir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-disk", action="store_true", help="skip the bytes-on-disk comparison")
    args = ap.parse_args()
    keys = [b"key:%012d" % i for i in range(args.keys)]
    value = b"v" * args.value_bytes
    runs = bench(keys, value, args.rounds)
    rounds = args.rounds
    print(
        f"{args.keys} keys of 16 B, values of {args.value_bytes} B: median and range of"
        f" {rounds} rounds (each round measures raw and ring one after the other)\n"
    )
    print(f"{'operation':<28}{'ops/s':>12}  {'range':>21}")
    for name, rates in runs.items():
        spread = f"{min(rates):,.0f}-{max(rates):,.0f}"
        print(f"{name:<28}{statistics.median(rates):>12,.0f}  {spread:>21}")
    print(f"\n{'ratio (per round)':<44}{'median':>8}  {'range':>11}  target")
    for label, a, b, target in RATIOS:
        ratios = [x / y for x, y in zip(runs[a], runs[b])]
        ratio = statistics.median(ratios)
        met = "met" if target is not None and ratio >= target else "NOT met"
        verdict = "" if target is None else f">= {target:.2f} {met}"
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        print(f"{label:<44}{ratio:>8.2f}  {spread:>11}  {verdict}")
    if not args.no_disk:
        raw, mine = disk(keys, args.value_bytes)
        n = len(keys)
        ratio = mine / raw
        met = "met" if ratio <= 1.5 else "NOT met"
        print(
            f"\nbytes on disk after compaction, random {args.value_bytes} B values: raw"
            f" {raw / n:.1f} B/record, ring {mine / n:.1f} B/record: {ratio:.2f}x raw"
            f"  (target <= 1.50 {met})"
        )


if __name__ == "__main__":
    main()
