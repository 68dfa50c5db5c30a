"""``ringctl --nodes ... save`` and ``load`` against real ``ringd`` clusters on 127.0.0.1.

A source cluster (3 nodes, N=2, so each member owns only part of the ring) holds plain values,
concurrent siblings, deletes and a key that is not UTF-8; it is saved while a thread keeps
writing, loaded into a fresh 3-node cluster (N=3), loaded again, and exchanged with embedded
stores. The last test stops members of the source cluster: one down still saves everything,
two down leave partitions without a replica and the save refuses (exit 5). Every cluster is
stopped by PID at the end (``Cluster.close``); nothing waits a fixed time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import ring
from ring.aio import AsyncClient
from ring.cli import dump, transfer
from ring.core import record as rec
from tests.cli.conftest import Result, records, run_main, run_process
from tests.cli.test_save_load import damaged_dumps
from tests.integration.harness import Cluster, wait_until

pytestmark = pytest.mark.integration

PARTITIONS = ["--partitions", "64"]
PLAIN = [f"plain:{i:04d}".encode() for i in range(600)]
SIBLINGS = [f"sib:{i:02d}".encode() for i in range(15)]
DELETED = [f"gone:{i:02d}".encode() for i in range(15)]
ODD_KEY, ODD_VALUE = b"\xff\xfe odd", b"\x00\x80\xff"
POPULATED = [*PLAIN, *SIBLINGS, *DELETED, ODD_KEY]


def nodes_of(cluster: Cluster, *names: str) -> str:
    return ",".join(cluster.addresses[n] for n in names or sorted(cluster.procs))


def values(client: ring.client.Client, key: bytes) -> list[bytes]:
    return sorted(client.get_versioned(key).values)


def dump_records(file: Path) -> dict[bytes, rec.Record]:
    with file.open("rb") as f:
        dump.verify(f)
        return dict(dump.read(f))


def snapshot(cluster: Cluster) -> dict[str, dict[bytes, bytes]]:
    """Every running member's stored records (of the partitions it owns), as bytes."""
    out: dict[str, dict[bytes, bytes]] = {}
    for name in sorted(cluster.procs):
        held: dict[bytes, bytes] = {}
        with cluster.client(name) as client:
            after = None
            while True:
                page = client.records(after)
                items = page["items"]
                held.update(zip(items[0::2], items[1::2]))
                if page["done"]:
                    break
                after = page["after"]
        out[name] = held
    return out


@dataclass
class Source:
    cluster: Cluster
    expected: dict[bytes, list[bytes]]  # populated key -> its live values, sorted


@dataclass
class Saved:
    result: Result  # of the save
    file: Path
    acked_before: list[bytes]  # live:* keys acknowledged before the save began
    written_during: int  # live:* keys acknowledged while the save ran


def start(root: Path, n: int) -> Cluster:
    cluster = Cluster(root, n=n, r=2, w=2, extra=PARTITIONS)
    try:
        cluster.start("n1", "n2", "n3")
        cluster.converge(cluster.all_up())
    except BaseException:
        cluster.close()
        raise
    return cluster


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    cluster = start(tmp_path_factory.mktemp("src"), n=2)
    try:
        with cluster.client("n1") as one, cluster.client("n2") as two:
            for key in PLAIN:
                one.put(key, b"value of " + key)
            for key in SIBLINGS:
                # Two writes from the same old context, through two coordinators: concurrent.
                one.put(key, b"base")
                ctx = one.get_versioned(key).context
                one.put(key, b"left", context=ctx)
                two.put(key, b"right", context=ctx)
            for key in DELETED:
                one.put(key, b"soon deleted")
                two.delete(key)
            one.put(ODD_KEY, ODD_VALUE)
            expected = {key: values(one, key) for key in POPULATED}
        assert all(expected[k] == [b"left", b"right"] for k in SIBLINGS)
        assert all(expected[k] == [] for k in DELETED)
        yield Source(cluster, expected)
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def dst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = start(tmp_path_factory.mktemp("dst"), n=3)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def saved(src: Source, tmp_path_factory: pytest.TempPathFactory) -> Saved:
    """The source cluster saved while a thread writes new keys through every node."""
    cluster = src.cluster
    out_dir = tmp_path_factory.mktemp("saved")
    file = out_dir / "cluster.dump"
    acked: list[bytes] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        try:
            with cluster.client() as client:
                i = 0
                while not stop.is_set():
                    key = f"live:{i:06d}".encode()
                    client.put(key, b"v" + key)
                    acked.append(key)
                    i += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        wait_until(lambda: len(acked) >= 50 or failures, 15, "the writer to get going")
        before = list(acked)
        result = run_main("--nodes", nodes_of(cluster), "save", str(file))
        during = len(acked) - len(before)
    finally:
        stop.set()
        writer.join(15)
    assert not failures, failures
    return Saved(result, file, before, during)


