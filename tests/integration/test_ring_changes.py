"""Ring changes on real ``ringd`` processes: data follows ownership.

* **grow** 3 -> 6 under a load: every key stays readable (R=2) while partitions move, and in the
  end each key is on exactly its three owners' data directories (and nowhere else);
* **leave** under a load (``ringctl leave``): the leaving node hands its partitions off, deletes
  its copies and exits 0 by itself;
* **remove** of a node killed with ``kill -9``: its partitions are rebuilt from the survivors;
* **kill -9 in the middle of a transfer**, of the receiver and then of a sender (transfers
  throttled to 1 MB/s so that they last a few seconds): the transfer resumes and completes, and
  nothing acknowledged is lost;
* a handoff rate below 1 MB/s (``--handoff-rate-mb-s 0.5``) is accepted (ringd once refused
  every tuning value below 1, this float one too).

Every process is started on port 0 and killed by PID in ``Cluster.close()``; every wait polls a
condition against a deadline (no fixed sleeps). The data directories are opened after a clean
stop (exit 0) to check where each key's record is.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

import ring
from ring.core import record as rec
from ring.core.layout import DATA
from ring.storage import RocksStorage
from tests.integration.harness import Cluster, History, Load, wait_until

pytestmark = pytest.mark.integration

KEYS = 4000
GROW_VALUE = 1000  # 4 MB of values; each newcomer copies 2 MB at 1 MB/s


def user_keys(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}{i:05d}".encode() for i in range(n)]


def value_of(key: bytes, size: int = 0) -> bytes:
    return b"v:" + key + b":" + b"x" * size


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def write_keys(
    addresses: Sequence[str],
    keys: Sequence[bytes],
    value: Callable[[bytes], bytes],
    threads: int = 4,
) -> None:
    """Put every key with W=2, ``threads`` clients in parallel; any failure fails the test."""
    errors: list[BaseException] = []

    def run(part: Sequence[bytes], i: int) -> None:
        try:
            rotated = list(addresses[i % len(addresses) :]) + list(addresses[: i % len(addresses)])
            with ring.connect(rotated, timeout=10) as client:
                for key in part:
                    client.put(key, value(key), w=2)
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    workers = [
        threading.Thread(target=run, args=(keys[i::threads], i), daemon=True)
        for i in range(threads)
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join(120)
    assert not any(t.is_alive() for t in workers), "a writer hangs"
    if errors:
        raise AssertionError(f"writing the keys failed: {errors[0]!r}") from errors[0]


def read_all(address: str, keys: Sequence[bytes], value: Callable[[bytes], bytes]) -> list[str]:
    """Read every key with R=2 through ``address``; what did not come back right."""
    wrong = []
    with ring.connect([address], timeout=10, smart=False) as client:  # coordinated there
        for key in keys:
            try:
                got = client.get(key, r=2)
            except ring.RingError as exc:
                wrong.append(f"{key!r} via {address}: {exc!r}")
                continue
            if got != value(key):
                wrong.append(f"{key!r} via {address}: {got!r}")
    return wrong


class Reader:
    """``threads`` threads reading every key with R=2 in a loop, each starting at a different
    key, each pass through one node (the nodes ``addresses()`` names at the start of the pass,
    in turn), recording every read that did not return the key's value (an error counts as a
    miss)."""

    def __init__(
        self,
        addresses: Callable[[], list[str]],
        keys: Sequence[bytes],
        value: Callable[[bytes], bytes],
        threads: int = 2,
    ) -> None:
        self.addresses = addresses
        self.keys = list(keys)
        self.value = value
        self.reads = 0
        self.passes = [0] * threads
        self.misses: list[str] = []
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(i,), name=f"reader-{i}", daemon=True)
            for i in range(threads)
        ]

    def start(self) -> Reader:
        for t in self.threads:
            t.start()
        return self

    def _run(self, i: int) -> None:
        try:
            turn = i
            first = i * len(self.keys) // len(self.threads)
            keys = self.keys[first:] + self.keys[:first]
            while not self.stopping.is_set():
                nodes = self.addresses()
                address = nodes[turn % len(nodes)]
                turn += 1
                with ring.connect([address], timeout=10, smart=False) as client:
                    for key in keys:
                        self.reads += 1
                        try:
                            got = client.get(key, r=2)
                        except ring.RingError as exc:
                            self.misses.append(f"{key!r} via {address}: {exc!r}")
                            continue
                        if got != self.value(key):
                            self.misses.append(f"{key!r} via {address}: returned {got!r}")
                self.passes[i] += 1
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)

    def more_passes(self, n: int, timeout: float = 60.0) -> None:
        """Wait until every thread finished ``n`` more passes (the first may have begun
        earlier)."""
        target = [p + n for p in self.passes]

        def done() -> bool:
            if self.errors:
                raise AssertionError(f"reader failed: {self.errors[0]!r}") from self.errors[0]
            return all(p >= t for p, t in zip(self.passes, target, strict=True))

        wait_until(done, timeout, what=f"{n} more passes of reads", interval=0.02)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), "a reader hangs"
        if self.errors:
            raise AssertionError(f"reader failed: {self.errors[0]!r}") from self.errors[0]


def stored(
    root: Path, names: Sequence[str], keys: Sequence[bytes], value: Callable[[bytes], bytes]
) -> tuple[dict[bytes, set[str]], dict[str, int]]:
    """Open each stopped node's data directory: which of them hold each key (with its value;
    anything else fails the test), and how many data records each holds in all."""
    where: dict[bytes, set[str]] = {k: set() for k in keys}
    records: dict[str, int] = {}
    wrong: list[str] = []
    for name in names:
        storage = RocksStorage(str(root / name))
        try:
            count = 0
            for skey, raw in storage.scan(prefix=DATA):
                count += 1
                key = bytes(skey[len(DATA) :])
                if key in where:
                    where[key].add(name)
                    got = rec.resolve(rec.decode(bytes(raw)))
                    if got != value(key):
                        wrong.append(f"{name}: {key!r} holds {got!r}")
            records[name] = count
        finally:
            storage.close()
    assert not wrong, f"{len(wrong)} records with a wrong value: {wrong[:5]}"
    return where, records


def owners_of(cluster: Cluster, via: str, keys: Sequence[bytes]) -> dict[bytes, set[str]]:
    """Every key's owners per ``via``'s table (which must have no transfer pending)."""
    result = {}
    with cluster.client(via) as client:
        for key in keys:
            where = client.locate(key)
            assert not where["pending"], f"{key!r} still moves: {where}"
            result[key] = set(where["owners"])
    return result


def stop_all(cluster: Cluster) -> None:
    for name in sorted(cluster.procs):
        assert cluster.stop(name) == 0, f"{name} did not stop cleanly\n{cluster.log(name)}"


def no_tracebacks(cluster: Cluster, names: Sequence[str]) -> None:
    for name in names:
        text = (cluster.root / f"{name}.log").read_text(errors="replace")
        assert "Traceback" not in text, f"{name} logged a traceback:\n{text[-5000:]}"


def check_history(history: History, cluster: Cluster) -> None:
    verdict = history.check()
    assert not verdict.violations, (
        f"{len(verdict.violations)} violations ({verdict.stats}):\n"
        + "\n".join(verdict.violations[:20])
        + "\n"
        + cluster.logs()
    )
    assert verdict.stats.get("acknowledged writes", 0) > 0, verdict.stats


def serving_addresses(cluster: Cluster, names: Sequence[str]) -> list[str]:
    """The addresses of ``names`` that have said they serve."""
    return [
        cluster.addresses[n]
        for n in names
        if n in cluster.addresses
        and "serving" in (cluster.root / f"{n}.out").read_text(errors="replace")
    ]


# --- 1. grow 3 -> 6 ----------------------------------------------------------------------------


def test_grow_three_to_six_under_load(cluster: Cluster) -> None:
    old, new = ["a", "b", "c"], ["d", "e", "f"]
    cluster.extra = ["--handoff-rate-mb-s", "1"]
    cluster.start(*old)
    cluster.converge(cluster.all_up())
    keys = user_keys("g", KEYS)
    value = functools.partial(value_of, size=GROW_VALUE)
    write_keys([cluster.addresses[n] for n in old], keys, value)

    history = History()
    load = Load([cluster.addresses[n] for n in old], history, threads=2, keys=8, prefix="load")
    load.start()
    reader = Reader(lambda: serving_addresses(cluster, old + new), keys, value).start()
    try:
        load.progress(20, "before the grow")
        cluster.start(*new)
        cluster.settled(90, members=old + new)
        # a whole pass (through a node that joined, at least the last one) after the settle
        reader.more_passes(2)
        load.progress(20, "after the grow")
    finally:
        reader.stop()
        load.stop()
    assert not reader.misses, (
        f"{len(reader.misses)} of {reader.reads} reads missed: {reader.misses[:10]}\n"
        + cluster.logs()
    )
    check_history(history, cluster)

    owners = owners_of(cluster, "d", keys)
    assert all(len(o) == 3 for o in owners.values())
    assert set().union(*owners.values()) == set(old + new)
    stop_all(cluster)
    where, _ = stored(cluster.root, old + new, keys, value)
    misplaced = {k: (sorted(where[k]), sorted(owners[k])) for k in keys if where[k] != owners[k]}
    assert not misplaced, (
        f"{len(misplaced)} keys not exactly on their owners (held by, owners): "
        f"{list(misplaced.items())[:10]}"
    )
    no_tracebacks(cluster, old + new)


def test_a_handoff_rate_below_one_mb_s_is_accepted(cluster: Cluster) -> None:
    cluster.extra = ["--handoff-rate-mb-s", "0.5"]
    cluster.start("a")
    cluster.wait_serving("a")
    assert cluster.stop("a") == 0


# --- 2. leave ----------------------------------------------------------------------------------


def ringctl(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ring.cli.ringctl", "--nodes", address, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def four_nodes_under_load(
    cluster: Cluster, prefix: str, stay: list[str]
) -> tuple[list[bytes], History, Load]:
    """a, b, c, d up with KEYS keys written, and a running Load through the nodes in ``stay``."""
    names = ["a", "b", "c", "d"]
    cluster.start(*names)
    cluster.converge(cluster.all_up())
    keys = user_keys(prefix, KEYS)
    write_keys([cluster.addresses[n] for n in names], keys, value_of)
    history = History()
    load = Load([cluster.addresses[n] for n in stay], history, threads=2, keys=8, prefix="load")
    load.start()
    return keys, history, load


def test_leave_under_load(cluster: Cluster) -> None:
    names = ["a", "b", "c", "d"]
    leaver, stay = "c", ["a", "b", "d"]
    keys, history, load = four_nodes_under_load(cluster, "l", stay)
    reader = Reader(lambda: [cluster.addresses[n] for n in stay], keys, value_of).start()
    try:
        load.progress(20, "before the leave")
        with cluster.client("b") as client, pytest.raises(ring.InvalidInput, match="not a member"):
            client.leave("nosuch")
        unknown = ringctl(cluster.addresses["a"], "leave", "nosuch")
        assert unknown.returncode == 2, unknown
        assert "nosuch" in unknown.stderr, unknown

        done = ringctl(cluster.addresses["b"], "leave", leaver)
        assert done.returncode == 0, (done, cluster.logs())
        assert f"{leaver} leaves once it has handed off its data" in done.stdout, done
        assert "replica slot(s) move" in done.stdout, done
        moves = int(done.stdout.split(": ", 1)[1].split(" ", 1)[0])
        assert moves > 0, done.stdout
        # asked again: it is on its way out already
        with cluster.client("d") as client, pytest.raises(ring.InvalidInput, match="already"):
            client.leave(leaver)

        proc = cluster.procs[leaver]
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{leaver} did not exit after leaving\n{cluster.logs()}") from None
        assert code == 0, cluster.log(leaver)
        del cluster.procs[leaver]
        assert f"ringd {leaver} left" in (cluster.root / f"{leaver}.out").read_text()

        cluster.settled(60, members=stay)
        reader.more_passes(2)
        load.progress(20, "after the leave")
    finally:
        reader.stop()
        load.stop()
    assert not reader.misses, (
        f"{len(reader.misses)} of {reader.reads} reads missed: {reader.misses[:10]}\n"
        + cluster.logs()
    )
    check_history(history, cluster)
    with cluster.client("a") as client:
        status = client.status()
        assert sorted(m["name"] for m in status["members"] if m["partitions"]) == stay
    for name in stay:
        assert not read_all(cluster.addresses[name], keys[::7], value_of)

    stop_all(cluster)
    where, records = stored(cluster.root, names, keys, value_of)
    misplaced = {k: sorted(w) for k, w in where.items() if w != set(stay)}
    assert not misplaced, f"{len(misplaced)} keys not on exactly {stay}: {list(misplaced)[:10]}"
    assert records[leaver] == 0, f"{leaver} kept {records[leaver]} data records after leaving"
    no_tracebacks(cluster, names)


# --- 3. remove ---------------------------------------------------------------------------------


def test_remove_of_a_killed_node(cluster: Cluster) -> None:
    dead, stay = "b", ["a", "c", "d"]
    keys, history, load = four_nodes_under_load(cluster, "r", stay)
    try:
        load.progress(20, "before the kill")
        with cluster.client("a") as client, pytest.raises(ring.InvalidInput, match="alive"):
            client.remove(dead)  # refused while it runs: that is what `leave` is for
        cluster.kill9(dead)
        cluster.converge({n: "up" for n in stay} | {dead: "down"}, 30)
        with cluster.client("c") as client:
            result = client.remove(dead)
        assert result["name"] == dead and result["moves"] > 0, result
        assert sorted(result["members"]) == stay, result
        cluster.settled(60, members=stay)
        load.progress(20, "after the remove")
    finally:
        load.stop()
    check_history(history, cluster)
    for name in stay:
        wrong = read_all(cluster.addresses[name], keys, value_of)
        assert not wrong, f"{len(wrong)} reads via {name} missed: {wrong[:10]}\n{cluster.logs()}"

    stop_all(cluster)
    where, _ = stored(cluster.root, stay, keys, value_of)
    misplaced = {k: sorted(w) for k, w in where.items() if w != set(stay)}
    assert not misplaced, f"{len(misplaced)} keys not on exactly {stay}: {list(misplaced)[:10]}"
    no_tracebacks(cluster, stay)


# --- 4. kill -9 in the middle of a transfer ----------------------------------------------------


def handoff(cluster: Cluster, name: str) -> dict[str, int]:
    with cluster.client(name) as client:
        status = client.status()
    return dict(status["handoff"]) | {"transfers_pending": status["transfers_pending"]}


class Writer:
    """A thread writing new keys (W=2) through the given nodes, keeping the acknowledged ones."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.acked: list[bytes] = []
        self.failed = 0
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def start(self) -> Writer:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            with ring.connect(self.addresses, timeout=5) as client:
                i = 0
                while not self.stopping.is_set():
                    key = f"w{i:06d}".encode()
                    i += 1
                    try:
                        client.put(key, value_of(key), w=2)
                        self.acked.append(key)
                    except ring.RingError:
                        self.failed += 1
                        self.stopping.wait(0.05)
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the writer hangs"
        if self.errors:
            raise AssertionError(f"writer failed: {self.errors[0]!r}") from self.errors[0]


