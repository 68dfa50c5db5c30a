"""The one harness for tests that run real ``ringd`` processes.

``Cluster`` starts nodes as child processes on port 0 (the address is read from the node's
ready line ``ringd NAME listening on HOST:PORT``), restarts them on the same port with the same
data directory, kills them by PID (SIGKILL, or SIGTERM for a clean stop) and waits for the
nodes' views to converge. ``close()`` kills every process it still owns; callers put it in a
``finally``.

Nothing waits for a fixed time: ``wait_until`` polls a condition against a deadline.

Options for the fault tests:

* ``netns={name: namespace}`` and ``hosts={name: ip}`` run each node inside a network namespace
  (``ip netns exec NS ringd ...``, which execs, so the PID is ringd's own) listening on ``ip``;
* ``call`` runs the harness's own client requests (``states``, ``counters``, ``serving``)
  somewhere else — the partition test passes a function that runs them on a thread that
  entered the client's network namespace;
* ``command`` replaces ``python -m ring.cli.ringd`` (a test can launch a patched node), and
  ``extra`` adds flags to every node.

A node is started with every other node it knows of as its seeds, so any node rejoins through
its peers after a restart; the first node of a cluster is its founder and always gets
``--new-cluster`` as well (docker-compose's node1: with the others as seeds it rejoins them after
a restart, even with its data directory wiped). ``spawn``/``restart`` take ``seeds=`` to start a
node otherwise. ``wait_ready`` waits for a node to listen; a node serves only once it knows its
cluster (``wait_serving``, or ``converge`` on every member up).

Also here: ``Load`` (client threads writing and reading a small key space, recording every call
in a ``History``), ``History.check`` (what quorum reads may return, given only the clients'
real-time intervals) and ``verify_after_heal`` (the end of every fault run).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import ring
import ring.client
from ring.core import record as rec
from ring.core.layout import DATA
from ring.storage import RocksStorage

READY = re.compile(r"ringd (\S+) listening on (\S+)")
SERVING = re.compile(r"ringd (\S+) serving")
PROBE_KEY = b"\x00harness-probe"

T = TypeVar("T")


def wait_until(
    condition: Callable[[], Any], timeout: float = 15.0, what: str = "", interval: float = 0.05
) -> Any:
    """Poll ``condition`` until it returns something true (a ``RingError`` counts as false);
    return that, or raise AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except ring.RingError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def _here(fn: Callable[[], T]) -> T:
    return fn()


