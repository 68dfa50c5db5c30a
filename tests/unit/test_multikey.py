"""``get_many``, ``put_many`` and ``delete_many`` on the embedded store, and the pure pieces the
cluster clients share with it (input checks, the window, the assembly of results).

What a user relies on: values come back in the order asked, None for a missing key, once per
occurrence of a key; writes are atomic on one store (all or nothing, nothing when any input is
bad); a record that does not decode fails its own key only, named with its error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ring
from ring import multikey
from ring.core.layout import DATA
from ring.net import clientops

MIB = 1024 * 1024


@pytest.fixture(params=["rocksdb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ring.Store]:
    s = ring.open(str(tmp_path / "data"), backend=request.param)
    yield s
    s.close()


# --- the embedded store ---------------------------------------------------------------------


def test_get_many_answers_in_order_with_none_for_missing_keys(store: ring.Store) -> None:
    store.put("a", "1")
    store.put(b"c", b"3")
    store.put("gone", "x")
    store.delete("gone")
    keys = ["c", b"missing", "a", "gone", bytearray(b"a"), "c"]
    assert store.get_many(keys) == [b"3", None, b"1", None, b"1", b"3"]
    assert store.get_many(iter(["a"])) == [b"1"]  # any iterable, read once
    assert store.get_many([]) == []


def test_put_many_writes_every_pair_and_the_last_value_of_a_repeated_key(
    store: ring.Store,
) -> None:
    store.put("k", "old")
    store.put_many([("k", "new"), (b"x", b"1"), ("y", "2"), ("x", "3")])
    assert store.get_many(["k", "x", "y"]) == [b"new", b"3", b"2"]
    # A put without a context overwrites: no sibling of the old value is left.
    assert store.get_versioned("k").values == (b"new",)
    assert store.get_versioned("x").values == (b"3",)
    store.put_many({"m1": "v1", b"m2": b"v2"})
    assert store.get_many(["m1", "m2"]) == [b"v1", b"v2"]
    store.put_many([])
    store.put_many({})


def test_delete_many_writes_tombstones_and_skips_keys_never_written(store: ring.Store) -> None:
    store.put_many([("a", "1"), ("b", "2"), ("c", "3")])
    store.delete_many(["a", "never", "c", "a"])
    assert store.get_many(["a", "b", "c", "never"]) == [None, b"2", None, None]
    assert store.get_record("a").is_empty is False  # a tombstone, so the delete is remembered
    assert store.get_record("never").is_empty
    assert list(store.scan()) == [(b"b", b"2")]
    store.delete_many([])


def test_put_many_is_all_or_nothing_when_input_is_bad(store: ring.Store) -> None:
    store.put("a", "kept")
    too_big = b"v" * (16 * MIB + 1)
    bad_inputs: list[Any] = [
        [("a", "changed"), ("b", too_big)],
        [("a", "changed"), ("b", None)],
        [("a", "changed"), ("b",)],
        [("a", "changed"), "ab"],  # a two-character string is not a pair
        [("a", "changed"), (3, "x")],
        "ab",
        42,
    ]
    for items in bad_inputs:
        with pytest.raises(ring.InvalidInput):
            store.put_many(items)
    assert store.get_many(["a", "b"]) == [b"kept", None]
    with pytest.raises(ring.InvalidInput, match="item 1"):
        store.put_many([("a", "changed"), ("b", too_big)])


def test_bad_keys_fail_before_anything_is_read_or_written(store: ring.Store) -> None:
    store.put("a", "1")
    for bad in ("abc", b"abc", None, ["a", None], ["a", b"k" * (64 * 1024 + 1)]):
        with pytest.raises(ring.InvalidInput):
            store.get_many(bad)  # type: ignore[arg-type]
        with pytest.raises(ring.InvalidInput):
            store.delete_many(bad)  # type: ignore[arg-type]
    assert store.get("a") == b"1"
    with pytest.raises(ring.InvalidInput, match="key 1"):
        store.delete_many(["a", None])


def test_a_record_that_does_not_decode_fails_its_key_only(store: ring.Store) -> None:
    store.put_many([("a", "1"), ("c", "3")])
    store.storage.put(DATA + b"bad", b"\x07\x00")  # as a damaged disk might leave it
    with pytest.raises(ring.MultiKeyError) as err:
        store.get_many(["a", "bad", "missing", "c", "bad"])
    assert list(err.value.errors) == [b"bad"]
    assert isinstance(err.value.errors[b"bad"], ring.CorruptData)
    assert err.value.values == [b"1", None, None, b"3", None]
    assert "b'bad'" in str(err.value) and "1 of 4 keys" in str(err.value)
    # Writes are atomic: a batch that meets the bad record writes nothing at all.
    with pytest.raises(ring.CorruptData, match="b'bad'"):
        store.put_many([("a", "changed"), ("bad", "x")])
    with pytest.raises(ring.CorruptData, match="b'bad'"):
        store.delete_many(["a", "bad"])
    assert store.get_many(["a", "c"]) == [b"1", b"3"]


def test_put_many_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "data")
    items = [(f"k{i:05d}", f"v{i}") for i in range(3000)]
    with ring.open(path) as db:
        db.put_many(items)
        db.delete_many([f"k{i:05d}" for i in range(0, 3000, 3)])
    with ring.open(path) as db:
        values = db.get_many([k for k, _ in items])
    assert values == [None if i % 3 == 0 else f"v{i}".encode() for i in range(3000)]


def test_a_closed_store_refuses_every_multi_key_call(tmp_path: Path) -> None:
    db = ring.open(str(tmp_path / "data"))
    db.close()
    for call in (
        lambda: db.get_many(["a"]),
        lambda: db.put_many([("a", "1")]),
        lambda: db.delete_many(["a"]),
    ):
        with pytest.raises(ring.StoreClosed):
            call()


# --- what the clients share -----------------------------------------------------------------


def test_the_window_bounds_requests_and_bytes_in_flight() -> None:
    window = multikey.Window([10] * 5, count=2, max_bytes=100)
    assert window.admit() == [0, 1]
    assert window.admit() == []
    window.release(1)
    assert window.admit() == [2]
    # A connection failed with 0 and 2 in flight: they go first, in order, to the next node.
    window.retry([2, 0])
    assert list(window.queue) == [0, 2, 3, 4] and window.inflight == 0
    bytes_window = multikey.Window([60, 60, 200, 1], count=10, max_bytes=100)
    assert bytes_window.admit() == [0]  # 0 and 1 together pass 100 bytes
    bytes_window.release(0)
    assert bytes_window.admit() == [1]
    bytes_window.release(1)
    assert bytes_window.admit() == [2]  # larger than the limit alone: still sent, alone
    bytes_window.release(2)
    assert bytes_window.admit() == [3]
    bytes_window.release(3)
    assert bytes_window.idle


def test_a_large_call_is_cut_into_windows() -> None:
    call = clientops.get_many_call([f"k{i}" for i in range(100_000)], r=None)
    window = multikey.Window(call.sizes)
    assert len(window.admit()) == multikey.WINDOW
    puts = clientops.put_many_call([(f"k{i}", b"v" * MIB) for i in range(100)], w=2)
    assert len(multikey.Window(puts.sizes).admit()) == multikey.WINDOW_BYTES // (MIB + 2)
    assert puts.args[0] == {"key": b"k0", "value": b"v" * MIB, "w": 2}


def test_client_calls_check_every_key_and_quorum_up_front() -> None:
    with pytest.raises(ring.InvalidInput, match="key 2"):
        clientops.get_many_call(["a", "b", 7], r=None)
    with pytest.raises(ring.InvalidInput, match="r must be"):
        clientops.get_many_call(["a"], r=0)
    with pytest.raises(ring.InvalidInput, match="w must be"):
        clientops.put_many_call([("a", "1")], w=True)  # type: ignore[arg-type]
    with pytest.raises(ring.InvalidInput, match="item 1"):
        clientops.put_many_call([("a", "1"), ("b", b"v" * (16 * MIB + 1))], w=None)
    with pytest.raises(ring.InvalidInput, match="single key"):
        clientops.delete_many_call("abc", w=None)
    call = clientops.delete_many_call(["a", "b", "a"], w=3)
    assert call.args == [{"key": b"a", "w": 3}, {"key": b"b", "w": 3}]


def test_outcomes_become_values_in_order_or_one_error_naming_every_failed_key() -> None:
    call = clientops.get_many_call(["a", "b", "c", "a", "d"], r=2)
    assert call.unique == [b"a", b"b", b"c", b"d"]
    assert call.finish([b"1", None, b"3", b"4"]) == [b"1", None, b"3", b"1", b"4"]
    quorum = ring.QuorumError("1 of 2 replicas answered", replied=1, needed=2)
    with pytest.raises(ring.MultiKeyError) as err:
        call.finish([quorum, None, 17, b"4"])  # 17: a malformed answer for c
    assert list(err.value.errors) == [b"a", b"c"]
    assert err.value.errors[b"a"] is quorum
    assert isinstance(err.value.errors[b"c"], ring.ProtocolError)
    assert err.value.values == [None, None, None, None, b"4"]
    writes = clientops.put_many_call([(f"k{i}", "v") for i in range(20)], w=None)
    outcomes: list[Any] = [ring.Unavailable(f"no node for {i}") for i in range(20)]
    outcomes[3] = None
    with pytest.raises(ring.MultiKeyError) as err:
        writes.finish(outcomes)
    assert len(err.value.errors) == 19 and b"k3" not in err.value.errors
    text = str(err.value)
    assert text.startswith("put_many: 19 of 20 keys failed") and "and 14 more" in text
    assert writes.finish([None] * 20) is None


def test_get_versioned_many_answers_in_order_with_siblings_and_contexts(store: ring.Store) -> None:
    store.put_many([("a", "1"), ("b", "2")])
    base = store.get_versioned("a")
    store.put("a", "left", context=base.context)
    store.put("a", "right", context=base.context)
    got = store.get_versioned_many(["a", "missing", "b", "a"])
    assert sorted(got[0].values) == [b"left", b"right"] and got[3] == got[0]
    assert (got[1].values, got[1].value) == ((), None)
    assert got[2] == store.get_versioned("b")
    store.put("a", "one", context=got[0].context)
    assert store.get_versioned("a").values == (b"one",)
    assert store.get_versioned_many([]) == []
    with pytest.raises(ring.InvalidInput):
        store.get_versioned_many(["a", 5])
    with pytest.raises(ring.InvalidInput):
        store.get_versioned_many("ab")  # a str is one key, not a list of keys


def test_get_versioned_many_fails_a_record_that_does_not_decode_alone(store: ring.Store) -> None:
    store.put_many([("good", "1"), ("bad", "2")])
    store.storage.put(DATA + b"bad", b"\x07garbage")
    with pytest.raises(ring.MultiKeyError) as err:
        store.get_versioned_many(["good", "bad"])
    assert list(err.value.errors) == [b"bad"]
    assert isinstance(err.value.errors[b"bad"], ring.CorruptData)
    assert err.value.values is not None and err.value.values[0].values == (b"1",)
