"""YCSB's request generators and core workloads, ported from its Java sources.

Cooper et al., "Benchmarking Cloud Serving Systems with YCSB", SoCC 2010; the generators are
those of YCSB's ``site.ycsb.generator`` package:

* ``Zipfian`` - ``ZipfianGenerator``: Gray et al., "Quickly Generating Billion-Record Synthetic
  Databases", SIGMOD 1994. Rank 0 is the most popular; P(rank i) is proportional to
  1/(i+1)^theta with theta = 0.99. When the item count grows (inserts), zeta(n) is extended
  incrementally, as YCSB does.
* ``ScrambledZipfian`` - ``ScrambledZipfianGenerator``: a zipfian over 10^10 items (YCSB's
  precomputed zeta) whose rank is hashed (FNV-64) onto the record count, so the popular keys
  are spread over the key space instead of clustered at its start.
* ``SkewedLatest`` - ``SkewedLatestGenerator``: ``last - zipfian(last)``, zipfian skew toward the
  most recently inserted record.
* ``key_name`` - ``CoreWorkload.buildKeyName`` with hashed inserts: ``"user" + fnvhash64(n)``.

``plan`` turns a workload into a fixed list of operations ahead of time, so the time spent
drawing random numbers and hashing (in Python, comparable to an embedded RocksDB get) is not
part of any measurement, and every target of a run executes the same operations. YCSB chooses
keys only among inserts already acknowledged (``AcknowledgedCounterGenerator``); here an insert
counts as acknowledged ``lag`` operations after it was issued (``lag`` = requests in flight).

One deviation from YCSB's Java, on purpose: when the item count changes, ``ZipfianGenerator``
recomputes ``eta`` with the item count it was constructed with; we use the current count, which
is what Gray et al.'s formula says.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from dataclasses import dataclass

FNV_OFFSET_BASIS_64 = 0xCBF29CE484222325
FNV_PRIME_64 = 1099511628211
_MASK64 = (1 << 64) - 1

ZIPFIAN_CONSTANT = 0.99
# ScrambledZipfianGenerator's fixed item count and its zeta for theta = 0.99 (from YCSB).
SCRAMBLED_ITEM_COUNT = 10_000_000_000
SCRAMBLED_ZETAN = 26.46902820178302

FIELDS, FIELD_BYTES = 10, 100
RECORD_BYTES = FIELDS * FIELD_BYTES  # one record stored as one 1 KB value
MAX_SCAN_LENGTH = 100


def fnvhash64(val: int) -> int:
    """YCSB's ``Utils.fnvhash64``: FNV-1a over the 8 low-order bytes, as a Java long, abs()."""
    h = FNV_OFFSET_BASIS_64
    for _ in range(8):
        h ^= val & 0xFF
        val >>= 8
        h = (h * FNV_PRIME_64) & _MASK64
    return abs(h - (1 << 64) if h >> 63 else h)


def key_name(keynum: int) -> bytes:
    return b"user%d" % fnvhash64(keynum)


def zeta(n: int, theta: float, start: int = 0, partial: float = 0.0) -> float:
    """sum(1 / i^theta for i in start+1..n), added to ``partial`` (the sum up to ``start``)."""
    return partial + sum(i**-theta for i in range(start + 1, n + 1))


class Zipfian:
    """Ranks 0..items-1, rank 0 the most popular (``ZipfianGenerator``)."""

    def __init__(self, items: int, theta: float = ZIPFIAN_CONSTANT, zetan: float | None = None):
        assert items >= 1 and 0 < theta < 1
        self.theta = theta
        self.alpha = 1.0 / (1.0 - theta)
        self.zeta2theta = zeta(2, theta)
        self.half_pow_theta = 1.0 + 0.5**theta
        self.count = items
        self.zetan = zeta(items, theta) if zetan is None else zetan
        self.eta = self._eta(items)

    def _eta(self, n: int) -> float:
        return (1 - (2.0 / n) ** (1 - self.theta)) / (1 - self.zeta2theta / self.zetan)

    def next(self, rng: random.Random, items: int | None = None) -> int:
        n = self.count if items is None else items
        if n != self.count:
            if n > self.count:
                self.zetan = zeta(n, self.theta, self.count, self.zetan)
            else:  # YCSB warns that this is slow; it never happens in the core workloads
                self.zetan = zeta(n, self.theta)
            self.count = n
            self.eta = self._eta(n)
        u = rng.random()
        uz = u * self.zetan
        if uz < 1.0:
            return 0
        if uz < self.half_pow_theta:
            return 1
        return int(n * (self.eta * u - self.eta + 1) ** self.alpha)


