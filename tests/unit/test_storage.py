"""Both storage backends: an ordered bytes map with atomic batches and bounded scans."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ring.errors import InvalidInput, RingError, StoreClosed, StoreLocked
from ring.storage import MemoryStorage, RocksStorage, Storage, open_storage
from ring.storage.base import prefix_end, scan_bounds


@pytest.fixture(params=["rocksdb", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    s: Storage = (
        RocksStorage(str(tmp_path / "db")) if request.param == "rocksdb" else MemoryStorage()
    )
    yield s
    s.close()


KEYS = [
    b"",
    b"\x00",
    b"a",
    b"ab",
    b"ab\x00",
    b"abc",
    b"ab\xfe",
    b"ab\xff",
    b"ab\xff\x00",
    b"ab\xff\xff",
    b"ac",
    b"b",
    b"\xfe\xff",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
    b"\xff\xff\xff",
]


def model_scan(
    data: dict[bytes, bytes],
    prefix: bytes | None = None,
    start: bytes | None = None,
    stop: bytes | None = None,
    reverse: bool = False,
    limit: int | None = None,
) -> list[tuple[bytes, bytes]]:
    keys = sorted(
        k
        for k in data
        if (prefix is None or k.startswith(prefix))
        and (start is None or k >= start)
        and (stop is None or k < stop)
    )
    if reverse:
        keys.reverse()
    if limit is not None:
        keys = keys[:limit]
    return [(k, data[k]) for k in keys]


@pytest.fixture
def filled(storage: Storage) -> tuple[Storage, dict[bytes, bytes]]:
    data = {k: b"v:" + k for k in KEYS}
    storage.write(list(data.items()))
    return storage, data


# --- get / put / write ------------------------------------------------------------------------


def test_get_put_overwrite(storage: Storage) -> None:
    assert storage.get(b"k") is None
    storage.put(b"k", b"v1")
    assert storage.get(b"k") == b"v1"
    storage.put(b"k", b"v2")
    assert storage.get(b"k") == b"v2"
    storage.put(b"", b"empty key")
    storage.put(b"e", b"")
    assert storage.get(b"") == b"empty key"
    assert storage.get(b"e") == b""  # an empty value is a value, not an absence


def test_binary_keys_and_values(storage: Storage) -> None:
    key = bytes(range(256))
    value = bytes(range(255, -1, -1)) * 100
    storage.put(key, value)
    assert storage.get(key) == value
    assert storage.get(key[:-1]) is None


def test_write_applies_puts_and_deletes(storage: Storage) -> None:
    storage.write([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])
    storage.write([(b"d", b"4"), (b"a", b"1b")], [b"b", b"missing"])
    assert list(storage.scan()) == [(b"a", b"1b"), (b"c", b"3"), (b"d", b"4")]
    storage.write([], [b"a", b"c", b"d"])
    assert list(storage.scan()) == []
    storage.write([], [])
    assert list(storage.scan()) == []


def test_write_applies_nothing_when_the_batch_cannot_be_built(storage: Storage) -> None:
    storage.put(b"keep", b"old")

    def puts() -> Iterator[tuple[bytes, bytes]]:
        yield b"keep", b"new"
        yield b"x", b"1"
        raise RuntimeError("the caller failed half way")

    with pytest.raises(RuntimeError):
        storage.write(puts(), [b"keep"])
    assert list(storage.scan()) == [(b"keep", b"old")]


def test_write_with_sync(storage: Storage) -> None:
    storage.write([(b"k", b"v")], sync=True)
    assert storage.get(b"k") == b"v"


# --- scan -------------------------------------------------------------------------------------


def test_scan_everything_in_key_order(filled: tuple[Storage, dict[bytes, bytes]]) -> None:
    storage, data = filled
    assert list(storage.scan()) == model_scan(data)
    assert list(storage.scan(reverse=True)) == model_scan(data, reverse=True)
    assert [k for k, _ in storage.scan()] == sorted(KEYS)


@pytest.mark.parametrize(
    "prefix",
    [
        b"",
        b"a",
        b"ab",
        b"ab\xff",
        b"ab\xff\xff",
        b"\xff",
        b"\xff\xff",
        b"\xff\xff\xff",
        b"zz",
        b"\x00",
    ],
)
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_prefix(
    filled: tuple[Storage, dict[bytes, bytes]], prefix: bytes, reverse: bool
) -> None:
    storage, data = filled
    got = list(storage.scan(prefix=prefix, reverse=reverse))
    assert got == model_scan(data, prefix=prefix, reverse=reverse)
    assert all(k.startswith(prefix) for k, _ in got)


def test_scan_prefix_of_ff_bytes_is_not_cut_short(
    filled: tuple[Storage, dict[bytes, bytes]],
) -> None:
    # A prefix ending in 0xff has no simple "next" key; the scan must still see all of it.
    storage, _ = filled
    assert [k for k, _ in storage.scan(prefix=b"ab\xff")] == [
        b"ab\xff",
        b"ab\xff\x00",
        b"ab\xff\xff",
    ]
    assert [k for k, _ in storage.scan(prefix=b"\xff")] == [
        b"\xff",
        b"\xff\x00",
        b"\xff\xff",
        b"\xff\xff\xff",
    ]
    assert [k for k, _ in storage.scan(prefix=b"\xff\xff", reverse=True)] == [
        b"\xff\xff\xff",
        b"\xff\xff",
    ]


@pytest.mark.parametrize(
    ("start", "stop"),
    [
        (b"ab", None),
        (None, b"ab"),
        (b"ab", b"ac"),
        (b"ab\x00", b"ab\xff"),
        (b"aa", b"b"),
        (b"ab", b"ab"),  # empty range
        (b"b", b"a"),  # inverted range
        (b"\xff", None),
        (None, b""),
        (b"", None),
        (b"\xff\xff\xff\xff", None),
    ],
)
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_start_stop(
    filled: tuple[Storage, dict[bytes, bytes]],
    start: bytes | None,
    stop: bytes | None,
    reverse: bool,
) -> None:
    storage, data = filled
    got = list(storage.scan(start=start, stop=stop, reverse=reverse))
    assert got == model_scan(data, start=start, stop=stop, reverse=reverse)


@pytest.mark.parametrize("limit", [0, 1, 3, 100])
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_limit(filled: tuple[Storage, dict[bytes, bytes]], limit: int, reverse: bool) -> None:
    storage, data = filled
    assert list(storage.scan(limit=limit, reverse=reverse)) == model_scan(
        data, limit=limit, reverse=reverse
    )


@pytest.mark.parametrize(
    ("prefix", "start", "stop"),
    [
        (b"ab", b"abc", None),  # start inside the prefix
        (b"ab", b"a", None),  # start before the prefix
        (b"ab", None, b"ab\xff"),  # stop inside the prefix
        (b"ab", None, b"zzz"),  # stop after the prefix
        (b"ab", b"ab\x00", b"ab\xff\xff"),
        (b"ab", b"ac", None),  # start after the prefix: nothing
        (b"ab", None, b"a"),  # stop before the prefix: nothing
        (b"\xff", b"\xff\x00", None),
        (b"\xff", None, b"\xff\xff\xff"),
    ],
)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("limit", [None, 2])
def test_scan_combinations(
    filled: tuple[Storage, dict[bytes, bytes]],
    prefix: bytes,
    start: bytes | None,
    stop: bytes | None,
    reverse: bool,
    limit: int | None,
) -> None:
    storage, data = filled
    got = list(storage.scan(prefix, start, stop, reverse, limit))
    assert got == model_scan(data, prefix, start, stop, reverse, limit)


def test_scan_of_empty_store(storage: Storage) -> None:
    assert list(storage.scan()) == []
    assert list(storage.scan(prefix=b"\xff", reverse=True)) == []


def test_scan_sees_deletes(filled: tuple[Storage, dict[bytes, bytes]]) -> None:
    storage, data = filled
    storage.write([], [b"ab", b"\xff\xff"])
    del data[b"ab"], data[b"\xff\xff"]
    assert list(storage.scan()) == model_scan(data)
    assert list(storage.scan(reverse=True)) == model_scan(data, reverse=True)


# --- helpers ----------------------------------------------------------------------------------


def test_prefix_end() -> None:
    assert prefix_end(b"a") == b"b"
    assert prefix_end(b"ab\xff") == b"ac"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"\xff") is None
    assert prefix_end(b"\xff\xff") is None
    assert prefix_end(b"") is None
    assert prefix_end(b"\x00") == b"\x01"


def test_scan_bounds() -> None:
    assert scan_bounds(None, None, None) == (None, None)
    assert scan_bounds(b"ab", None, None) == (b"ab", b"ac")
    assert scan_bounds(b"ab", b"aa", b"zz") == (b"ab", b"ac")
    assert scan_bounds(b"ab", b"abc", b"abd") == (b"abc", b"abd")
    assert scan_bounds(b"\xff", None, b"\xff\x01") == (b"\xff", b"\xff\x01")
    assert scan_bounds(b"\xff\xff", None, None) == (b"\xff\xff", None)


# --- RocksDB specifics ------------------------------------------------------------------------


def test_rocks_data_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    s = RocksStorage(path)
    s.write([(b"a", b"1"), (b"b", b"2")])
    s.put(b"c", b"3")
    s.write([], [b"b"])
    s.close()
    s = RocksStorage(path)
    try:
        assert list(s.scan()) == [(b"a", b"1"), (b"c", b"3")]
    finally:
        s.close()


def test_rocks_close_is_idempotent_and_use_after_close_raises(tmp_path: Path) -> None:
    s = RocksStorage(str(tmp_path / "db"))
    s.put(b"k", b"v")
    s.close()
    s.close()
    for op in (
        lambda: s.get(b"k"),
        lambda: s.put(b"k", b"v"),
        lambda: s.write([(b"k", b"v")]),
        lambda: list(s.scan()),
    ):
        with pytest.raises(StoreClosed):
            op()


def test_rocks_second_open_is_locked(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    s = RocksStorage(path)
    try:
        with pytest.raises(StoreLocked) as info:
            RocksStorage(path)
        assert isinstance(info.value, RingError)
        assert "locked" in str(info.value)
    finally:
        s.close()
    RocksStorage(path).close()  # free again once closed


def test_open_storage_choices(tmp_path: Path) -> None:
    assert isinstance(open_storage(None, backend="memory"), MemoryStorage)
    s = open_storage(str(tmp_path / "db"))
    assert isinstance(s, RocksStorage)
    s.close()
    with pytest.raises(InvalidInput):
        open_storage(str(tmp_path / "db"), backend="leveldb")
    with pytest.raises(ValueError):
        open_storage(None, backend="rocksdb")
