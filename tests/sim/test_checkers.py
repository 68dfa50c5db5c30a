"""The view rule of ``ring.sim.checkers`` on hand-made histories: it fires on a lost write, a
superseded value that came back, non-concurrent siblings and a sibling explosion, and stays
quiet on a correct view."""

from __future__ import annotations

from ring.core import record as rec
from ring.sim.checkers import check_final, check_view
from ring.sim.history import History, Op, Write

KEY = b"k"


def _history() -> History:
    return History(lambda: 0, lambda: [])


def _write(
    h: History,
    op_id: int,
    value: bytes | None,
    actor: str,
    counter: int,
    seen: dict[str, int],
    blind: bool = True,
) -> Write:
    """Record a write as the world would: a client op, then its coordination."""
    kind = "put" if value is not None else "del"
    op = Op(op_id, 0, kind, KEY, "n1", op_id, value=value, w=2, outcome="ok")
    h.add_op(op)
    w = Write(op, KEY, value, "n1", actor, (actor, counter), dict(seen), blind, op_id)
    for x in h.writes.setdefault(KEY, []):
        if x.dot is not None and seen.get(x.dot[0], 0) >= x.dot[1]:
            x.superseded_by.append(w)
    h.writes[KEY].append(w)
    h.write_of[op_id] = w
    h.by_dot[(KEY, actor, counter)] = w
    return w


def _kinds(
    h: History, ctx: dict[str, int], present: list[Write], tombstones: bool = True
) -> list[str]:
    found = check_view(
        h, KEY, ctx, present, tombstones_visible=tombstones, upto_ms=10**9, where="test"
    )
    return [v.kind for v in found]


def test_concurrent_siblings_are_fine() -> None:
    h = _history()
    a = _write(h, 1, b"a", "x", 1, {})
    b = _write(h, 2, b"b", "y", 1, {})
    assert _kinds(h, {"x": 1, "y": 1}, [a, b]) == []


def test_a_write_the_context_saw_must_be_present_or_superseded() -> None:
    h = _history()
    a = _write(h, 1, b"a", "x", 1, {})
    b = _write(h, 2, b"b", "y", 1, {})
    assert _kinds(h, {"x": 1, "y": 1}, [b]) == ["write-lost"]  # a vanished, nothing covers it
    c = _write(h, 3, b"c", "y", 2, {"x": 1, "y": 1})  # supersedes both
    assert _kinds(h, {"x": 1, "y": 2}, [c]) == []
    assert _kinds(h, {"x": 1, "y": 2}, [a, c]) == ["siblings-not-concurrent"]
    assert _kinds(h, {"x": 1, "y": 1}, [a]) == ["write-lost"]  # b gone, c not seen: lost


def test_a_deleted_value_must_not_come_back() -> None:
    h = _history()
    a = _write(h, 1, b"a", "x", 1, {})
    d = _write(h, 2, None, "y", 1, {"x": 1}, blind=False)
    assert _kinds(h, {"x": 1, "y": 1}, [d]) == []
    # a is back and the tombstone is gone: both directions of the rule fire.
    assert _kinds(h, {"x": 1, "y": 1}, [a]) == ["deleted-value-came-back", "write-lost"]
    # A read does not show tombstones: it sees neither a nor d, which is right.
    assert _kinds(h, {"x": 1, "y": 1}, [], tombstones=False) == []


def test_sibling_bound_under_blind_writers() -> None:
    h = _history()
    one = _write(h, 1, b"1", "x", 1, {})
    two = _write(h, 2, b"2", "x", 2, {})  # seen wrongly recorded as {}: a bug let both live
    kinds = _kinds(h, {"x": 2}, [one, two])
    assert "too-many-siblings" in kinds


def test_final_state_needs_every_acknowledged_write_and_equal_replicas() -> None:
    h = _history()
    a = _write(h, 1, b"a", "x", 1, {})
    _write(h, 2, b"b", "y", 1, {})
    assert a.dot is not None
    only_a = rec.Record((rec.Sibling("x", 1, 0, b"a"),), {"x": 1})
    found = check_final(h, {KEY: {"n1": only_a, "n2": only_a}}, {}, 10)
    assert [v.kind for v in found] == ["acknowledged-write-lost"]
    empty = rec.EMPTY
    found = check_final(h, {KEY: {"n1": only_a, "n2": empty}}, {}, 10)
    assert "replicas-differ" in [v.kind for v in found]