def test_save_under_writes_holds_every_acknowledged_write_siblings_and_tombstones(
    src: Source, saved: Saved
) -> None:
    r = saved.result
    assert r.code == 0, r.err
    assert r.err == ""  # not a terminal: no progress, no notes
    got = dump_records(saved.file)
    assert r.text.startswith(f"saved {len(got):,} records")
    assert saved.written_during > 0  # the writes went on while the save read the cluster
    for key in saved.acked_before:
        assert [s.value for s in got[key].live] == [b"v" + key], key
    for key in POPULATED:
        assert sorted(s.value for s in got[key].live) == src.expected[key], key
    for key in DELETED:  # the delete is in the dump as a tombstone, not as a missing key
        assert got[key].is_deleted and got[key].siblings
    assert got[ODD_KEY].live[0].value == ODD_VALUE
    # No temporary file or directory is left beside the dump.
    assert sorted(p.name for p in saved.file.parent.iterdir()) == ["cluster.dump"]


def test_load_into_a_fresh_cluster_reproduces_the_dump_exactly(
    src: Source, saved: Saved, dst: Cluster, tmp_path: Path
) -> None:
    got = dump_records(saved.file)
    r = run_main("--nodes", nodes_of(dst, "n2"), "load", str(saved.file))
    assert (r.code, r.err) == (0, "")
    assert r.text.startswith(f"loaded {len(got):,} records")
    with dst.client() as client:
        for key in POPULATED:
            assert values(client, key) == src.expected[key], key
        for key in DELETED:
            assert client.get(key) is None
        for key in saved.acked_before:
            assert client.get(key) == b"v" + key
    # Saving the new cluster gives the very same dump: same records, same bytes.
    again = tmp_path / "dst.dump"
    r = run_main("--nodes", nodes_of(dst), "save", str(again), tty_stderr=True)
    assert r.code == 0, r.err
    assert r.err.startswith("\rsave: reading hints") and r.err.endswith("\r")  # erased
    assert again.read_bytes() == saved.file.read_bytes()
    out = run_process("--nodes", nodes_of(dst, "n3"), "save", "-")
    assert out.code == 0 and out.err.startswith(f"saved {len(got):,} records (")
    assert out.out == saved.file.read_bytes()


def test_loading_twice_changes_nothing_and_an_old_dump_loses_nothing_newer(
    saved: Saved, dst: Cluster
) -> None:
    before = snapshot(dst)
    assert sum(len(held) for held in before.values()) > 0
    r = run_main("--nodes", nodes_of(dst), "load", str(saved.file))
    assert r.code == 0, r.err
    assert snapshot(dst) == before
    # Newer writes than the dump: the old dump loaded again leaves them as they are.
    with dst.client("n3") as client:
        client.put(SIBLINGS[0], b"resolved", context=client.get_versioned(SIBLINGS[0]).context)
        client.delete(PLAIN[0], context=client.get_versioned(PLAIN[0]).context)
        client.put(DELETED[0], b"back again")
    assert run_main("--nodes", nodes_of(dst), "load", str(saved.file)).code == 0
    with dst.client() as client:
        assert values(client, SIBLINGS[0]) == [b"resolved"]
        assert client.get(PLAIN[0]) is None
        assert client.get(DELETED[0]) == b"back again"


