"""The embedded store, ``ring.open``: the API an application programs against."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ring
from ring import embedded
from ring.core.layout import DATA

KIB = 1024
MIB = 1024 * 1024


@pytest.fixture(params=["rocksdb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ring.Store]:
    s = ring.open(str(tmp_path / "data"), backend=request.param)
    yield s
    s.close()


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "data")


class FakeClock:
    """Stands in for the store's wall clock so sibling timestamps are chosen by the test."""

    def __init__(self, *times: int) -> None:
        self.times = list(times)

    def __call__(self) -> int:
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


def stored_keys(s: ring.Store) -> list[bytes]:
    """Every key with a stored record, tombstones included."""
    return [k for k, _ in s.scan_records()]


# --- basic operations -------------------------------------------------------------------------


def test_put_get_delete(store: ring.Store) -> None:
    assert store.get(b"k") is None
    store.put(b"k", b"v1")
    assert store.get(b"k") == b"v1"
    store.put(b"k", b"v2")
    assert store.get(b"k") == b"v2"
    store.delete(b"k")
    assert store.get(b"k") is None
    store.delete(b"never-written")
    assert store.get(b"never-written") is None


def test_empty_key_and_value(store: ring.Store) -> None:
    store.put(b"", b"")
    assert store.get(b"") == b""
    assert store.get_versioned(b"").values == (b"",)


def test_str_is_utf8(store: ring.Store) -> None:
    store.put("ключ", "значение ✓")
    assert store.get("ключ") == "значение ✓".encode()
    assert store.get("ключ".encode()) == "значение ✓".encode()
    assert list(store.scan(prefix="кл")) == [("ключ".encode(), "значение ✓".encode())]
    store.delete("ключ")
    assert store.get(b"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87") is None


def test_bytes_like_values_are_accepted(store: ring.Store) -> None:
    store.put(bytearray(b"k1"), bytearray(b"v1"))
    store.put(memoryview(b"k2"), memoryview(b"v2"))
    assert store.get(b"k1") == b"v1"
    assert store.get(b"k2") == b"v2"


def test_get_versioned_of_missing_and_single_value(store: ring.Store) -> None:
    v = store.get_versioned(b"k")
    assert v.values == () and v.value is None and not v
    store.put(b"k", b"v")
    v = store.get_versioned(b"k")
    assert v.values == (b"v",) and v.value == b"v" and v
    assert isinstance(v.context, bytes) and v.context


def test_data_survives_close_and_reopen(path: str) -> None:
    with ring.open(path) as s:
        s.put(b"a", b"1")
        s.put(b"b", b"2")
        s.delete(b"b")
    with ring.open(path) as s:
        assert s.get(b"a") == b"1"
        assert s.get(b"b") is None


def test_deleted_key_stays_deleted_after_reopen(path: str) -> None:
    with ring.open(path) as s:
        s.put(b"k", b"v")
        s.put(b"other", b"x")
        s.delete(b"k")
    with ring.open(path) as s:
        assert s.get(b"k") is None
        assert s.get_versioned(b"k").values == ()
        assert list(s.scan()) == [(b"other", b"x")]
        s.put(b"k", b"back")  # and a new put brings it back
    with ring.open(path) as s:
        assert s.get(b"k") == b"back"


def test_sync_setting_stores_durably_through_every_path(path: str) -> None:
    with ring.open(path, sync=True) as s:
        s.put(b"a", b"1")
        s.put(b"b", b"2", context=b"")
        s.delete(b"a")
        with s.batch() as b:
            b.put(b"c", b"3")
    with ring.open(path) as s:
        assert dict(s.scan()) == {b"b": b"2", b"c": b"3"}


# --- scan -------------------------------------------------------------------------------------


def test_scan(store: ring.Store) -> None:
    for k in [b"a", b"b1", b"b2", b"b3", b"c", b"\xff", b"\xff\xff"]:
        store.put(k, b"v" + k)
    store.delete(b"b2")
    assert [k for k, _ in store.scan()] == [b"a", b"b1", b"b3", b"c", b"\xff", b"\xff\xff"]
    assert list(store.scan(prefix=b"b")) == [(b"b1", b"vb1"), (b"b3", b"vb3")]
    assert [k for k, _ in store.scan(prefix=b"b", reverse=True)] == [b"b3", b"b1"]
    assert [k for k, _ in store.scan(start=b"b1", stop=b"c")] == [b"b1", b"b3"]
    assert [k for k, _ in store.scan(start=b"b", reverse=True, limit=2)] == [b"\xff\xff", b"\xff"]
    assert [k for k, _ in store.scan(prefix=b"\xff")] == [b"\xff", b"\xff\xff"]
    assert list(store.scan(limit=0)) == []
    # The limit counts returned items: a deleted key in the way does not use it up.
    assert [k for k, _ in store.scan(start=b"b1", limit=2)] == [b"b1", b"b3"]
    with pytest.raises(ring.InvalidInput):
        list(store.scan(limit=-1))