class ScrambledZipfian:
    """Zipfian popularity spread over 0..items-1 by hashing (``ScrambledZipfianGenerator``)."""

    def __init__(self, items: int) -> None:
        self.items = items
        self.zipfian = Zipfian(SCRAMBLED_ITEM_COUNT, zetan=SCRAMBLED_ZETAN)

    def next(self, rng: random.Random) -> int:
        return fnvhash64(self.zipfian.next(rng)) % self.items


class SkewedLatest:
    """``last - zipfian(last)``: the newest records the most popular (``SkewedLatestGenerator``)."""

    def __init__(self, last: int) -> None:
        self.zipfian = Zipfian(max(1, last))

    def next(self, rng: random.Random, last: int) -> int:
        return last - self.zipfian.next(rng, max(1, last))


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    mix: tuple[tuple[str, float], ...]  # (operation, proportion)
    distribution: str  # "zipfian" or "latest"

    @property
    def insert_share(self) -> float:
        return dict(self.mix).get("insert", 0.0)


WORKLOADS = {
    w.name: w
    for w in (
        Workload("A", "update heavy", (("read", 0.5), ("update", 0.5)), "zipfian"),
        Workload("B", "read mostly", (("read", 0.95), ("update", 0.05)), "zipfian"),
        Workload("C", "read only", (("read", 1.0),), "zipfian"),
        Workload("D", "read latest", (("read", 0.95), ("insert", 0.05)), "latest"),
        Workload("E", "short ranges", (("scan", 0.95), ("insert", 0.05)), "zipfian"),
        Workload("F", "read-modify-write", (("read", 0.5), ("rmw", 0.5)), "zipfian"),
    )
}
# YCSB's recommended order: the inserts of D (and E) come after the workloads that only read
# and update the loaded records.
ORDER = "ABCFDE"

# One operation: (kind, key, value or None, scan length or 0).
Op = tuple[str, bytes, bytes | None, int]


class Keyspace:
    """The records inserted so far, shared by the plans of one run: the load, then each
    workload's inserts continue the same insert sequence."""

    def __init__(self, records: int, values: list[bytes], rng: random.Random) -> None:
        self.inserted = records
        self.values = values
        self.rng = rng

    def load(self) -> list[Op]:
        rng, values = self.rng, self.values
        return [
            ("insert", key_name(i), values[rng.randrange(len(values))], 0)
            for i in range(self.inserted)
        ]

    def plan(self, workload: Workload, count: int, lag: int) -> list[Op]:
        """``count`` operations of ``workload``; keys only among inserts at least ``lag``
        operations old (YCSB's acknowledged inserts)."""
        rng, values = self.rng, self.values
        kinds = [k for k, _ in workload.mix]
        cumulative = []
        total = 0.0
        for _, share in workload.mix:
            total += share
            cumulative.append(total)
        base = self.inserted
        inserts_at: list[int] = []  # op indexes of this plan's inserts
        expected_new = int(count * workload.insert_share * 2.0)
        scrambled = ScrambledZipfian(base + expected_new)
        latest = SkewedLatest(base - 1)
        ops: list[Op] = []
        for i in range(count):
            kind = kinds[min(bisect.bisect_right(cumulative, rng.random() * total), len(kinds) - 1)]
            if kind == "insert":
                inserts_at.append(i)
                ops.append((kind, key_name(self.inserted), values[rng.randrange(len(values))], 0))
                self.inserted += 1
                continue
            last = base - 1 + bisect.bisect_right(inserts_at, i - lag)
            if workload.distribution == "latest":
                keynum = latest.next(rng, last)
            else:
                keynum = scrambled.next(rng)
                while keynum > last:
                    keynum = scrambled.next(rng)
            value = values[rng.randrange(len(values))] if kind in ("update", "rmw") else None
            length = rng.randint(1, MAX_SCAN_LENGTH) if kind == "scan" else 0
            ops.append((kind, key_name(keynum), value, length))
        return ops