def stop_gracefully(proc: subprocess.Popen[Any]) -> int:
    """SIGTERM ``proc`` and return its exit code; SIGKILL it (and re-raise) if it does not stop
    within 20 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise


class Cluster:
    def __init__(
        self,
        root: Path,
        *,
        n: int = 3,
        r: int = 2,
        w: int = 2,
        hosts: dict[str, str] | None = None,
        netns: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
        extra: Sequence[str] = (),
        call: Callable[[Callable[[], Any]], Any] = _here,
    ) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.addresses: dict[str, str] = {}
        self.seed: str | None = None
        self.founder: str | None = None
        self.quorum = ["--n", str(n), "--r", str(r), "--w", str(w)]
        self.hosts = hosts or {}
        self.netns = netns or {}
        self.command = list(command or [sys.executable, "-m", "ring.cli.ringd"])
        self.extra = list(extra)
        self.call = call

    # --- processes -----------------------------------------------------------------------

    def spawn(self, name: str, port: int = 0, seeds: Sequence[str] | None = None) -> None:
        """Start ``name``; its seeds are every other known node unless ``seeds`` is given."""
        host = self.hosts.get(name, "127.0.0.1")
        cmd = [*self.command, "--name", name, "--listen", f"{host}:{port}"]
        cmd += ["--data", str(self.root / name), *self.quorum, *self.extra]
        if seeds is None:
            seeds = [a for n, a in sorted(self.addresses.items()) if n != name]
        if seeds:
            cmd += ["--seeds", ",".join(seeds)]
        self.founder = self.founder or name
        if name == self.founder:
            cmd += ["--new-cluster"]
        if name in self.netns:
            cmd = ["ip", "netns", "exec", self.netns[name], *cmd]
        with (
            open(self.root / f"{name}.out", "wb") as out,
            open(self.root / f"{name}.log", "ab") as err,
        ):
            self.procs[name] = subprocess.Popen(cmd, stdout=out, stderr=err)

    def wait_ready(self, name: str, timeout: float = 15.0) -> str:
        proc, out = self.procs[name], self.root / f"{name}.out"

        def ready() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(
                    f"ringd {name} exited with {proc.returncode}:\n{self.log(name)}"
                )
            match = READY.search(out.read_text())
            return match.group(2) if match else None

        address = str(wait_until(ready, timeout, what=f"{name} to listen"))
        self.addresses[name] = address
        self.seed = self.seed or address
        return address

    def wait_serving(self, name: str, timeout: float = 15.0) -> None:
        out = self.root / f"{name}.out"
        wait_until(lambda: SERVING.search(out.read_text()), timeout, what=f"{name} to serve")

    def start(self, *names: str) -> None:
        """Start nodes in parallel (the first node ever started is everyone's seed)."""
        if self.seed is None:
            self.spawn(names[0])
            self.wait_ready(names[0])
            names = names[1:]
        for name in names:
            self.spawn(name)
        for name in names:
            self.wait_ready(name)

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def logs(self, tail: int = 2000) -> str:
        names = sorted(self.addresses)
        return "\n".join(f"--- {n}.log ---\n{self.log(n, tail)}" for n in names)

    def kill9(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(10)

    def stop(self, name: str) -> int:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(20)

    def restart(self, name: str, seeds: Sequence[str] | None = None) -> None:
        """Start ``name`` again with the same data directory on the same port."""
        self.spawn(name, port=int(self.addresses[name].rsplit(":", 1)[1]), seeds=seeds)
        self.wait_ready(name)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()
        for proc in self.procs.values():
            proc.wait(10)
        self.procs.clear()

    # --- views ---------------------------------------------------------------------------

    def client(self, *names: str, timeout: float = 5.0, smart: bool = False) -> ring.client.Client:
        """A client of the nodes ``names`` (all by default): the plain way unless ``smart``, so
        that a test's request is coordinated by the node it names (``serving``, ``counters``
        and the forwarding tests rely on it)."""
        return ring.connect(
            [self.addresses[n] for n in names or sorted(self.addresses)],
            timeout=timeout,
            smart=smart,
        )

    def states(self, via: str) -> dict[str, str]:
        def ask() -> dict[str, str]:
            with self.client(via) as c:
                return {m["name"]: m["state"] for m in c.status()["members"]}

        result: dict[str, str] = self.call(ask)
        return result

    def converge(self, expected: dict[str, str], timeout: float = 15.0) -> None:
        """Wait until every running node's view of the members is ``expected``; when that is
        every running node up, also until the ring has settled (each owns its share, nothing
        moves)."""
        for name in sorted(self.procs):
            wait_until(
                functools.partial(self._sees, name, expected),
                timeout,
                what=f"{name} to see {expected} (it sees {self._view(name)})",
            )
        if set(expected) == set(self.procs) and all(s == "up" for s in expected.values()):
            self.settled(max(timeout, 30.0))

    def _sees(self, name: str, expected: dict[str, str]) -> bool:
        return self.states(name) == expected

    def _view(self, name: str) -> Any:
        try:
            return self.states(name)
        except ring.RingError as exc:
            return exc

    def all_up(self) -> dict[str, str]:
        return {n: "up" for n in sorted(self.addresses)}

    def counters(self, name: str) -> dict[str, int]:
        def ask() -> dict[str, int]:
            with self.client(name) as c:
                return dict(c.status()["counters"])

        result: dict[str, int] = self.call(ask)
        return result

    def serving(self, name: str, r: int = 1) -> bool:
        """Whether ``name`` coordinates a read with quorum ``r`` (a restarted node answers
        ``unavailable`` until it knows the whole ring; ``r`` = N also needs every peer to
        answer it)."""

        def ask() -> bool:
            with self.client(name) as c:
                c.get(PROBE_KEY, r=r)
                return True

        result: bool = self.call(ask)
        return result

    def diagnose(self, key: bytes) -> str:
        """What every running node says: its view, its counters, and whether an R=N read of
        ``key`` through it succeeds now."""
        n = int(self.quorum[1])
        lines = []
        for name in sorted(self.procs):
            lines.append(f"{name}: pid {self.pid(name)}, sees {self._view(name)}")
            try:
                lines.append(f"  counters {self.counters(name)}")
            except ring.RingError as exc:
                lines.append(f"  counters: {exc!r}")

            def read(x: str = name) -> str:
                t = time.monotonic()
                try:
                    with self.client(x) as c:
                        c.get_versioned(key, r=n)
                    return f"  R={n} read again: ok in {time.monotonic() - t:.3f} s"
                except ring.RingError as exc:
                    return f"  R={n} read again: {exc!r} after {time.monotonic() - t:.3f} s"

            lines.append(self.call(read))
        return "\n".join(lines) + "\n" + self.logs()

    def heal(self, timeout: float = 20.0) -> None:
        """Wait until every node runs, sees every node up, and coordinates a read from every
        replica (R=N) — gossip can call a peer up while a TCP link to it is still in its
        reconnect backoff, so the views alone do not prove the nodes reach each other."""
        assert sorted(self.procs) == sorted(self.addresses), "not every node is running"
        self.converge(self.all_up(), timeout)
        n = int(self.quorum[1])
        for name in sorted(self.procs):
            wait_until(functools.partial(self.serving, name, n), timeout, f"{name} to serve")

    def ring_state(self, name: str) -> tuple[int, int, frozenset[str]]:
        """``name``'s table: (epoch, transfers pending, members that own partitions)."""

        def ask() -> dict[str, Any]:
            with self.client(name) as client:
                return client.status()

        info: dict[str, Any] = self.call(ask)
        owners = frozenset(m["name"] for m in info["members"] if m.get("partitions"))
        return int(info["epoch"]), int(info["transfers_pending"]), owners

    def settled(self, timeout: float = 30.0, members: Sequence[str] | None = None) -> None:
        """Wait until every running node has the same table, in which ``members`` (default:
        every running node) own partitions and no transfer is pending."""
        want = frozenset(members if members is not None else self.procs)

        def ok() -> bool:
            try:
                states = {self.ring_state(name) for name in sorted(self.procs)}
            except ring.RingError:
                return False
            return len(states) == 1 and all(not t and o == want for _, t, o in states)

        wait_until(ok, timeout, f"the ring to settle with owners {sorted(want)}")

    def locate(self, key: bytes, via: str | None = None) -> tuple[str, ...]:
        """The owners of ``key`` (who answers its reads)."""

        def ask() -> tuple[str, ...]:
            with self.client(via or sorted(self.procs)[0]) as client:
                return tuple(client.locate(key)["owners"])

        result: tuple[str, ...] = self.call(ask)
        return result


# --- a concurrent client load and its history -----------------------------------------------

INF = math.inf


@dataclass(slots=True)
class Write:
    """One put or delete as the client saw it.

    ``end`` is the latest time the write can have been coordinated: when the client got the
    answer — also for a failed write (a node answers an error only after coordinating, and a
    killed node coordinates nothing later) — or ``INF`` when the call lasted a whole client
    timeout (a node that did not answer in time may still coordinate the request later).
    """

    kind: str  # "put" or "del"
    key: bytes
    value: bytes | None  # None for a delete
    start: float
    end: float
    acked: bool
    ctx: bool  # written with the context of a get_versioned(r=2) made after `start`
    failover: bool  # the client moved to another node during the call: it may have run twice


@dataclass(slots=True)
class Read:
    key: bytes
    values: frozenset[bytes]
    start: float
    end: float
    what: str


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n


class History:
    """Every write and read of a load, and the checker of what reads may return.

    The rules, for a read O of key k (a quorum read: R + W > N) returning the values V:

    1. **No phantom.** Every value in V was written by a put that started before O ended.
    2. **No lost write.** An acknowledged put P that ended before O started is in V — unless
       it may have been superseded. A write Q can supersede P only if Q's coordinator had
       seen P, i.e. Q did not end before P started; Q itself can be gone the same way. So P
       missing from V is explained only by a chain P <- Q1 <- ... <- Qn of writes, each
       ending after the previous one started and each starting before O ended, that ends in
       a delete (its tombstone hides it) or in a put whose value is in V. Blind puts from
       different coordinators are concurrent siblings, and concurrent writes may supersede
       each other in either order: both are allowed for, nothing more is.
    3. **No resurrection.** A write D with a context (from a get_versioned(r=2) made after D
       started) supersedes every put acknowledged before D started, since that read saw it.
       Once D is acknowledged, no read that starts afterwards returns such a put's value —
       unless that put failed over (it may have run twice, and the copy that D's read did
       not see is a legitimate sibling).
    """

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self.reads: list[Read] = []
        self._lock = threading.Lock()

    def add(self, item: Write | Read) -> None:
        with self._lock:
            if isinstance(item, Write):
                self.writes.append(item)
            else:
                self.reads.append(item)

    def check(self, reads: list[Read] | None = None) -> Verdict:
        verdict = Verdict()
        by_value = {w.value: w for w in self.writes if w.value is not None}
        keys = {r.key for r in (self.reads if reads is None else reads)}
        index = {k: _KeyIndex([w for w in self.writes if w.key == k]) for k in keys}
        for read in self.reads if reads is None else reads:
            index[read.key].check(read, by_value, verdict)
        verdict.count("reads checked", len(self.reads if reads is None else reads))
        verdict.count("writes", len(self.writes))
        verdict.count("acknowledged writes", sum(w.acked for w in self.writes))
        verdict.count("failed writes", sum(not w.acked for w in self.writes))
        verdict.count("failed over", sum(w.failover for w in self.writes))
        return verdict


class _KeyIndex:
    def __init__(self, writes: list[Write]) -> None:
        self.writes = sorted(writes, key=lambda w: w.start)
        self.starts = [w.start for w in self.writes]
        # max end of the deletes among writes[:i]
        self.del_end = [-INF]
        for w in self.writes:
            self.del_end.append(max(self.del_end[-1], w.end if w.kind == "del" else -INF))
        self.puts = [w for w in self.writes if w.kind == "put" and w.acked]
        self.put_starts = [w.start for w in self.puts]
        # acknowledged context writes by end; running max of their starts
        ctx = sorted((w for w in self.writes if w.ctx and w.acked), key=lambda w: w.end)
        self.ctx_ends = [w.end for w in ctx]
        self.ctx_start = list(itertools.accumulate((w.start for w in ctx), max))

    def _reach(self, start: float, upto: int) -> float:
        """The earliest start of a chain of writes (among writes[:upto]) that can end in a
        write superseding a write that started at ``start``."""
        s = start
        while True:
            earlier = [w.start for w in self.writes[:upto] if w.start < s < w.end]
            if not earlier:
                return s
            s = min(earlier)

    def check(self, read: Read, by_value: dict[bytes, Write], verdict: Verdict) -> None:
        upto = bisect.bisect_left(self.starts, read.end)  # writes that started before O ended
        witness_end = self.del_end[upto]
        for value in read.values:
            w = by_value.get(value)
            if w is None or w.key != read.key or w.start >= read.end:
                verdict.violations.append(
                    f"{read.what}: {read.key!r} returned {value!r}, which no put had written yet"
                )
                continue
            witness_end = max(witness_end, w.end)
        # rule 2: any acked put that started before every witness ended is explained at once
        first = bisect.bisect_left(self.put_starts, witness_end)
        for p in self.puts[first:]:
            if p.start >= read.end or p.end >= read.start or p.value in read.values:
                continue
            if witness_end > self._reach(p.start, upto):
                verdict.count("lost-looking puts explained by a chain")
                continue
            verdict.violations.append(
                f"{read.what}: acknowledged put {p.value!r} of {read.key!r} (acked "
                f"{p.end - read.start:+.3f} s before the read) is missing and nothing written "
                f"after it can have superseded it; the read returned {sorted(read.values)}"
            )
        # rule 3
        n = bisect.bisect_left(self.ctx_ends, read.start)
        superseded_before = self.ctx_start[n - 1] if n else -INF
        for value in read.values:
            w = by_value.get(value)
            if w is not None and w.acked and not w.failover and w.end < superseded_before:
                verdict.violations.append(
                    f"{read.what}: {read.key!r} returned {value!r}, which a write with a "
                    "context had superseded before the read started (resurrection)"
                )


class Load:
    """``threads`` clients, each its own ``ring.connect`` over every address (starting at its
    "home" node, to which it goes back every ``home_s`` seconds after a failover), writing
    unique values to ``keys`` keys: blind puts, puts and deletes with a context (unless
    ``context_writes`` is false: then those are blind too), and quorum reads, all recorded in
    ``history``. ``init`` runs first on each thread (to enter a network namespace)."""

    def __init__(
        self,
        addresses: list[str],
        history: History,
        *,
        threads: int = 4,
        keys: int = 8,
        seed: int = 0,
        timeout: float = 8.0,
        prefix: str = "k",
        init: Callable[[], None] | None = None,
        home_s: float = 0.25,
        context_writes: bool = True,
    ) -> None:
        self.addresses = addresses
        self.context_writes = context_writes
        self.history = history
        self.keys = [f"{prefix}{i}".encode() for i in range(keys)]
        self.seed = seed
        self.timeout = timeout
        self.init = init
        self.home_s = home_s
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self.ops = 0
        self.failovers = 0  # requests that moved to another node on the way
        self.current: dict[int, str] = {}  # worker -> address it is connected to
        self.threads = [
            threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            for i in range(threads)
        ]

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(self.timeout * 4)
        assert not any(t.is_alive() for t in self.threads), "a load thread hangs"
        if self.errors:
            raise AssertionError(f"load thread failed: {self.errors[0]!r}") from self.errors[0]

    def progress(self, ops: int, what: str = "") -> None:
        """Wait until the load made ``ops`` more requests (a measure of work, not of time)."""
        target = self.ops + ops

        def done() -> bool:
            if self.errors:
                raise AssertionError(f"load thread failed: {self.errors[0]!r}") from self.errors[0]
            return self.ops >= target

        wait_until(done, 60, what=f"{ops} requests {what}".strip(), interval=0.01)

    def on(self, address: str) -> int:
        """How many workers are connected to ``address`` right now."""
        return sum(a == address for a in list(self.current.values()))

    def _connect(self, i: int) -> ring.client.Client | None:
        home = i % len(self.addresses)
        try:
            return ring.connect(self.addresses[home:] + self.addresses[:home], timeout=self.timeout)
        except ring.Unavailable:
            return None

    def _run(self, i: int) -> None:
        client: ring.client.Client | None = None
        try:
            if self.init is not None:
                self.init()
            rng = random.Random(self.seed * 1000 + i)
            seq = 0
            went_home = time.monotonic()
            while not self.stopping.is_set():
                if client is None or (
                    client.address != self.addresses[i % len(self.addresses)]
                    and time.monotonic() - went_home > self.home_s
                ):
                    if client is not None:
                        client.close()
                    client = self._connect(i)
                    went_home = time.monotonic()
                    if client is None:
                        self.stopping.wait(0.05)
                        continue
                self.current[i] = client.address
                seq += 1
                before = client.address
                self._one(client, rng, f"w{i}-{seq}".encode())
                self.ops += 1
                self.failovers += client.address != before
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)
        finally:
            self.current.pop(i, None)
            if client is not None:
                client.close()

    def _one(self, client: ring.client.Client, rng: random.Random, value: bytes) -> None:
        key = rng.choice(self.keys)
        roll = rng.random()
        before = client.address
        start = time.monotonic()
        if roll < 0.12:  # a quorum read
            try:
                v = client.get_versioned(key, r=2)
            except ring.Unavailable:
                return
            end = time.monotonic()
            self.history.add(Read(key, frozenset(v.values), start, end, "read(r=2)"))
            return
        kind = "del" if roll < 0.2 else "put"
        ctx: bytes | None = None
        if roll < 0.32 and self.context_writes:  # with the context of a fresh quorum read
            try:
                ctx = client.get_versioned(key, r=2).context
            except ring.Unavailable:
                return
        try:
            if kind == "put":
                client.put(key, value, context=ctx)
            else:
                client.delete(key, context=ctx)
            acked = True
        except ring.Unavailable:
            acked = False
        end = time.monotonic()
        self.history.add(
            Write(
                kind,
                key,
                value if kind == "put" else None,
                start,
                end if end - start < self.timeout else INF,
                acked,
                ctx is not None,
                client.address != before,
            )
        )


# --- the end of a fault run -------------------------------------------------------------------


def verify_after_heal(
    cluster: Cluster,
    history: History,
    keys: list[bytes],
    context: str = "",
    *,
    reads_during: bool = True,
) -> Verdict:
    """Heal, then check everything a fault run must leave behind:

    * an R=N read of every key through every node; the reads of a key agree, and they and
      every quorum read made during the run (unless ``reads_during`` is false: a run that wipes
      a replica breaks R + W > N until the replica is repaired) pass ``History.check``;
    * a pass of R=N reads then repairs nothing (every replica holds the same record);
    * every node stops cleanly on SIGTERM (exit 0), and the data directories hold the same
      record for every key; no node logged a traceback.

    ``context`` (the seed, the schedule) goes into every failure message.
    """
    names = sorted(cluster.addresses)
    n = int(cluster.quorum[1])
    cluster.heal()
    final: list[Read] = []

    def read_all(via: str) -> None:
        with cluster.client(via) as c:
            for key in keys:
                t = time.monotonic()
                try:
                    v = c.get_versioned(key, r=n)
                except ring.Unavailable as exc:
                    raise AssertionError(
                        f"{context}: R={n} read of {key!r} via {via} after the heal failed: "
                        f"{exc}\n{cluster.diagnose(key)}"
                    ) from exc
                final.append(Read(key, frozenset(v.values), t, time.monotonic(), f"final/{via}"))

    for via in names:
        cluster.call(functools.partial(read_all, via))
    verdict = history.check((history.reads if reads_during else []) + final)
    assert not verdict.violations, (
        f"{len(verdict.violations)} violations ({context}; {verdict.stats}):\n"
        + "\n".join(verdict.violations[:20])
        + "\n"
        + cluster.logs()
    )
    for key in keys:
        seen = {r.what: sorted(r.values) for r in final if r.key == key}
        assert len({repr(v) for v in seen.values()}) == 1, f"{context}: {key!r}: {seen}"

    def repairs() -> int:
        return sum(cluster.counters(name).get("read_repairs", 0) for name in names)

    def quiet_pass() -> bool:
        before = repairs()

        def read() -> None:
            with cluster.client(names[0]) as c:
                for key in keys:
                    c.get_versioned(key, r=n)

        cluster.call(read)
        return repairs() == before

    wait_until(quiet_pass, 30, f"a pass of R={n} reads that repairs nothing ({context})")
    for name in names:
        assert cluster.stop(name) == 0, (
            f"{context}: {name} did not stop cleanly\n{cluster.log(name)}"
        )
    stored = {}
    for name in names:
        storage = RocksStorage(str(cluster.root / name))
        try:
            stored[name] = {
                k: rec.decode(raw) if (raw := storage.get(DATA + k)) else None for k in keys
            }
        finally:
            storage.close()
    for name in names[1:]:
        differ = [k for k in keys if stored[name][k] != stored[names[0]][k]]
        assert not differ, (
            f"{context}: {names[0]} and {name} hold different records for {differ[:5]}: "
            + "; ".join(f"{stored[names[0]][k]} vs {stored[name][k]}" for k in differ[:2])
        )
    for name in names:
        text = (cluster.root / f"{name}.log").read_text(errors="replace")
        assert "Traceback" not in text, f"{context}: {name} logged a traceback:\n{text[-5000:]}"
    return verdict


# --- anti-entropy: what a node holds on its own disk, and its counters ------------------------


def local_records(cluster: Cluster, name: str, page_bytes: int = 1 << 20) -> dict[bytes, bytes]:
    """Every record ``name`` stores for the partitions it owns, tombstones included, as stored
    (the client op ``records``, paged; asked of that node alone: no quorum read, no read
    repair). Raises ``ring.RingError`` while the node does not serve."""

    def ask() -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        after: bytes | None = None
        with cluster.client(name) as client:
            while True:
                page = client.records(after, page_bytes)
                items = page["items"]
                out.update(zip(items[0::2], items[1::2]))
                if page["done"]:
                    return out
                after = page["after"]

    result: dict[bytes, bytes] = cluster.call(ask)
    return result


def aae_status(cluster: Cluster, name: str) -> dict[str, Any]:
    """``name``'s own anti-entropy block of its ``status`` (exchanges, keys_repaired,
    tombstones_reaped, last_sweep_s, trees_ready, pulled_records, pushed_records, ...)."""

    def ask() -> dict[str, Any]:
        with cluster.client(name) as client:
            return dict(client.status()["aae"])

    result: dict[str, Any] = cluster.call(ask)
    return result


def ringctl(*argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """``ringctl ARGV`` as a real process (``python -m ring.cli.ringctl``)."""
    return subprocess.run(
        [sys.executable, "-m", "ring.cli.ringctl", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
