"""Records: siblings, tombstones and the default resolver, case by case."""

from __future__ import annotations

import msgpack
import pytest

from ring.core import record as rec
from ring.core import vclock
from ring.core.record import Record, Sibling


def values(r: Record) -> list[bytes | None]:
    return [s.value for s in r.siblings]


def test_first_write_creates_one_sibling_with_a_dot() -> None:
    r = rec.write(rec.EMPTY, "a", b"v1", 100)
    assert r.siblings == (Sibling("a", 1, 100, b"v1"),)
    assert r.context == {"a": 1}
    assert rec.resolve(r) == b"v1"
    assert not r.is_deleted and not r.is_empty


def test_blind_writes_by_one_writer_overwrite() -> None:
    r = rec.EMPTY
    for i in range(5):
        r = rec.write(r, "a", b"v%d" % i, 100 + i)
    assert values(r) == [b"v4"]
    assert r.context == {"a": 5}


def test_two_puts_from_the_same_context_become_siblings() -> None:
    base = rec.write(rec.EMPTY, "a", b"base", 1)
    ctx = dict(base.context)
    r = rec.write(base, "a", b"x", 2, ctx)
    r = rec.write(r, "a", b"y", 3, ctx)
    # Both writers saw only `base`: neither saw the other, so both are kept; `base` is gone.
    assert sorted(values(r)) == [b"x", b"y"]
    assert [s.dot for s in r.siblings] == [("a", 2), ("a", 3)]


def test_put_with_the_read_context_supersedes_all_siblings() -> None:
    ctx0 = rec.write(rec.EMPTY, "a", b"base", 1).context
    r = rec.write(rec.write(rec.EMPTY, "a", b"base", 1), "a", b"x", 2, ctx0)
    r = rec.write(r, "a", b"y", 3, ctx0)
    r = rec.write(r, "a", b"z", 4, r.context)
    assert values(r) == [b"z"]


def test_put_with_a_stale_context_keeps_what_it_did_not_see() -> None:
    r = rec.write(rec.EMPTY, "a", b"x", 1, {})
    seen = dict(r.context)  # saw x only
    r = rec.write(r, "a", b"y", 2, {})  # concurrent with x
    r = rec.write(r, "a", b"z", 3, seen)  # supersedes x, not y
    assert sorted(values(r)) == [b"y", b"z"]


def test_concurrent_writes_on_two_replicas_become_siblings_when_merged() -> None:
    base = rec.write(rec.EMPTY, "a", b"base", 1)
    left = rec.write(base, "a", b"left", 2)
    right = rec.write(base, "b", b"right", 2)
    m = rec.reconcile(left, right)
    assert sorted(values(m)) == [b"left", b"right"]
    assert m.context == {"a": 2, "b": 1}
    # A write that read the merge resolves the conflict everywhere.
    fixed = rec.write(m, "b", b"fixed", 3, m.context)
    assert values(rec.reconcile_all([left, right, fixed])) == [b"fixed"]


def test_reconcile_drops_causally_older_value() -> None:
    old = rec.write(rec.EMPTY, "a", b"old", 1)
    new = rec.write(old, "a", b"new", 2)
    assert rec.reconcile(old, new) == new
    assert rec.reconcile(new, old) == new


# --- tombstones -----------------------------------------------------------------------------


def test_delete_writes_a_tombstone_that_remembers_the_context() -> None:
    r = rec.write(rec.EMPTY, "a", b"v", 1)
    d = rec.write(r, "a", None, 2)
    assert d.is_deleted
    assert d.live == []
    assert rec.resolve(d) is None
    assert [s.is_tombstone for s in d.siblings] == [True]
    assert d.context == {"a": 2}
    assert not d.is_empty


def test_deleted_value_does_not_come_back_from_a_stale_replica() -> None:
    r = rec.write(rec.EMPTY, "a", b"v", 1)
    stale_copy = r
    d = rec.write(r, "b", None, 2, r.context)  # another coordinator deletes what it read
    assert rec.reconcile(d, stale_copy).is_deleted
    assert rec.reconcile(stale_copy, d).is_deleted
    assert rec.resolve(rec.reconcile(stale_copy, d)) is None


def test_delete_concurrent_with_a_put_keeps_the_put() -> None:
    base = rec.write(rec.EMPTY, "a", b"base", 1)
    deleted = rec.write(base, "a", None, 5)
    updated = rec.write(base, "b", b"update", 2)
    m = rec.reconcile(deleted, updated)
    # The delete did not see the update: the update survives (as a sibling of the tombstone),
    # even though the tombstone is newer by wall clock.
    assert not m.is_deleted
    assert [s.value for s in m.live] == [b"update"]
    assert rec.resolve(m) == b"update"
    assert len(m.siblings) == 2


