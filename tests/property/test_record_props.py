"""Laws of the record (dotted siblings + causal context) over *reachable* states.

Arbitrary ``Record`` values are not interesting: many break the invariants no real replica can
break (a sibling the context does not cover, two siblings with one dot). So states here come from
a simulated history: three replicas, each the only coordinator for its own actor, take random
writes (with the context of any earlier state a client may have read, blind, or deletes) and
random merges of any earlier state (a late or duplicated replication message). Every state that
ever existed is a candidate for the laws.

Alongside the history we keep the ground truth of the DVV model: every dot ever written, and
every dot some write superseded (covered by the context that write was given).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from ring.core import record as rec
from ring.core import vclock
from ring.core.record import Record, Sibling

SETTINGS = settings(max_examples=100, deadline=None)

ACTORS = ("a@1", "b@2", "c@3")


@dataclass
class History:
    states: list[Record] = field(default_factory=lambda: [rec.EMPTY])
    replicas: dict[str, Record] = field(default_factory=lambda: dict.fromkeys(ACTORS, rec.EMPTY))
    written: dict[tuple[str, int], Sibling] = field(default_factory=dict)
    superseded: set[tuple[str, int]] = field(default_factory=set)
    steps: list[tuple[str, Record]] = field(default_factory=list)


@st.composite
def histories(draw: st.DrawFn, max_steps: int = 14) -> History:
    h = History()
    for _ in range(draw(st.integers(0, max_steps))):
        actor = draw(st.sampled_from(ACTORS))
        local = h.replicas[actor]
        step = draw(st.sampled_from(["write", "write", "merge"]))
        if step == "merge":
            other = h.states[draw(st.integers(0, len(h.states) - 1))]
            new = rec.reconcile(local, other)
        else:
            if draw(st.booleans()):
                ctx = None  # blind: supersedes what this replica holds
            else:
                ctx = h.states[draw(st.integers(0, len(h.states) - 1))].context
            value = draw(st.none() | st.binary(max_size=2))
            ts = draw(st.integers(0, 4))  # small range: ties and skewed clocks happen
            new = rec.write(local, actor, value, ts, ctx)
            seen = local.context if ctx is None else ctx
            h.superseded |= {d for d in h.written if vclock.covers(seen, *d)}
            (sib,) = [s for s in new.siblings if s.dot not in h.written]
            h.written[sib.dot] = sib
        h.replicas[actor] = new
        h.states.append(new)
        h.steps.append((actor, new))
    return h


@st.composite
def states(draw: st.DrawFn, n: int) -> tuple[Record, ...]:
    h = draw(histories())
    return tuple(h.states[draw(st.integers(0, len(h.states) - 1))] for _ in range(n))


def check_invariants(r: Record) -> None:
    dots = [s.dot for s in r.siblings]
    assert dots == sorted(dots), "siblings sorted by dot"
    assert len(set(dots)) == len(dots), "no two siblings share a dot"
    for s in r.siblings:
        assert vclock.covers(r.context, s.actor, s.counter), "context covers every sibling"
    assert all(type(n) is int and n > 0 for n in r.context.values())


def superseded_by(s: Sibling, other: Record) -> bool:
    return vclock.covers(other.context, s.actor, s.counter) and s not in other.siblings


# --- reconcile is a join --------------------------------------------------------------------


@SETTINGS
@given(states(2))
def test_reconcile_commutative(ab: tuple[Record, Record]) -> None:
    a, b = ab
    assert rec.reconcile(a, b) == rec.reconcile(b, a)


@SETTINGS
@given(states(3))
def test_reconcile_associative(abc: tuple[Record, Record, Record]) -> None:
    a, b, c = abc
    assert rec.reconcile(rec.reconcile(a, b), c) == rec.reconcile(a, rec.reconcile(b, c))


@SETTINGS
@given(states(2))
def test_reconcile_idempotent_and_absorbing(ab: tuple[Record, Record]) -> None:
    a, b = ab
    assert rec.reconcile(a, a) == a
    m = rec.reconcile(a, b)
    assert rec.reconcile(m, a) == m
    assert rec.reconcile(m, b) == m
    assert rec.reconcile(m, m) == m


@SETTINGS
@given(states(2))
def test_reconcile_keeps_exactly_what_was_not_superseded(ab: tuple[Record, Record]) -> None:
    a, b = ab
    m = rec.reconcile(a, b)
    check_invariants(m)
    expected = {s for s in a.siblings if not superseded_by(s, b)} | {
        s for s in b.siblings if not superseded_by(s, a)
    }
    assert set(m.siblings) == expected
    assert m.context == vclock.merge(a.context, b.context)


@SETTINGS
@given(histories())
def test_every_reachable_state_keeps_the_invariants(h: History) -> None:
    for r in h.states:
        check_invariants(r)
        assert set(r.siblings) <= set(h.written.values())


@SETTINGS
@given(histories())
def test_no_write_is_lost_and_superseded_ones_go(h: History) -> None:
    # Once every replica has everything, the siblings are exactly the writes that no later write
    # superseded: nothing concurrent is dropped, nothing superseded comes back.
    converged = rec.reconcile_all(h.replicas.values())
    assert set(converged.siblings) == {s for d, s in h.written.items() if d not in h.superseded}
    # And the order of anti-entropy does not matter.
    for order in itertools.permutations(h.replicas.values()):
        assert rec.reconcile_all(order) == converged
    # Merging stale states again changes nothing (late or duplicated messages are harmless).
    assert rec.reconcile_all([converged, *h.states]) == converged


@SETTINGS
@given(histories())
def test_replica_states_only_grow(h: History) -> None:
    # A replica never forgets: each of its states is above the previous one in the lattice, so
    # merging the older state into the newer changes nothing.
    last = dict.fromkeys(ACTORS, rec.EMPTY)
    for actor, r in h.steps:
        assert vclock.descends(r.context, last[actor].context)
        assert rec.reconcile(r, last[actor]) == r
        last[actor] = r


# --- writes -----------------------------------------------------------------------------------


@SETTINGS
@given(st.data(), st.sampled_from(ACTORS), st.none() | st.binary(max_size=3))
def test_write_removes_exactly_the_siblings_its_context_covers(
    data: st.DataObject, actor: str, value: bytes | None
) -> None:
    h = data.draw(histories())
    local = h.replicas[actor]
    ctx = h.states[data.draw(st.integers(0, len(h.states) - 1))].context
    new = rec.write(local, actor, value, 7, ctx)
    check_invariants(new)
    (fresh,) = [s for s in new.siblings if s not in local.siblings]
    assert fresh.actor == actor and fresh.value == value and fresh.ts_ms == 7
    assert fresh.counter > max(local.context.get(actor, 0), ctx.get(actor, 0))
    kept = [s for s in local.siblings if not vclock.covers(ctx, s.actor, s.counter)]
    assert set(new.siblings) == {*kept, fresh}
    assert vclock.descends(new.context, local.context)
    assert vclock.descends(new.context, ctx)


@SETTINGS
@given(st.data(), st.sampled_from(ACTORS), st.binary(max_size=3))
def test_write_with_a_read_context_supersedes_everything_read(
    data: st.DataObject, actor: str, value: bytes
) -> None:
    h = data.draw(histories())
    read = h.states[data.draw(st.integers(0, len(h.states) - 1))]
    # The client read `read` (from any replica) and writes back through `actor`'s replica.
    new = rec.write(h.replicas[actor], actor, value, 1, read.context)
    assert not set(new.siblings) & set(read.siblings)
    # Once replication catches up, none of what the client saw survives anywhere.
    merged = rec.reconcile_all([*h.replicas.values(), new])
    assert not set(merged.siblings) & set(read.siblings)
    assert value in [s.value for s in merged.siblings]


@SETTINGS
@given(st.data(), st.sampled_from(ACTORS), st.none() | st.binary(max_size=3))
def test_blind_write_supersedes_everything_local(
    data: st.DataObject, actor: str, value: bytes | None
) -> None:
    h = data.draw(histories())
    local = h.replicas[actor]
    new = rec.write(local, actor, value, 3)
    assert len(new.siblings) == 1
    assert new.siblings[0].value == value and new.siblings[0].actor == actor
    assert vclock.descends(new.context, local.context)
    # A merge with the old local state cannot bring anything back.
    assert rec.reconcile(new, local) == new


# --- encoding and resolution ------------------------------------------------------------------


@SETTINGS
@given(histories())
def test_encode_decode_round_trip(h: History) -> None:
    for r in h.states:
        data = rec.encode(r)
        assert rec.decode(data) == r
        assert rec.from_wire(rec.to_wire(r)) == r
        assert rec.decode_resolved(data) == rec.resolve(r)
        assert rec.decode_context(rec.encode_context(r.context)) == r.context


@SETTINGS
@given(states(2))
def test_resolve_is_deterministic_and_picks_the_latest(ab: tuple[Record, Record]) -> None:
    a, b = ab
    m = rec.reconcile(a, b)
    chosen = rec.resolve(m)
    assert chosen == rec.resolve(rec.reconcile(b, a))
    live = m.live
    if not live:
        assert chosen is None
    else:
        best = max(live, key=lambda s: (s.ts_ms, s.actor, s.counter))
        assert chosen == best.value
        assert all(s.ts_ms <= best.ts_ms for s in live)


@SETTINGS
@given(st.data(), st.sampled_from(ACTORS), st.binary(max_size=3))
def test_blind_put_fast_path_agrees_with_write(
    data: st.DataObject, actor: str, value: bytes
) -> None:
    # The embedded put works on the encoded bytes without building siblings; it must store what
    # the model write stores, from every reachable state.
    h = data.draw(histories())
    local = h.states[data.draw(st.integers(0, len(h.states) - 1))]
    fast = rec.blind_write_encoded(
        rec.encode(local) if local != rec.EMPTY else None, actor, value, 5
    )
    assert rec.decode(fast) == rec.write(local, actor, value, 5)
