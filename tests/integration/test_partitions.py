"""Network partitions between real ``ringd`` processes, made with Linux network namespaces.

Topology (everything created here and deleted in a ``finally``): namespaces ``rk-<tag>-a``,
``-b``, ``-c`` (one ringd each) and ``-cl`` (the test's clients), each with a veth ``eth0`` whose
peer is a port of a bridge inside a fifth namespace ``rk-<tag>-br``; addresses 10.213.X.1-4/24
exist only inside these namespaces (X is chosen so that the /24 overlaps no network of the host,
and nothing here touches the host's interfaces). The test's client requests run on threads that
entered ``-cl`` with setns(2), so the pytest process itself stays in the host namespace.

A partition is a silent drop at the receiver: ``ip rule add from <sender> blackhole`` in the
receiving namespace, placed before the ``local`` table so that packets for local addresses are
dropped too (this kernel has no netem/prio qdisc and no netfilter is needed). A drop in ``c``
of everything from ``a`` is a one-way partition a -> c (UDP from c still reaches a; TCP in
either direction breaks, as on a real network); drops both ways isolate a node.

1. **Minority and majority, hinted handoff.** ``c`` is cut off from ``a`` and ``b`` (the
   clients still reach all three). ``a`` and ``b`` mark ``c`` down and ``c`` marks them down.
   W=2 writes through ``a`` succeed and R=2 reads through ``b`` see them; W=3 through ``a``
   fails with a QuorumError that says 2 of 3; through ``c`` a W=2 write and an R=2 read fail
   with a QuorumError (1 of 2). After the heal, ``a`` hands every hint to ``c`` — checked in
   ``c``'s data directory (stopped cleanly, read, restarted), not by reading through the
   cluster, which would repair ``c`` itself.
2. **One-way partition under load** (a -> c dropped): W=2 writes through every node succeed.
3. **Isolation under load**: ``c`` cut off again while clients write through all three nodes.
4. After the heal: ``harness.verify_after_heal`` — an R=3 read of every key through every node,
   all agreeing and passing the history checker with the quorum reads made during the
   partitions; no replica left to repair; identical data directories after a clean stop.

Skipped, with the reason, when not root, without ``ip``, or when the sandbox refuses network
namespaces, bridges or setns.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import ipaddress
import os
import random
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

import ring
import ring.client
from ring.core import record as rec
from ring.core.layout import DATA
from ring.storage import RocksStorage
from tests.integration.harness import (
    Cluster,
    History,
    Load,
    Write,
    verify_after_heal,
    wait_until,
)

pytestmark = pytest.mark.integration

NAMES = ("a", "b", "c")
ROLES = ("a", "b", "c", "cl")
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class Unsupported(Exception):
    """The machine cannot do what this test needs; the message says why."""


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def enter_netns(name: str) -> None:
    """Move the calling thread (only it) into the network namespace ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def host_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for line in ip("-4", "-o", "addr", "show").splitlines():
        fields = line.split()
        if "inet" in fields:
            nets.append(ipaddress.ip_interface(fields[fields.index("inet") + 1]).network)
    for line in ip("-4", "route", "show").splitlines():
        dest = line.split()[0]
        if dest != "default":
            nets.append(ipaddress.ip_network(dest, strict=False))
    return nets