def test_write_after_delete_revives_the_key() -> None:
    d = rec.write(rec.write(rec.EMPTY, "a", b"v", 1), "a", None, 2)
    r = rec.write(d, "a", b"again", 3)
    assert values(r) == [b"again"]
    assert r.context == {"a": 3}


def test_empty_record() -> None:
    assert rec.EMPTY.is_empty and rec.EMPTY.is_deleted
    assert rec.resolve(rec.EMPTY) is None
    assert rec.reconcile(rec.EMPTY, rec.EMPTY) == rec.EMPTY
    r = rec.write(rec.EMPTY, "a", b"v", 1)
    assert rec.reconcile(rec.EMPTY, r) == r == rec.reconcile(r, rec.EMPTY)
    assert rec.reconcile_all([]) == rec.EMPTY


# --- the default resolver ---------------------------------------------------------------------


def sib(actor: str, counter: int, ts: int, value: bytes | None) -> Sibling:
    return Sibling(actor, counter, ts, value)


def make(*siblings: Sibling) -> Record:
    ctx: dict[str, int] = {}
    for s in siblings:
        ctx[s.actor] = max(ctx.get(s.actor, 0), s.counter)
    return Record(tuple(sorted(siblings, key=lambda s: s.dot)), ctx)


def test_resolve_picks_latest_timestamp() -> None:
    r = make(sib("a", 1, 300, b"late"), sib("b", 1, 100, b"early"), sib("c", 9, 200, b"mid"))
    assert rec.resolve(r) == b"late"


def test_resolve_breaks_timestamp_ties_by_dot() -> None:
    r = make(sib("a", 5, 100, b"a5"), sib("b", 1, 100, b"b1"), sib("a", 7, 100, b"a7"))
    assert rec.resolve(r) == b"b1"  # highest (actor, counter) among equal timestamps
    r = make(sib("a", 5, 100, b"a5"), sib("a", 7, 100, b"a7"))
    assert rec.resolve(r) == b"a7"


def test_resolve_ignores_tombstones_even_newer_ones() -> None:
    r = make(sib("a", 1, 100, b"value"), sib("b", 1, 999, None))
    assert rec.resolve(r) == b"value"
    assert rec.resolve(make(sib("a", 1, 1, None), sib("b", 1, 2, None))) is None


def test_resolve_is_independent_of_how_the_record_was_built() -> None:
    sibs = [sib("a", 1, 100, b"x"), sib("b", 1, 100, b"y"), sib("c", 1, 50, b"z")]
    results = {
        rec.resolve(Record(tuple(p), {"a": 1, "b": 1, "c": 1}))
        for p in (sibs, sibs[::-1], sibs[1:] + sibs[:1])
    }
    assert results == {b"y"}


@pytest.mark.parametrize(
    "r",
    [
        rec.EMPTY,
        make(sib("a", 1, 1, b"v")),
        make(sib("a", 1, 1, None)),
        make(sib("a", 1, 100, b"x"), sib("b", 1, 100, b"y"), sib("c", 2, 101, None)),
        make(sib("a", 1, 5, b""), sib("a", 2, 4, b"\x00")),
    ],
)
def test_decode_resolved_matches_resolve(r: Record) -> None:
    data = rec.encode(r)
    assert rec.decode(data) == r
    assert rec.decode_resolved(data) == rec.resolve(r)


# --- context bound ----------------------------------------------------------------------------


def test_context_is_pruned_above_the_bound_without_losing_siblings() -> None:
    big = {f"old{i:04d}": 1 for i in range(rec.MAX_CONTEXT_ACTORS + 50)}
    local = rec.write(rec.EMPTY, "zz-holder", b"kept", 1)
    r = rec.write(local, "writer", b"new", 2, big)
    assert len(r.context) <= rec.MAX_CONTEXT_ACTORS
    # The writer's entry and every sibling's entry survive (invariant 1).
    assert sorted(values(r)) == [b"kept", b"new"]
    for s in r.siblings:
        assert vclock.covers(r.context, s.actor, s.counter)
    assert rec.decode(rec.encode(r)) == r


# --- decoding errors --------------------------------------------------------------------------
#
# Records arrive from disk, from dump files and from other nodes; anything malformed must be a
# ValueError (which the shell turns into CorruptData or a protocol error), never a record that
# breaks the invariants.