def test_scan_shows_only_user_keys(store: ring.Store) -> None:
    # The store keeps its own metadata in the same key space; a user never sees it.
    assert list(store.scan()) == []
    assert list(store.scan(reverse=True)) == []
    store.put(b"m", b"user key that looks like metadata")
    assert list(store.scan()) == [(b"m", b"user key that looks like metadata")]


def test_scan_returns_the_resolved_value_of_siblings(store: ring.Store) -> None:
    store.put(b"k", b"x", context=b"")
    store.put(b"k", b"y", context=b"")
    assert list(store.scan()) == [(b"k", store.get(b"k"))]


def test_scan_versioned_returns_what_get_versioned_does(store: ring.Store) -> None:
    for k in [b"a", b"b1", b"b2", b"b3", b"c"]:
        store.put(k, b"v" + k)
    seen = store.get_versioned(b"b1")
    store.put(b"b1", b"x", context=seen.context)
    store.put(b"b1", b"y", context=seen.context)  # siblings
    store.delete(b"b2")  # a tombstone
    keys = [b"a", b"b1", b"b2", b"b3", b"c"]
    live = [k for k in keys if k != b"b2"]
    assert list(store.scan_versioned()) == [(k, store.get_versioned(k)) for k in live]
    everything = list(store.scan_versioned(tombstones=True))
    assert everything == [(k, store.get_versioned(k)) for k in keys]
    tomb = dict(everything)[b"b2"]
    assert tomb.values == () and tomb.context and tomb.value is None
    assert sorted(dict(everything)[b"b1"].values) == [b"x", b"y"]
    # The same bounds, direction and limit as scan (the limit counts what is returned).
    assert [k for k, _ in store.scan_versioned(prefix=b"b", reverse=True)] == [b"b3", b"b1"]
    assert [k for k, _ in store.scan_versioned(start=b"b1", limit=2)] == [b"b1", b"b3"]
    got = store.scan_versioned(start=b"b1", limit=2, tombstones=True)
    assert [k for k, _ in got] == [b"b1", b"b2"]
    assert [k for k, _ in store.scan_versioned(stop=b"b2\x00", reverse=True, tombstones=True)] == [
        b"b2",
        b"b1",
        b"a",
    ]
    # A context read by a scan supersedes exactly what it saw, as one from get_versioned.
    store.put(b"b1", b"z", context=dict(everything)[b"b1"].context)
    assert store.get_versioned(b"b1").values == (b"z",)
    with pytest.raises(ring.InvalidInput):
        store.scan_versioned(limit=-1)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x01", b"\x07\x00", b"\x07" + bytes(20), b"\x01\x05", b"\x01\xff\x00\x00\x01"],
    ids=["empty", "one-byte", "bad-kind", "bad-kind-long", "truncated", "truncated-long-head"],
)
def test_a_record_that_does_not_decode_is_corrupt_data(store: ring.Store, raw: bytes) -> None:
    store.put(b"a", b"1")
    store.put(b"c", b"3")
    store.storage.put(DATA + b"b-bad", raw)  # as a damaged disk or a foreign writer might
    with pytest.raises(ring.CorruptData, match=r"b'b-bad'"):
        list(store.scan())
    with pytest.raises(ring.CorruptData, match=r"b'b-bad'"):
        list(store.scan(reverse=True))
    with pytest.raises(ring.CorruptData, match=r"b'b-bad'"):
        store.get(b"b-bad")
    with pytest.raises(ring.CorruptData, match=r"b'b-bad'"):
        list(store.scan_versioned())
    # One bad record fails the operations that read it, not the store.
    assert store.get(b"a") == b"1"
    store.put(b"c", b"33")
    assert store.get(b"c") == b"33"
    assert list(store.scan(prefix=b"c")) == [(b"c", b"33")]
    assert list(store.scan(stop=b"b")) == [(b"a", b"1")]


# --- siblings and contexts --------------------------------------------------------------------


