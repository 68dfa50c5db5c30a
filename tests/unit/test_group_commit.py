"""GroupCommitStorage: writes wait in one batch, reads see them, commit applies them at once;
with ``sync`` the batches are written, in order, by one worker thread while new writes gather."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from ring.storage import MemoryStorage, RocksStorage
from ring.storage.group import CommitFailed, GroupCommitStorage


def test_pending_writes_are_visible_and_committed_as_one_batch(tmp_path: Path) -> None:
    base = RocksStorage(str(tmp_path / "db"))
    store = GroupCommitStorage(base)
    base.put(b"old", b"1")
    store.put(b"a", b"1")
    store.write([(b"b", b"2")], [b"old"])
    assert store.get(b"a") == b"1" and store.get(b"b") == b"2" and store.get(b"old") is None
    assert base.get(b"a") is None and base.get(b"old") == b"1"  # nothing reached the disk yet
    assert store.start_commit() is None  # without sync: written on return
    assert store.commits == 1
    assert base.get(b"a") == b"1" and base.get(b"b") == b"2" and base.get(b"old") is None
    store.commit()  # nothing pending: no empty batch
    assert store.commits == 1
    store.close()


def test_sync_writes_commit_what_is_pending_first_and_close_commits_the_rest(
    tmp_path: Path,
) -> None:
    base = RocksStorage(str(tmp_path / "db"))
    store = GroupCommitStorage(base)
    store.put(b"k1", b"v1")
    assert list(store.scan(b"k")) == [(b"k1", b"v1")]
    store.put(b"k2", b"v2")
    store.write([(b"meta", b"x")], sync=True)  # identity writes are durable when they return
    assert base.get(b"k2") == b"v2" and base.get(b"meta") == b"x"
    store.put(b"k3", b"v3")
    store.close()  # closing commits the rest
    reopened = RocksStorage(str(tmp_path / "db"))
    assert reopened.get(b"k3") == b"v3"
    reopened.close()


class GatedStorage(MemoryStorage):
    """A base store whose writes wait at a gate (one ``threading.Event`` per write, in order)
    and that records which thread wrote what, and whether two writes ever overlapped."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[threading.Event] = []
        self.entered = threading.Semaphore(0)
        self.writes: list[tuple[str, list[bytes], bool]] = []  # thread, keys (b"-" + deleted), sync
        self.active = 0
        self.overlapped = False
        self.fail_with: Exception | None = None

    def write(
        self,
        puts: Iterable[tuple[bytes, bytes]],
        deletes: Iterable[bytes] = (),
        *,
        sync: bool = False,
    ) -> None:
        puts, deletes = list(puts), list(deletes)
        self.active += 1
        self.overlapped |= self.active > 1
        index = len(self.writes)
        keys = [k for k, _ in puts] + [b"-" + k for k in deletes]
        self.writes.append((threading.current_thread().name, keys, sync))
        self.entered.release()
        try:
            if index < len(self.gates):
                assert self.gates[index].wait(10), "the test never opened the gate"
            if self.fail_with is not None:
                raise self.fail_with
            super().write(puts, deletes, sync=sync)
        finally:
            self.active -= 1


def _entered(base: GatedStorage) -> None:
    assert base.entered.acquire(timeout=10), "the worker never started the write"


def test_with_sync_one_batch_is_in_flight_and_the_next_covers_what_arrived_meanwhile() -> None:
    base = GatedStorage()
    base.gates = [threading.Event(), threading.Event()]
    store = GroupCommitStorage(base, sync=True)
    base.put(b"x", b"base")
    store.put(b"a", b"1")
    store.put(b"x", b"first")
    first = store.start_commit()
    assert first is not None
    _entered(base)  # the worker is now inside the write, held at its gate
    assert not first.done()
    # Reads see the batch in flight; new writes gather in a fresh batch, newest first.
    assert store.get(b"a") == b"1" and store.get(b"x") == b"first"
    store.put(b"x", b"second")
    store.write([(b"b", b"2")], [b"a"])
    assert store.get(b"x") == b"second" and store.get(b"a") is None and store.get(b"b") == b"2"
    second = store.start_commit()
    assert second is not None and second is not first
    store.put(b"c", b"3")  # a later loop iteration, still during the same fsync
    assert store.start_commit() is second  # it joins the next batch
    assert base.get(b"a") is None  # nothing written while the gate is closed
    base.gates[0].set()
    first.result(timeout=10)
    base.gates[1].set()
    second.result(timeout=10)
    assert store.start_commit() is None  # nothing pending or in flight
    assert [(sync, keys) for _, keys, sync in base.writes] == [
        (True, [b"a", b"x"]),
        (True, [b"x", b"b", b"c", b"-a"]),  # one fsync for all three calls
    ]
    assert all(name.startswith("ringkv-commit") for name, _, _ in base.writes)
    assert base.get(b"x") == b"second" and base.get(b"a") is None and store.commits == 2
    assert not base.overlapped
    store.close()


def test_a_write_that_must_be_durable_on_return_comes_after_the_batch_in_flight() -> None:
    # A sync=True write (node identity) must not overtake a batch in flight: written first, it
    # would be overwritten by that older batch.
    base = GatedStorage()
    base.gates = [threading.Event()]
    store = GroupCommitStorage(base, sync=True)
    store.put(b"k", b"old")
    assert store.start_commit() is not None
    _entered(base)
    store.put(b"k", b"new")
    opener = threading.Timer(0.05, base.gates[0].set)  # the disk answers a little later
    opener.start()
    store.write([(b"meta", b"x")], sync=True)
    opener.join()
    assert [keys for _, keys, _ in base.writes] == [[b"k"], [b"k", b"meta"]]
    assert base.get(b"k") == b"new" and base.get(b"meta") == b"x" and not base.overlapped
    store.close()