class Net:
    """The namespaces, the bridge, the addresses, and the partitions between them."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.ns = {role: f"rk-{tag}-{role}" for role in (*ROLES, "br")}
        taken = host_networks()
        free = [
            x
            for x in range(256)
            if not any(ipaddress.ip_network(f"10.213.{x}.0/24").overlaps(n) for n in taken)
        ]
        if not free:
            raise Unsupported("every 10.213.x.0/24 overlaps a network of the host")
        x = random.choice(free)
        self.ip = {role: f"10.213.{x}.{i}" for i, role in enumerate(ROLES, 1)}
        self.created: list[str] = []
        self.rules: set[tuple[str, str]] = set()

    def _pref(self, receiver: str, sender: str) -> str:
        return str(50 + ROLES.index(receiver) * 10 + ROLES.index(sender))

    def setup(self) -> None:
        try:
            ip("netns", "add", self.ns["br"])
        except RuntimeError as exc:
            raise Unsupported(f"cannot create a network namespace: {exc}") from None
        self.created.append(self.ns["br"])
        br = ["-n", self.ns["br"]]
        try:
            ip(*br, "link", "add", "br0", "type", "bridge")
        except RuntimeError as exc:
            raise Unsupported(f"cannot create a bridge: {exc}") from None
        ip(*br, "link", "set", "br0", "up")
        for role in ROLES:
            ns = self.ns[role]
            ip("netns", "add", ns)
            self.created.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip(
                "-n",
                ns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                f"v{role}",
                "netns",
                self.ns["br"],
            )
            ip(*br, "link", "set", f"v{role}", "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{self.ip[role]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            # Partition rules go before the local table (pref 0), so move it behind them.
            ip("-n", ns, "rule", "add", "pref", "100", "lookup", "local")
            ip("-n", ns, "rule", "del", "pref", "0")

    def drop(self, receiver: str, sender: str) -> None:
        """``receiver`` silently drops every packet from ``sender``."""
        pref = self._pref(receiver, sender)
        ip(
            "-n",
            self.ns[receiver],
            "rule",
            "add",
            "pref",
            pref,
            "from",
            self.ip[sender],
            "blackhole",
        )
        self.rules.add((receiver, sender))

    def isolate(self, name: str, others: tuple[str, ...]) -> None:
        for other in others:
            self.drop(name, other)
            self.drop(other, name)

    def heal(self) -> None:
        for receiver, sender in sorted(self.rules):
            ip("-n", self.ns[receiver], "rule", "del", "pref", self._pref(receiver, sender))
        self.rules.clear()

    def close(self) -> None:
        errors = []
        for ns in reversed(self.created):
            try:
                ip("netns", "del", ns)
            except RuntimeError as exc:
                errors.append(str(exc))
        self.created.clear()
        assert not errors, errors


@pytest.fixture
def net() -> Iterator[Net]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (apt-get install iproute2)")
    network = Net()
    try:
        try:
            network.setup()
        except Unsupported as exc:
            pytest.skip(str(exc))
        yield network
    finally:
        network.close()


def test_partitions_between_real_processes(net: Net, tmp_path: Path) -> None:
    pool = concurrent.futures.ThreadPoolExecutor(
        1, thread_name_prefix="netns-cl", initializer=enter_netns, initargs=(net.ns["cl"],)
    )

    def call(fn: Callable[[], T]) -> T:
        return pool.submit(fn).result()

    try:
        inside = call(lambda: os.stat("/proc/thread-self/ns/net").st_ino)
    except (concurrent.futures.BrokenExecutor, OSError) as exc:
        pool.shutdown()
        pytest.skip(f"cannot enter a network namespace with setns(2): {exc!r}")
    assert inside == os.stat(f"/run/netns/{net.ns['cl']}").st_ino
    assert inside != os.stat("/proc/thread-self/ns/net").st_ino

    cluster = Cluster(
        tmp_path,
        hosts={n: net.ip[n] for n in NAMES},
        netns={n: net.ns[n] for n in NAMES},
        call=call,
    )
    history = History()
    load: Load | None = None

    def through(name: str, fn: Callable[[ring.client.Client], T]) -> T:
        def run() -> T:
            with cluster.client(name) as c:
                return fn(c)

        return call(run)

    def put(name: str, key: bytes, value: bytes, w: int | None = None) -> None:
        """A put through ``name``, recorded; raises what the client raised."""
        start = time.monotonic()
        try:
            through(name, lambda c: c.put(key, value, w=w))
        except ring.Unavailable:
            history.add(Write("put", key, value, start, time.monotonic(), False, False, False))
            raise
        history.add(Write("put", key, value, start, time.monotonic(), True, False, False))

    def views(expected: dict[str, dict[str, str]], what: str) -> None:
        for name, view in expected.items():
            wait_until(functools.partial(cluster._sees, name, view), 20, f"{name}: {what}")

    def progress(ops: int, what: str) -> None:
        running = load
        assert running is not None
        target = running.ops + ops
        wait_until(lambda: running.errors or running.ops >= target, 60, what, interval=0.01)
        assert not running.errors, running.errors

    c_out = {n: "down" if n == "c" else "up" for n in NAMES}
    alone = {n: "up" if n == "c" else "down" for n in NAMES}
    keys: list[bytes] = []
    try:
        cluster.start(*NAMES)
        for name in NAMES:  # ip netns exec execs: the PID we kill is ringd's own
            cmdline = Path(f"/proc/{cluster.pid(name)}/cmdline").read_bytes()
            assert b"ring.cli.ringd" in cmdline, cmdline
        cluster.heal()

        # --- 1. c isolated: the majority serves, the minority refuses, hints come back -------
        net.isolate("c", ("a", "b"))
        views({"a": c_out, "b": c_out, "c": alone}, "c cut off")
        written = {f"p{i}".encode(): f"p{i}-majority".encode() for i in range(10)}
        keys += written
        for key, value in written.items():
            put("a", key, value, w=2)
        assert through("b", lambda c: [c.get(k, r=2) for k in written]) == list(written.values())
        with pytest.raises(ring.QuorumError) as err:
            put("a", b"strict", b"w3-while-c-is-away", w=3)
        assert (err.value.replied, err.value.needed) == (2, 3)
        with pytest.raises(ring.QuorumError) as err:
            put("c", b"minority", b"written-on-the-minority-side", w=2)
        assert (err.value.replied, err.value.needed) == (1, 2)
        with pytest.raises(ring.QuorumError) as err:
            through("c", lambda c: c.get(b"p0", r=2))
        assert (err.value.replied, err.value.needed) == (1, 2)
        keys += [b"strict", b"minority"]
        hints = cluster.counters("a")["hints_stored"]
        assert hints == len(written) + 1, hints  # one per write c missed, kept by a

        net.heal()
        cluster.heal()
        wait_until(
            lambda: cluster.counters("a")["hints_delivered"] >= hints, 30, "a's hints to reach c"
        )
        assert cluster.stop("c") == 0, cluster.log("c")
        storage = RocksStorage(str(tmp_path / "c"))
        try:
            at_c = {k: storage.get(DATA + k) for k in [*written, b"strict"]}
        finally:
            storage.close()
        for key, value in written.items():
            raw = at_c[key]
            assert raw is not None and rec.resolve(rec.decode(raw)) == value, key
        assert at_c[b"strict"] is not None  # the failed W=3 write reached c by its hint
        cluster.restart("c")
        cluster.heal()

        # --- 2. one-way: a -> c dropped, under load ------------------------------------------
        addresses = [cluster.addresses[n] for n in NAMES]
        load = Load(
            addresses, history, threads=3, keys=6, seed=7, init=lambda: enter_netns(net.ns["cl"])
        ).start()
        keys += load.keys
        progress(150, "requests before the one-way partition")
        net.drop("c", "a")
        progress(300, "requests during the one-way partition")
        for name in NAMES:
            key = f"oneway-{name}".encode()
            put(name, key, f"through {name} while a -> c is cut".encode(), w=2)
            keys.append(key)
        seen_by_a = cluster.states("a")
        net.heal()
        cluster.heal()

        # --- 3. c isolated again, under load -------------------------------------------------
        progress(150, "requests before the isolation")
        net.isolate("c", ("a", "b"))
        views({"a": c_out, "b": c_out}, "c cut off under load")
        progress(300, "requests while c is cut off")
        for name in ("a", "b"):
            key = f"majority-{name}".encode()
            put(name, key, f"through {name} while c is cut off".encode(), w=2)
            keys.append(key)
        net.heal()
        cluster.heal()
        progress(150, "requests after the heal")
        load.stop()

        # --- 4. every acknowledged write, on every replica ----------------------------------
        verdict = verify_after_heal(cluster, history, keys, "partitions")
        print(
            f"a saw {seen_by_a} during the one-way partition; {load.ops} requests; {verdict.stats}"
        )
        assert verdict.stats["acknowledged writes"] > 100, verdict.stats
    finally:
        if load is not None:
            load.stopping.set()
        cluster.close()
        pool.shutdown(wait=False, cancel_futures=True)