def test_two_puts_with_the_same_context_become_siblings(store: ring.Store) -> None:
    store.put(b"k", b"base")
    seen = store.get_versioned(b"k")
    store.put(b"k", b"x", context=seen.context)
    store.put(b"k", b"y", context=seen.context)
    v = store.get_versioned(b"k")
    assert sorted(v.values) == [b"x", b"y"]  # both kept, the one they both saw is gone
    assert v.value in v.values
    assert store.get(b"k") == v.value


def test_puts_on_a_new_key_with_its_empty_context_become_siblings(store: ring.Store) -> None:
    seen = store.get_versioned(b"new")
    store.put(b"new", b"x", context=seen.context)
    store.put(b"new", b"y", context=seen.context)
    assert sorted(store.get_versioned(b"new").values) == [b"x", b"y"]


def test_put_with_a_read_context_supersedes_every_sibling_it_saw(store: ring.Store) -> None:
    store.put(b"k", b"base")
    ctx = store.get_versioned(b"k").context
    store.put(b"k", b"x", context=ctx)
    store.put(b"k", b"y", context=ctx)
    both = store.get_versioned(b"k")
    store.put(b"k", b"merged", context=both.context)
    v = store.get_versioned(b"k")
    assert v.values == (b"merged",)
    assert store.get(b"k") == b"merged"


def test_put_with_a_context_keeps_what_it_did_not_see(store: ring.Store) -> None:
    ctx0 = store.get_versioned(b"k").context
    store.put(b"k", b"x", context=ctx0)
    saw_x = store.get_versioned(b"k")
    store.put(b"k", b"y", context=ctx0)  # concurrent with x
    store.put(b"k", b"z", context=saw_x.context)  # replaces x only
    assert sorted(store.get_versioned(b"k").values) == [b"y", b"z"]


def test_put_without_context_overwrites_all_siblings(store: ring.Store) -> None:
    store.put(b"k", b"x", context=b"")
    store.put(b"k", b"y", context=b"")
    store.put(b"k", b"plain")
    assert store.get_versioned(b"k").values == (b"plain",)


def test_delete_with_context_removes_what_it_saw(store: ring.Store) -> None:
    store.put(b"k", b"x", context=b"")
    store.put(b"k", b"y", context=b"")
    seen = store.get_versioned(b"k")
    store.delete(b"k", context=seen.context)
    assert store.get(b"k") is None
    assert store.get_versioned(b"k").values == ()
    assert list(store.scan()) == []


def test_delete_with_a_stale_context_keeps_the_unseen_value(store: ring.Store) -> None:
    store.put(b"k", b"x")
    stale = store.get_versioned(b"k")
    store.put(b"k", b"newer", context=b"")  # a write the deleter did not see
    store.delete(b"k", context=stale.context)
    assert store.get_versioned(b"k").values == (b"newer",)
    assert store.get(b"k") == b"newer"


def test_get_on_siblings_picks_the_latest_timestamp(
    store: ring.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written first but stamped later (a skewed clock): the latest timestamp wins, not the
    # last write.
    monkeypatch.setattr(embedded, "now_ms", FakeClock(2_000, 1_000))
    store.put(b"k", b"stamped-later", context=b"")
    store.put(b"k", b"stamped-earlier", context=b"")
    assert sorted(store.get_versioned(b"k").values) == [b"stamped-earlier", b"stamped-later"]
    assert store.get(b"k") == b"stamped-later"
    assert store.get_versioned(b"k").value == b"stamped-later"


def test_get_on_siblings_with_equal_timestamps_is_deterministic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "now_ms", FakeClock(5_000))
    path = str(tmp_path / "data")
    with ring.open(path) as s:
        for v in (b"one", b"two", b"three"):
            s.put(b"k", v, context=b"")
        first = s.get(b"k")
        assert first in (b"one", b"two", b"three")
        assert all(s.get(b"k") == first for _ in range(5))
        assert s.get_versioned(b"k").value == first
        assert dict(s.scan())[b"k"] == first
        record = s.get_record(b"k")
    with ring.open(path) as s:
        assert s.get(b"k") == first  # the same choice after a restart
    # The tie is broken by the siblings' dots, the same rule every replica applies.
    assert first == max(record.siblings, key=lambda x: (x.ts_ms, x.actor, x.counter)).value


