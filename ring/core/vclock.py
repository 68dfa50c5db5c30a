"""Vector clocks (Lamport 1978; Mattern 1988; as used by Dynamo, DeCandia et al. 2007).

A clock maps an *actor* to a counter. An actor is a node id plus an epoch (``"node1@7f3a…"``):
when a node loses its data it starts a new epoch, so it never issues a counter that an older
incarnation of itself already used (Riak's kv679 problem).

Clocks are plain ``dict[str, int]`` values treated as immutable: every function here returns a
new dict and never mutates its arguments. Invariants kept:

* counters are positive integers; an actor that is absent has counter 0;
* ``increment`` never decreases a counter;
* ``merge`` is the pointwise maximum, so it is commutative, associative and idempotent;
* ``prune`` removes whole entries only (never lowers a counter), oldest first, and only above a
  bound, so pruning can create false concurrency (extra siblings) but never drops a value.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import msgpack

Clock = dict[str, int]


class Order(enum.Enum):
    """How two clocks relate."""

    BEFORE = "before"
    AFTER = "after"
    EQUAL = "equal"
    CONCURRENT = "concurrent"


def increment(clock: Mapping[str, int], actor: str) -> Clock:
    """Return a copy of ``clock`` with ``actor``'s counter one higher."""
    out = dict(clock)
    out[actor] = out.get(actor, 0) + 1
    return out


def merge(a: Mapping[str, int], b: Mapping[str, int]) -> Clock:
    """Pointwise maximum: the least clock that descends both."""
    if len(a) < len(b):
        a, b = b, a
    out = dict(a)
    for actor, n in b.items():
        if n > out.get(actor, 0):
            out[actor] = n
    return out


def descends(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """True when ``a`` has seen everything ``b`` has (a >= b pointwise)."""
    get = a.get
    return all(get(actor, 0) >= n for actor, n in b.items())


def compare(a: Mapping[str, int], b: Mapping[str, int]) -> Order:
    """Order ``a`` relative to ``b``."""
    ab = descends(a, b)
    ba = descends(b, a)
    if ab and ba:
        return Order.EQUAL
    if ab:
        return Order.AFTER
    if ba:
        return Order.BEFORE
    return Order.CONCURRENT


def covers(clock: Mapping[str, int], actor: str, counter: int) -> bool:
    """True when the event ``(actor, counter)`` is in the causal past summarised by ``clock``."""
    return clock.get(actor, 0) >= counter


def prune(
    clock: Mapping[str, int],
    last_seen_ms: Mapping[str, int],
    *,
    max_entries: int,
    now_ms: int,
    min_age_ms: int = 0,
) -> Clock:
    """Drop the oldest entries while the clock is larger than ``max_entries``.

    ``last_seen_ms`` gives, per actor, when it last wrote; actors without a time count as oldest.
    Entries younger than ``min_age_ms`` are never dropped (Riak's ``young_vclock``), so a clock can
    stay above the bound for a while rather than lose recent history.
    """
    if len(clock) <= max_entries:
        return dict(clock)
    by_age = sorted(clock, key=lambda actor: (last_seen_ms.get(actor, -1), actor))
    out = dict(clock)
    for actor in by_age:
        if len(out) <= max_entries:
            break
        if now_ms - last_seen_ms.get(actor, -1) < min_age_ms:
            break
        del out[actor]
    return out


def encode(clock: Mapping[str, int]) -> bytes:
    """Compact msgpack form: the flat array ``[actor, counter, ...]`` in actor order."""
    data: bytes = msgpack.packb(to_flat(clock))
    return data


def decode(data: bytes) -> Clock:
    """Inverse of :func:`encode`. Raises ``ValueError`` on anything that is not a clock."""
    try:
        flat = msgpack.unpackb(data)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ValueError(f"not an encoded clock: {exc}") from None
    return from_flat(flat)


def to_flat(clock: Mapping[str, int]) -> list[object]:
    flat: list[object] = []
    for actor in sorted(clock):
        flat.append(actor)
        flat.append(clock[actor])
    return flat


def from_flat(flat: object) -> Clock:
    if not isinstance(flat, list) or len(flat) % 2:
        raise ValueError("an encoded clock is a flat array of actor, counter pairs")
    out: Clock = {}
    for i in range(0, len(flat), 2):
        actor, n = flat[i], flat[i + 1]
        # bool is an int subclass; msgpack true/false is not a counter.
        if not isinstance(actor, str) or type(n) is not int or n <= 0:
            raise ValueError("an encoded clock holds (str actor, positive int counter) pairs")
        out[actor] = n
    return out