def selftest(say: object = print) -> list[str]:
    """Checks that the generators draw what YCSB's do; returns the failures (empty: passed)."""
    out = say if callable(say) else print
    failures: list[str] = []
    rng = random.Random(12)

    def check(ok: bool, what: str) -> None:
        out(f"  {'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            failures.append(what)

    # FNV-1a of the value's 8 little-endian bytes, computed the textbook way.
    for v in (0, 1, 255, 123_456_789, 2**40 + 7):
        h = FNV_OFFSET_BASIS_64
        for byte in v.to_bytes(8, "little"):
            h = ((h ^ byte) * FNV_PRIME_64) & _MASK64
        want = abs(h - (1 << 64) if h >> 63 else h)
        check(fnvhash64(v) == want, f"fnvhash64({v}) is FNV-1a of its 8 bytes")

    # YCSB's precomputed zeta(10^10, 0.99): 10^6 terms exactly, the rest by Euler-Maclaurin.
    theta, m, big = ZIPFIAN_CONSTANT, 1_000_000, SCRAMBLED_ITEM_COUNT
    head = zeta(m, theta)
    tail = (big ** (1 - theta) - m ** (1 - theta)) / (1 - theta)
    tail += (big**-theta - m**-theta) / 2 - theta * (big ** (-theta - 1) - m ** (-theta - 1)) / 12
    check(abs(head + tail - SCRAMBLED_ZETAN) < 1e-6, f"zeta(10^10) = {head + tail:.9f}")

    # Zipfian against the exact 1/(i+1)^theta / zeta(n). Gray et al.'s method is exact for
    # ranks 0 and 1 and approximates the rest (rank 2 draws ~17% too often, the last ranks too
    # rarely), as YCSB's does: so ranks 0-1 tightly, cumulative shares and log buckets loosely.
    n, draws = 1000, 400_000
    z = Zipfian(n)
    counts = [0] * n
    for _ in range(draws):
        counts[z.next(rng)] += 1
    zn = zeta(n, theta)
    exact = [(i + 1) ** -theta / zn for i in range(n)]
    for i in (0, 1):
        got = counts[i] / draws
        check(
            abs(got / exact[i] - 1) < 0.03,
            f"zipfian(1000): rank {i} draws {got:.2%} (exact {exact[i]:.2%})",
        )
    for top in (10, 100):
        got, want = sum(counts[:top]) / draws, sum(exact[:top])
        check(abs(got - want) < 0.02, f"zipfian: top {top} ranks draw {got:.1%} (exact {want:.1%})")
    lo = 2
    while lo < n:
        hi = min(n, lo * 2)
        got, want = sum(counts[lo:hi]) / draws, sum(exact[lo:hi])
        check(
            abs(got / want - 1) < 0.2,
            f"zipfian: ranks {lo}-{hi - 1} draw {got:.2%} (exact {want:.2%})",
        )
        lo = hi

    # Scrambled: in range, skewed (the hottest key far above the mean), hot keys spread out.
    items = 10_000
    s = ScrambledZipfian(items)
    hits: dict[int, int] = {}
    for _ in range(200_000):
        k = s.next(rng)
        hits[k] = hits.get(k, 0) + 1
    check(all(0 <= k < items for k in hits), "scrambled zipfian: keys within 0..items-1")
    hottest = sorted(hits, key=hits.__getitem__, reverse=True)[:10]
    skew = hits[hottest[0]] / (200_000 / items)
    check(skew > 100, f"scrambled zipfian: hottest key {skew:.0f}x the mean (want > 100x)")
    check(max(hottest) - min(hottest) > items // 2, "scrambled zipfian: hot keys spread out")

    # Latest: the newest record the most popular, and most draws among the newest 1%.
    last = 99_999
    lat = SkewedLatest(last)
    draws_latest = [lat.next(rng, last) for _ in range(100_000)]
    newest = sum(1 for k in draws_latest if k > last - 1000) / len(draws_latest)
    check(min(draws_latest) >= 0 and max(draws_latest) <= last, "latest: keys within 0..last")
    mode = Counter(draws_latest).most_common(1)[0][0]
    check(mode == last, f"latest: the newest record is the most drawn ({mode})")
    check(newest > 0.5, f"latest: {newest:.0%} of draws among the newest 1% (want > 50%)")
    return failures