def test_load_retries_a_failed_record_and_reports_those_that_keep_failing(
    saved: Saved, dst: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer, "LOAD_RETRY_PAUSE_S", 0.0)
    real = AsyncClient.absorb
    flaky, broken = PLAIN[1], PLAIN[2]
    tries: dict[bytes, int] = {}

    async def absorb(self: AsyncClient, key: bytes, record: bytes, w: int | None = None) -> None:
        tries[key] = tries.get(key, 0) + 1
        if key == broken or (key == flaky and tries[key] == 1):
            raise ring.QuorumError("1 of 2 replicas answered", replied=1, needed=2)
        await real(self, key, record, w)

    monkeypatch.setattr(AsyncClient, "absorb", absorb)
    r = run_main("--nodes", nodes_of(dst), "load", str(saved.file), tty_stderr=True)
    total = len(dump_records(saved.file))
    assert r.code == 5
    assert tries[flaky] == 2 and tries[broken] == transfer.LOAD_ATTEMPTS
    assert f"\rload: merging 0/{total:,} records into 3 members" in r.err
    assert (
        f"ringctl: error: 1 of {total:,} records could not be merged into the cluster after "
        f"{transfer.LOAD_ATTEMPTS} tries each (keys 'plain:0002'; first error: QuorumError: "
        f"1 of 2 replicas answered); the other {total - 1:,} were. Loading the same dump again "
        "is safe and retries them\n"
    ) in r.err


def test_interrupted_load_says_how_far_it_got(
    saved: Saved, dst: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer, "LOAD_WINDOW", 4)
    real = AsyncClient.absorb
    calls = []

    async def absorb(self: AsyncClient, key: bytes, record: bytes, w: int | None = None) -> None:
        calls.append(key)
        if len(calls) == 100:
            raise KeyboardInterrupt
        await real(self, key, record, w)

    monkeypatch.setattr(AsyncClient, "absorb", absorb)
    r = run_main("--nodes", nodes_of(dst), "load", str(saved.file))
    assert r.code == 130
    total = len(dump_records(saved.file))
    assert "records into the cluster; loading the same dump again is safe" in r.err
    done = int(r.err.split("interrupted after merging ")[1].split(" of ")[0].replace(",", ""))
    assert 90 <= done < 100 and f" of {total:,} " in r.err