BAD_WIRE = [
    {"v": 1},
    "record",
    None,
    [2, [], []],  # unknown format version
    [1, []],
    [1, [], [], []],
    [1, ["a"], []],  # odd clock
    [1, ["a", 0], []],  # counters start at 1
    [1, ["a", True], []],
    [1, "ctx", []],
    [1, [], "sibs"],
    [1, ["a", 1], ["a", 1, 5]],  # sibling of 3 fields
    [1, ["a", 1], ["a", 2, 5, b"v"]],  # context does not cover the sibling
    [1, [], ["a", 1, 5, b"v"]],
    [1, ["a", 1], [1, 1, 5, b"v"]],
    [1, ["a", 1], ["a", 1, 5, "text"]],
    [1, ["a", 1], ["a", 1, 5, True]],  # the storage tail marker is not a wire value
    [1, ["a", 1], ["a", 1, "5", b"v"]],
    [1, ["a", 1], ["a", 0, 5, b"v"]],  # dots start at 1
    [1, ["a", 1], ["a", True, 5, b"v"]],
    [1, ["a", 1], ["a", 1, False, b"v"]],
    [1, ["a", 2], ["a", 2, 5, b"v", "a", 2, 6, b"w"]],  # one dot, two siblings
]


@pytest.mark.parametrize("obj", BAD_WIRE)
def test_from_wire_rejects_non_records_with_value_error(obj: object) -> None:
    with pytest.raises(ValueError):
        rec.from_wire(obj)


def frame(kind: int, head: bytes, tail: bytes = b"") -> bytes:
    """The documented storage layout: kind, head length (1 byte, or 0xff + uint32), head, tail."""
    n = len(head)
    size = bytes([n]) if n < 255 else b"\xff" + n.to_bytes(4, "big")
    return bytes([kind]) + size + head + tail


@pytest.mark.parametrize("obj", BAD_WIRE)
def test_decode_rejects_bad_heads_with_value_error(obj: object) -> None:
    head = msgpack.packb(obj, use_bin_type=True)
    with pytest.raises(ValueError):
        rec.decode(frame(0, head))
    if obj == [1, ["a", 1], ["a", 1, 5, True]]:
        return  # with a tail to fill its slot, this one is a valid stored record
    with pytest.raises(ValueError):
        rec.decode(frame(1, head, b"tail"))


GOOD = rec.encode(rec.write(rec.EMPTY, "a", b"value", 1))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x01\x05",
        b"\x02" + GOOD[1:],  # unknown kind
        b"\xff" + GOOD[1:],
        GOOD[:5],  # truncated head
        frame(0, b"\xc1"),  # not msgpack
        frame(0, msgpack.packb([1, [], []])) + b"x",  # a deleted record has no tail
        frame(1, msgpack.packb([1, ["a", 1], ["a", 1, 5, b"v"]]), b"tail"),  # tail, no slot for it
        frame(0, msgpack.packb([1, ["a", 1], ["a", 1, 5, True]])),  # slot, no tail
        frame(1, msgpack.packb([1, ["a", 2], ["a", 1, 5, True, "a", 2, 5, True]]), b"t"),
        msgpack.packb([1, ["a", 1], ["a", 1, 5, b"v"]], use_bin_type=True),  # the wire form
    ],
)
def test_decode_rejects_bad_frames_with_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        rec.decode(data)


def test_storage_form_of_a_large_record() -> None:
    # A head of 255 bytes or more takes the long length form; the value must still come out.
    r = rec.EMPTY
    for i in range(40):
        r = rec.reconcile(r, rec.write(rec.EMPTY, f"node-{i:03d}@deadbeef", b"v%d" % i, i))
    assert len(r.siblings) == 40
    data = rec.encode(r)
    assert rec.decode(data) == r
    assert rec.decode_resolved(data) == rec.resolve(r) == b"v39"


@pytest.mark.parametrize(
    "local",
    [
        None,
        rec.write(rec.EMPTY, "me", b"old", 1),
        rec.write(rec.write(rec.EMPTY, "me", b"old", 1), "me", None, 2),
        rec.reconcile(rec.write(rec.EMPTY, "me", b"x", 1), rec.write(rec.EMPTY, "you", b"y", 1)),
        rec.write(rec.EMPTY, "you", b"only theirs", 1),
        Record((), {f"n{i:03d}": 1 for i in range(rec.MAX_CONTEXT_ACTORS)}),
    ],
)
def test_blind_write_fast_path_agrees_with_write(local: Record | None) -> None:
    # `put` without a context takes a shortcut on the encoded bytes; it must store exactly what
    # the model write would.
    data = None if local is None else rec.encode(local)
    fast = rec.blind_write_encoded(data, "me", b"new", 9)
    slow = rec.write(rec.EMPTY if local is None else local, "me", b"new", 9)
    assert rec.decode(fast) == slow
    assert rec.decode_resolved(fast) == b"new"