@pytest.mark.parametrize("bad", [b"garbage", b"\xc1", "a string", 123, ["a", 1]])
def test_foreign_context_is_invalid_input(store: ring.Store, bad: object) -> None:
    store.put(b"k", b"v")
    with pytest.raises(ring.InvalidInput):
        store.put(b"k", b"w", context=bad)
    with pytest.raises(ring.InvalidInput):
        store.delete(b"k", context=bad)
    assert store.get(b"k") == b"v"


# --- input validation -------------------------------------------------------------------------


def test_key_size_limit(store: ring.Store) -> None:
    at_limit = b"k" * (64 * KIB)
    store.put(at_limit, b"ok")
    assert store.get(at_limit) == b"ok"
    too_big = b"k" * (64 * KIB + 1)
    with pytest.raises(ring.InvalidInput) as info:
        store.put(too_big, b"v")
    assert isinstance(info.value, ring.RingError)
    assert "65536" in str(info.value)
    assert stored_keys(store) == [at_limit]


def test_value_size_limit(store: ring.Store) -> None:
    store.put(b"k", b"old")
    store.put(b"at-limit", b"\x01" * (16 * MIB))
    assert len(store.get(b"at-limit") or b"") == 16 * MIB
    with pytest.raises(ring.InvalidInput) as info:
        store.put(b"k", b"\x00" * (16 * MIB + 1))
    assert isinstance(info.value, ring.RingError)
    with pytest.raises(ring.InvalidInput):
        store.put(b"new", "é" * (8 * MIB + 1))  # the limit is on the UTF-8 bytes
    assert store.get(b"k") == b"old"
    assert sorted(stored_keys(store)) == [b"at-limit", b"k"]


def test_limits_are_settings(tmp_path: Path) -> None:
    with ring.open(str(tmp_path / "d"), max_key_bytes=4, max_value_bytes=8) as s:
        s.put(b"1234", b"12345678")
        with pytest.raises(ring.InvalidInput):
            s.put(b"12345", b"v")
        with pytest.raises(ring.InvalidInput):
            s.put(b"k", b"123456789")
        assert list(s.scan()) == [(b"1234", b"12345678")]


@pytest.mark.parametrize("bad", [None, 1, 1.5, ["k"], {"k": 1}, object()])
def test_wrong_key_types_are_invalid_input(store: ring.Store, bad: object) -> None:
    for op in (
        lambda: store.put(bad, b"v"),
        lambda: store.get(bad),
        lambda: store.get_versioned(bad),
        lambda: store.delete(bad),
    ):
        with pytest.raises(ring.InvalidInput):
            op()
    assert stored_keys(store) == []


@pytest.mark.parametrize("bad", [None, 1, 1.5, ["v"], {"v": 1}, object()])
def test_wrong_value_types_are_invalid_input(store: ring.Store, bad: object) -> None:
    with pytest.raises(ring.InvalidInput):
        store.put(b"k", bad)
    assert stored_keys(store) == []


def test_unencodable_str_is_invalid_input(store: ring.Store) -> None:
    # A lone surrogate has no UTF-8 form; the user gets a RingError, not a UnicodeEncodeError.
    with pytest.raises(ring.InvalidInput):
        store.put("\ud800", b"v")
    with pytest.raises(ring.InvalidInput):
        store.put(b"k", "\udfff")
    assert stored_keys(store) == []


def test_unknown_setting_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(ring.InvalidInput) as info:
        ring.open(str(tmp_path / "d"), colour="blue")
    assert "colour" in str(info.value)
    assert not (tmp_path / "d").exists()
    with pytest.raises(ring.InvalidInput):
        ring.open(str(tmp_path / "d"), backend="floppy")


# --- batches ----------------------------------------------------------------------------------


def test_batch_applies_on_clean_exit(store: ring.Store) -> None:
    store.put(b"gone", b"x")
    store.put(b"twice", b"0")
    with store.batch() as b:
        b.put(b"a", b"1")
        b.put("s", "2")
        b.put(b"twice", b"1")
        b.put(b"twice", b"2")
        b.delete(b"gone")
        assert len(b) == 5
        assert store.get(b"a") is None, "nothing is applied before the block ends"
    assert dict(store.scan()) == {b"a": b"1", b"s": b"2", b"twice": b"2"}
    assert store.get_versioned(b"twice").values == (b"2",)


def test_batch_applies_nothing_if_the_block_raises(store: ring.Store) -> None:
    store.put(b"keep", b"old")
    with pytest.raises(KeyError), store.batch() as b:
        b.put(b"keep", b"new")
        b.put(b"a", b"1")
        b.delete(b"keep")
        raise KeyError("the application failed")
    assert dict(store.scan()) == {b"keep": b"old"}