def test_a_ring_change_during_the_save_starts_it_again_once(
    dst: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = transfer._read_cluster
    changes = [2]

    async def read(*args: Any) -> Any:
        if changes[0]:
            changes[0] -= 1
            raise transfer._RingChanged("n2", 7, 8)
        return await real(*args)

    monkeypatch.setattr(transfer, "_read_cluster", read)
    monkeypatch.setattr(transfer.time, "sleep", lambda s: None)
    file = tmp_path / "changed.dump"
    r = run_main("--nodes", nodes_of(dst), "save", str(file))
    assert r.code == 5
    assert "the ring changed during the save, twice (n2 answered on ring epoch 8" in r.err
    assert os.listdir(tmp_path) == []
    changes[0] = 1
    r = run_main("--nodes", nodes_of(dst), "save", str(file))
    assert r.code == 0, r.err
    assert os.listdir(tmp_path) == ["changed.dump"]


def _embedded_dump(tmp_path: Path) -> tuple[str, Path]:
    path = str(tmp_path / "embedded")
    with ring.open(path, name="emb") as store:
        for i in range(30):
            store.put(f"emb:{i:02d}", f"embedded value {i}")
        store.put("emb:sib", "base")
        ctx = store.get_versioned("emb:sib").context
        store.put("emb:sib", "one", context=ctx)
        store.put("emb:sib", "two", context=ctx)
        store.put("emb:gone", "x")
        store.delete("emb:gone")
    file = tmp_path / "embedded.dump"
    r = run_main("--data", path, "save", str(file))
    assert r.code == 0, r.err
    return path, file


@pytest.mark.parametrize("damage", ["cut in the middle", "trailer cut off", "one byte flipped"])
def test_a_damaged_dump_is_refused_and_nothing_reaches_the_cluster(
    dst: Cluster, tmp_path: Path, damage: str
) -> None:
    _, file = _embedded_dump(tmp_path)
    bad = tmp_path / "bad.dump"
    bad.write_bytes(damaged_dumps(file)[damage])
    before = snapshot(dst)
    r = run_main("--nodes", nodes_of(dst), "load", str(bad))
    assert r.code == 3, r.err
    assert ("checksum mismatch" if damage == "one byte flipped" else "truncated") in r.err
    assert r.out == b""
    assert snapshot(dst) == before
    with dst.client() as client:
        assert client.get("emb:07") is None


def test_embedded_dump_into_a_cluster_and_cluster_dump_into_an_embedded_store(
    saved: Saved, dst: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, file = _embedded_dump(tmp_path)
    monkeypatch.setenv("RINGKV_NODES", nodes_of(dst))  # the cluster from the environment
    r = run_process("load", str(file))
    assert r.code == 0, r.err
    with ring.open(path) as store, dst.client() as client:
        for key, _ in store.scan_records():
            assert values(client, key) == sorted(store.get_versioned(key).values), key
        assert values(client, "emb:sib") == [b"one", b"two"]
        assert client.get("emb:gone") is None
    monkeypatch.delenv("RINGKV_NODES")
    into = tmp_path / "from-cluster"
    r = run_main("--data", str(into), "load", str(saved.file))
    assert r.code == 0, r.err
    assert records(into) == dump_records(saved.file)


def test_members_down_one_saves_everything_two_leave_partitions_without_replica(
    src: Source, saved: Saved, tmp_path: Path
) -> None:
    cluster = src.cluster
    assert cluster.stop("n3") == 0
    cluster.converge({"n1": "up", "n2": "up", "n3": "down"}, timeout=20)
    # Written while n3 is down: keys it owns get a hint for it on another node.
    late = [f"late:{i:02d}".encode() for i in range(40)]
    with cluster.client("n1", "n2") as client:
        for key in late:
            client.put(key, b"late " + key)
    kept = []
    for name in ("n1", "n2"):
        with ring.connect(cluster.addresses[name]) as client:
            kept += client.records(hints=True)["items"][0::2]
    assert set(kept) & set(late)  # what the save reads first

    file = tmp_path / "one-down.dump"
    r = run_main("--nodes", nodes_of(cluster, "n1"), "save", str(file))
    assert r.code == 0, r.err
    got = dump_records(file)
    for key in [*POPULATED, *saved.acked_before]:
        assert key in got, key
    for key in late:
        assert [s.value for s in got[key].live] == [b"late " + key]

    assert cluster.stop("n2") == 0
    out = tmp_path / "out"
    out.mkdir()
    r = run_process("--nodes", nodes_of(cluster, "n1"), "save", str(out / "two-down.dump"))
    assert r.code == 5, r.err
    assert r.err.startswith("ringctl: error: cannot save the whole cluster: ")
    assert "partitions have no replica that answered" in r.err
    assert "n2" in r.err and "n3" in r.err and "Nothing was written" in r.err
    assert os.listdir(out) == []  # no dump, no temporary file or directory


def test_a_copy_that_does_not_decode_is_skipped_unless_no_replica_has_a_good_one(
    tmp_path: Path,
) -> None:
    good = rec.encode(rec.write(rec.EMPTY, "n1@1", b"value", 1000, None))
    merged = transfer._Merged(str(tmp_path))
    try:
        merged.merge("n1", [b"a", b"\x07not a record", b"b", good])
        merged.merge("n2", [b"a", good])
        transfer._check_corrupt(merged)  # a's good copy came from n2
        assert list(merged.items()) == [(b"a", good), (b"b", good)]
        merged.merge("n2", [b"c", b"\x07not a record"])
        with pytest.raises(ring.CorruptData, match="key 'c' on n2 does not decode"):
            transfer._check_corrupt(merged)
    finally:
        merged.close()
    assert os.listdir(tmp_path) == []