def test_kill9_of_receiver_and_sender_during_a_transfer(cluster: Cluster) -> None:
    # 1500 values of 4 KB: 6 MB on each of the three nodes; the newcomer copies a quarter of it
    # from each (1.5 MB, two pages of ~1 MB), 4.5 MB in all at 1 MB/s.
    size = 4000
    cluster.extra = ["--handoff-rate-mb-s", "1"]
    old, receiver = ["a", "b", "c"], "d"
    cluster.start(*old)
    cluster.converge(cluster.all_up())
    keys = user_keys("t", 1500)

    def value(key: bytes) -> bytes:
        return value_of(key, size) if key.startswith(b"t") else value_of(key)

    write_keys([cluster.addresses[n] for n in old], keys, value)
    writer = Writer([cluster.addresses[n] for n in old]).start()
    try:
        cluster.start(receiver)

        def receiving(least: int) -> bool:
            h = handoff(cluster, receiver)
            return h["transfers_pending"] > 0 and h["received_bytes"] >= least

        wait_until(lambda: receiving(100_000), 30, what=f"{receiver} to receive some data")
        assert handoff(cluster, receiver)["received_bytes"] < 4_000_000, "copied too fast"
        cluster.kill9(receiver)
        sent = {n: handoff(cluster, n)["sent_bytes"] for n in old}
        cluster.restart(receiver)
        wait_until(lambda: receiving(100_000), 30, what=f"{receiver} to receive again")
        # The sender of the first page since the restart: its stream is half done (one of two
        # pages), the others wait for the throttle.
        now = {n: handoff(cluster, n)["sent_bytes"] - sent[n] for n in old}
        sender = max(old, key=lambda n: now[n])
        assert 0 < now[sender] < 1_400_000, f"sent since the restart: {now}"
        assert handoff(cluster, receiver)["transfers_pending"] > 0, "the transfer ended already"
        cluster.kill9(sender)
        cluster.restart(sender)
        cluster.settled(90, members=[*old, receiver])
    finally:
        writer.stop()
    assert len(writer.acked) > 0, "no write was acknowledged during the transfer"
    # the receiver's run after its restart copied the sender's partitions to the end
    last_run = cluster.log(receiver, tail=100_000).rsplit("listening on", 1)[1]
    assert re.search(rf"transfer from {sender}: \d+ partition\(s\) copied", last_run), last_run
    everything = keys + writer.acked
    for name in [*old, receiver]:
        wrong = read_all(cluster.addresses[name], everything, value)
        assert not wrong, f"{len(wrong)} reads via {name} missed: {wrong[:10]}\n{cluster.logs()}"

    owners = owners_of(cluster, receiver, everything)
    stop_all(cluster)
    where, _ = stored(cluster.root, [*old, receiver], everything, value)
    misplaced = {
        k: (sorted(where[k]), sorted(owners[k])) for k in everything if where[k] != owners[k]
    }
    assert not misplaced, (
        f"{len(misplaced)} keys not exactly on their owners (held by, owners): "
        f"{list(misplaced.items())[:10]}"
    )
    assert all(len(o) == 3 for o in owners.values())
    no_tracebacks(cluster, [*old, receiver])