def test_batch_with_invalid_input_applies_nothing(store: ring.Store) -> None:
    with pytest.raises(ring.InvalidInput), store.batch() as b:
        b.put(b"a", b"1")
        b.put(b"b", 42)
    assert stored_keys(store) == []


def test_batch_cannot_be_reused(store: ring.Store) -> None:
    with store.batch() as b:
        b.put(b"a", b"1")
    with pytest.raises(ring.InvalidInput):
        b.put(b"b", b"2")
    with pytest.raises(ring.InvalidInput):
        b.delete(b"a")
    assert dict(store.scan()) == {b"a": b"1"}


def test_batch_with_contexts(store: ring.Store) -> None:
    store.put(b"k", b"base")
    ctx = store.get_versioned(b"k").context
    with store.batch() as b:
        b.put(b"k", b"x", context=ctx)
        b.put(b"k", b"y", context=ctx)
    assert sorted(store.get_versioned(b"k").values) == [b"x", b"y"]


# --- lifecycle --------------------------------------------------------------------------------


def test_close_is_idempotent_and_use_after_close_raises(store: ring.Store) -> None:
    store.put(b"k", b"v")
    store.close()
    store.close()
    assert store.closed
    for op in (
        lambda: store.get(b"k"),
        lambda: store.get_versioned(b"k"),
        lambda: store.put(b"k", b"v"),
        lambda: store.delete(b"k"),
        lambda: list(store.scan()),
    ):
        with pytest.raises(ring.StoreClosed):
            op()
    with pytest.raises(ring.StoreClosed), store.batch() as b:
        b.put(b"k", b"v")
    assert issubclass(ring.StoreClosed, ring.RingError)


def test_context_manager_closes(path: str) -> None:
    with ring.open(path) as s:
        assert not s.closed
    assert s.closed
    with ring.open(path) as again:  # the directory is free again
        assert again.get(b"k") is None


def test_open_without_path_uses_ringkv_data_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RINGKV_DATA", str(tmp_path / "from-env"))
    with ring.open() as s:
        s.put(b"k", b"v")
    assert (tmp_path / "from-env").is_dir()
    assert not (tmp_path / "ringkv-data").exists()
    with ring.open(str(tmp_path / "from-env")) as s:
        assert s.get(b"k") == b"v"


@pytest.mark.parametrize("env", [None, ""])
def test_open_without_path_defaults_to_ringkv_data_in_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str | None
) -> None:
    monkeypatch.chdir(tmp_path)
    if env is None:
        monkeypatch.delenv("RINGKV_DATA", raising=False)
    else:
        monkeypatch.setenv("RINGKV_DATA", env)
    with ring.open() as s:
        s.put(b"k", b"v")
    assert (tmp_path / "ringkv-data").is_dir()
    with ring.open(str(tmp_path / "ringkv-data")) as s:
        assert s.get(b"k") == b"v"


def test_second_open_in_the_same_process_is_locked(path: str) -> None:
    with ring.open(path) as s:
        s.put(b"k", b"v")
        with pytest.raises(ring.StoreLocked) as info:
            ring.open(path)
        message = str(info.value)
        assert "locked" in message
        assert f"pid {os.getpid()}" in message
        assert s.get(b"k") == b"v", "the failed open must not disturb the open store"
    with ring.open(path) as s:
        assert s.get(b"k") == b"v"


HOLDER = """
import sys
import ring
s = ring.open(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
s.close()
"""


def read_line(proc: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    """One line of the child's stdout, waiting at most ``timeout_s``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no line from the child within {timeout_s}s (got {buf!r})")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1)
            if not chunk:
                raise AssertionError(f"child exited with {proc.wait()} before a full line")
            buf += chunk
    return buf


def test_open_while_another_process_holds_it_names_the_holder(path: str, tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        assert read_line(proc, 30) == b"ready\n", (tmp_path / "stderr").read_text()
        with pytest.raises(ring.StoreLocked) as info:
            ring.open(path)
        message = str(info.value)
        assert "locked" in message
        assert f"pid {proc.pid}" in message
        assert proc.stdin is not None
        proc.stdin.write(b"done\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0, (tmp_path / "stderr").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
    with ring.open(path) as s:  # released when the holder closed it
        s.put(b"k", b"v")
