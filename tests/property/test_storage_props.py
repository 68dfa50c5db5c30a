"""Both storage backends behave like a sorted dict under any mix of batches and scans."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ring.storage import MemoryStorage, RocksStorage, Storage

SETTINGS = settings(max_examples=50, deadline=None)

# A tiny alphabet with the edge bytes makes prefixes, shared stems and 0xff runs common.
keys = st.binary(max_size=4).map(lambda b: bytes(b"\x00\x01ab\xfe\xff"[x % 6] for x in b))
maybe_keys = st.none() | keys
batches = st.lists(
    st.tuples(
        st.lists(st.tuples(keys, st.binary(max_size=3)), max_size=6),
        st.lists(keys, max_size=3),
    ),
    min_size=1,
    max_size=5,
)
scans = st.lists(
    st.tuples(maybe_keys, maybe_keys, maybe_keys, st.booleans(), st.none() | st.integers(0, 6)),
    min_size=1,
    max_size=8,
)


def model_scan(
    data: dict[bytes, bytes],
    prefix: bytes | None,
    start: bytes | None,
    stop: bytes | None,
    reverse: bool,
    limit: int | None,
) -> list[tuple[bytes, bytes]]:
    ks = sorted(
        k
        for k in data
        if (prefix is None or k.startswith(prefix))
        and (start is None or k >= start)
        and (stop is None or k < stop)
    )
    if reverse:
        ks.reverse()
    return [(k, data[k]) for k in ks[:limit]]


@pytest.fixture(scope="module")
def rocks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RocksStorage]:
    s = RocksStorage(str(tmp_path_factory.mktemp("props") / "db"))
    yield s
    s.close()


def clear(s: Storage) -> None:
    s.write([], [k for k, _ in s.scan()])
    assert list(s.scan()) == []


def check_against_model(
    s: Storage,
    ops: list[tuple[list[tuple[bytes, bytes]], list[bytes]]],
    queries: list[tuple[bytes | None, bytes | None, bytes | None, bool, int | None]],
) -> None:
    model: dict[bytes, bytes] = {}
    for puts, deletes in ops:
        s.write(puts, deletes)
        # Both backends apply a batch's deletes before its puts (a key in both ends up put); what
        # matters is that they agree, since the simulator runs on one and production on the other.
        for k in deletes:
            model.pop(k, None)
        model.update(puts)
    for k in {k for puts, dels in ops for k in [*dels, *(p for p, _ in puts)]}:
        assert s.get(k) == model.get(k)
    for prefix, start, stop, reverse, limit in queries:
        got = list(s.scan(prefix, start, stop, reverse, limit))
        assert got == model_scan(model, prefix, start, stop, reverse, limit), (
            prefix,
            start,
            stop,
            reverse,
            limit,
        )


@SETTINGS
@given(batches, scans)
def test_memory_matches_sorted_dict(
    ops: list[tuple[list[tuple[bytes, bytes]], list[bytes]]],
    queries: list[tuple[bytes | None, bytes | None, bytes | None, bool, int | None]],
) -> None:
    check_against_model(MemoryStorage(), ops, queries)


@SETTINGS
@given(batches, scans)
def test_rocks_matches_sorted_dict(
    rocks: RocksStorage,
    ops: list[tuple[list[tuple[bytes, bytes]], list[bytes]]],
    queries: list[tuple[bytes | None, bytes | None, bytes | None, bool, int | None]],
) -> None:
    clear(rocks)
    check_against_model(rocks, ops, queries)
