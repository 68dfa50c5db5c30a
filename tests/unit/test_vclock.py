"""Vector clocks: the causal order every replica relies on."""

from __future__ import annotations

import msgpack
import pytest

from ring.core import vclock
from ring.core.vclock import Order


def test_increment_starts_absent_actor_at_one() -> None:
    assert vclock.increment({}, "a") == {"a": 1}
    assert vclock.increment({"b": 4}, "a") == {"a": 1, "b": 4}


def test_increment_adds_one_and_does_not_mutate() -> None:
    clock = {"a": 3, "b": 1}
    out = vclock.increment(clock, "a")
    assert out == {"a": 4, "b": 1}
    assert clock == {"a": 3, "b": 1}
    assert vclock.descends(out, clock) and not vclock.descends(clock, out)


def test_merge_is_pointwise_max() -> None:
    a = {"a": 3, "b": 1}
    b = {"b": 5, "c": 2}
    assert vclock.merge(a, b) == {"a": 3, "b": 5, "c": 2}
    assert vclock.merge(b, a) == {"a": 3, "b": 5, "c": 2}
    assert a == {"a": 3, "b": 1} and b == {"b": 5, "c": 2}, "merge must not mutate"


def test_merge_with_empty_and_self() -> None:
    a = {"x": 2}
    assert vclock.merge(a, {}) == a
    assert vclock.merge({}, a) == a
    assert vclock.merge(a, a) == a
    out = vclock.merge({}, a)
    out["x"] = 99
    assert a == {"x": 2}, "merge must return a new dict, never an argument"


def test_descends() -> None:
    assert vclock.descends({}, {})
    assert vclock.descends({"a": 1}, {})
    assert not vclock.descends({}, {"a": 1})
    assert vclock.descends({"a": 2, "b": 1}, {"a": 2})
    assert vclock.descends({"a": 2, "b": 1}, {"a": 1, "b": 1})
    assert not vclock.descends({"a": 2}, {"a": 1, "b": 1})
    assert not vclock.descends({"a": 1}, {"a": 2})


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ({}, {}, Order.EQUAL),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, Order.EQUAL),
        ({"a": 1}, {"a": 2}, Order.BEFORE),
        ({}, {"a": 1}, Order.BEFORE),
        ({"a": 1}, {"a": 1, "b": 1}, Order.BEFORE),
        ({"a": 2}, {"a": 1}, Order.AFTER),
        ({"a": 1, "b": 1}, {"a": 1}, Order.AFTER),
        ({"a": 1}, {}, Order.AFTER),
        ({"a": 1}, {"b": 1}, Order.CONCURRENT),
        ({"a": 2, "b": 1}, {"a": 1, "b": 2}, Order.CONCURRENT),
    ],
)
def test_compare_all_orders(a: dict[str, int], b: dict[str, int], order: Order) -> None:
    assert vclock.compare(a, b) is order
    mirror = {
        Order.BEFORE: Order.AFTER,
        Order.AFTER: Order.BEFORE,
        Order.EQUAL: Order.EQUAL,
        Order.CONCURRENT: Order.CONCURRENT,
    }
    assert vclock.compare(b, a) is mirror[order]


def test_covers() -> None:
    clock = {"a": 3}
    assert vclock.covers(clock, "a", 1)
    assert vclock.covers(clock, "a", 3)
    assert not vclock.covers(clock, "a", 4)
    assert not vclock.covers(clock, "b", 1)
    assert not vclock.covers({}, "a", 1)


# --- prune -------------------------------------------------------------------------------------


def test_prune_below_bound_keeps_everything() -> None:
    clock = {"a": 1, "b": 2}
    out = vclock.prune(clock, {}, max_entries=2, now_ms=1000)
    assert out == clock
    assert out is not clock


def test_prune_respects_bound_and_drops_oldest_first() -> None:
    clock = {"a": 5, "b": 6, "c": 7, "d": 8, "e": 9}
    last_seen = {"a": 500, "b": 100, "c": 400, "d": 200, "e": 300}
    out = vclock.prune(clock, last_seen, max_entries=3, now_ms=10_000)
    # b (100) and d (200) are the oldest writers.
    assert out == {"a": 5, "c": 7, "e": 9}


def test_prune_drops_actors_without_a_time_first() -> None:
    clock = {"a": 1, "b": 1, "c": 1}
    out = vclock.prune(clock, {"a": 10, "c": 20}, max_entries=2, now_ms=10_000)
    assert out == {"a": 1, "c": 1}


def test_prune_keeps_young_entries_even_above_bound() -> None:
    clock = {"old": 1, "young1": 2, "young2": 3, "young3": 4}
    last_seen = {"old": 0, "young1": 9_500, "young2": 9_600, "young3": 9_700}
    out = vclock.prune(clock, last_seen, max_entries=1, now_ms=10_000, min_age_ms=1_000)
    # Only the old entry may go; the clock stays above the bound rather than lose recent history.
    assert out == {"young1": 2, "young2": 3, "young3": 4}


def test_prune_with_min_age_drops_only_old_enough_entries() -> None:
    clock = {"a": 1, "b": 1, "c": 1, "d": 1}
    last_seen = {"a": 1_000, "b": 2_000, "c": 8_000, "d": 9_000}
    out = vclock.prune(clock, last_seen, max_entries=2, now_ms=10_000, min_age_ms=5_000)
    assert out == {"c": 1, "d": 1}
    out = vclock.prune(clock, last_seen, max_entries=2, now_ms=10_000, min_age_ms=8_500)
    assert out == {"b": 1, "c": 1, "d": 1}


def test_prune_never_lowers_a_counter_and_does_not_mutate() -> None:
    clock = {f"n{i}": i + 1 for i in range(10)}
    last_seen = {f"n{i}": i for i in range(10)}
    before = dict(clock)
    out = vclock.prune(clock, last_seen, max_entries=4, now_ms=100)
    assert len(out) == 4
    assert clock == before
    for actor, n in out.items():
        assert clock[actor] == n
    assert vclock.descends(clock, out)


# --- encoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "clock",
    [{}, {"a": 1}, {"node1@7f3a": 12, "node2@00ff": 1, "ü-node": 2**40}, {"x": 2**63 - 1}],
)
def test_encode_decode_round_trip(clock: dict[str, int]) -> None:
    data = vclock.encode(clock)
    assert isinstance(data, bytes)
    assert vclock.decode(data) == clock


def test_encoding_is_canonical() -> None:
    # The same clock built in a different order encodes to the same bytes (used in comparisons
    # and hashes by anti-entropy).
    assert vclock.encode({"a": 1, "b": 2}) == vclock.encode({"b": 2, "a": 1})


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # a msgpack byte that is never valid
        msgpack.packb(["a", 1]) + b"\x00",  # trailing garbage
        msgpack.packb({"a": 1}),
        msgpack.packb("a"),
        msgpack.packb(None),
        msgpack.packb(["a"]),
        msgpack.packb(["a", 1, "b"]),
        msgpack.packb([1, 1]),
        msgpack.packb([b"a", 1]),
        msgpack.packb(["a", 0]),
        msgpack.packb(["a", -3]),
        msgpack.packb(["a", 1.5]),
        msgpack.packb(["a", "1"]),
        msgpack.packb(["a", None]),
        msgpack.packb(["a", True]),
    ],
)
def test_decode_rejects_non_clocks_with_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        vclock.decode(data)