@pytest.mark.parametrize("sync", [False, True])
def test_after_a_failed_write_nothing_more_is_written(sync: bool) -> None:
    base = GatedStorage()
    base.fail_with = OSError(28, "No space left on device")
    store = GroupCommitStorage(base, sync=sync)
    store.put(b"a", b"1")
    if sync:
        future = store.start_commit()
        assert future is not None
        assert isinstance(future.exception(timeout=10), OSError)
    else:
        with pytest.raises(OSError, match="No space"):
            store.start_commit()
    assert isinstance(store.error, OSError)
    assert store.get(b"a") == b"1"  # still readable, never written
    base.fail_with = None  # even if the disk recovers: no batch after a hole
    store.put(b"b", b"2")
    with pytest.raises(CommitFailed) as failed:
        store.start_commit()
    assert failed.value.__cause__ is store.error
    with pytest.raises(CommitFailed):
        store.commit()
    store.close()  # does not raise; drops what was never written
    assert base.get(b"a") is None and base.get(b"b") is None and len(base.writes) == 1


def test_with_sync_the_batch_waiting_behind_a_failed_one_fails_too() -> None:
    base = GatedStorage()
    base.gates = [threading.Event()]
    base.fail_with = OSError(5, "Input/output error")
    store = GroupCommitStorage(base, sync=True)
    store.put(b"a", b"1")
    first = store.start_commit()
    _entered(base)
    store.put(b"b", b"2")
    second = store.start_commit()
    assert first is not None and second is not None
    base.gates[0].set()
    assert isinstance(first.exception(timeout=10), OSError)
    assert isinstance(second.exception(timeout=10), CommitFailed)
    assert len(base.writes) == 1  # the second batch never reached the base store
    store.close()


def test_close_waits_for_the_batch_in_flight_and_writes_what_is_pending(tmp_path: Path) -> None:
    base = GatedStorage()
    base.gates = [threading.Event()]
    store = GroupCommitStorage(base, sync=True)
    store.put(b"a", b"1")
    assert store.start_commit() is not None
    _entered(base)
    store.put(b"b", b"2")
    threading.Timer(0.05, base.gates[0].set).start()
    store.close()
    assert base.get(b"a") == b"1" and base.get(b"b") == b"2" and store.commits == 2


@pytest.mark.parametrize("seed", range(30))
def test_scan_merges_pending_and_in_flight_writes_over_the_base(seed: int) -> None:
    rng = random.Random(seed)
    keys = [bytes([c]) + bytes([d]) for c in b"abc" for d in b"xyz"]
    model = MemoryStorage()  # what the store must show: every write applied at once
    base = GatedStorage()
    store = GroupCommitStorage(base, sync=True)
    for key in rng.sample(keys, 5):
        base.put(key, b"base")
        model.put(key, b"base")
    # Batch 0 goes to the base store, batch 1 is held in flight at its gate, batch 2 pending.
    base.gates = [threading.Event(), threading.Event()]
    base.gates[0].set()
    for batch in range(3):
        for _ in range(rng.randrange(1, 8)):
            key, value = rng.choice(keys), f"v{rng.randrange(99)}".encode()
            if rng.random() < 0.3:
                store.write((), [key])
                model.write((), [key])
            else:
                store.put(key, value)
                model.put(key, value)
        if batch < 2:
            future = store.start_commit()
            assert future is not None
            _entered(base)  # sealed: later writes go to the next batch
            if batch == 0:
                future.result(timeout=10)
    for _ in range(20):
        prefix = rng.choice([None, b"a", b"b", b"c"])
        start = rng.choice([None, b"ay", b"bx", b"c"])
        stop = rng.choice([None, b"bz", b"cy"])
        reverse = rng.random() < 0.5
        limit = rng.choice([None, 0, 1, 3, 100])
        got = list(store.scan(prefix, start, stop, reverse, limit))
        assert got == list(model.scan(prefix, start, stop, reverse, limit)), (
            prefix,
            start,
            stop,
            reverse,
            limit,
        )
    for gate in base.gates:
        gate.set()
    store.close()


def test_a_hint_dropped_twice_between_commits_leaves_nothing_on_disk() -> None:
    """The index of hints and the disk agree whatever the order of stores, drops and commits:
    found by the simulator's soak when a drop tried to take back an uncommitted write instead of
    deleting (it also took back the delete queued before it, and a hint stayed on disk that the
    index no longer knew: it was never handed off)."""
    from ring.core import record as rec
    from ring.core.hints import HintStore
    from ring.core.layout import HINT

    base = MemoryStorage()
    grouped = GroupCommitStorage(base)
    hints = HintStore(grouped)
    one = rec.encode(rec.write(rec.EMPTY, "a@1", b"v", 1))
    two = rec.encode(rec.write(rec.EMPTY, "a@1", b"w", 2))
    hints.store_own("c", b"k", one)
    grouped.commit()
    hints.drop("c", b"k")  # a delete, pending
    hints.store_own("c", b"k", two)  # written again before the commit
    hints.drop("c", b"k")
    grouped.commit()
    assert hints.counts() == {} and list(base.scan(HINT)) == []
    assert HintStore(grouped).counts() == {}  # a restart finds what the index said
