"""The stored record: sibling values with dots, a causal context, tombstones.

The model is a multi-value register with *dotted* siblings and a version-vector causal context,
the representation behind dotted version vectors (Preguiça, Baquero et al., "Dotted Version
Vectors", 2012) and Riak's ``dvvset``:

* every write creates one **dot** ``(actor, counter)``: the coordinator's actor and one more than
  the highest counter of that actor it has seen for the key;
* a record holds the siblings that are still concurrent, each with its dot, the coordinator's
  wall-clock timestamp (only used to pick a default value, never for causality) and the value —
  ``None`` for a **tombstone**;
* the record's **context** is a version vector summarising every dot the record has seen,
  including those of siblings it has since discarded.

Invariants kept by every function here:

1. every sibling's dot is covered by the record's own context;
2. siblings are sorted by dot and no two share a dot;
3. ``reconcile`` is the lattice join: commutative, associative, idempotent; a sibling survives
   it unless the other side's context covers its dot and the other side no longer holds it, i.e.
   unless it was causally superseded. Nothing concurrent is ever dropped.

Because a write supersedes exactly the dots in the context it was given, sibling growth is bounded
by the number of writers that really were concurrent (the DVV property), not by the number of
writes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any

import msgpack

from ring.core import vclock
from ring.core.structs import struct
from ring.core.vclock import Clock

FORMAT_VERSION = 1
# Above this many actors in a record's context, entries of actors that hold no sibling are
# pruned. Actors are node incarnations, so a real record almost never gets here; pruning can only
# make an old sibling reappear as concurrent, never hide a live one.
MAX_CONTEXT_ACTORS = 256


class RecordError(ValueError):
    """Bytes (or a wire value) that are not a well-formed record, or a context that is not one
    ringkv produced; the message says what is wrong. Every decoder here raises only this."""


@struct
class Sibling:
    """One concurrent version of a key. ``value is None`` marks a tombstone."""

    actor: str
    counter: int
    ts_ms: int
    value: bytes | None

    @property
    def dot(self) -> tuple[str, int]:
        return (self.actor, self.counter)

    @property
    def is_tombstone(self) -> bool:
        return self.value is None


@struct
class Record:
    """Siblings plus the causal context that summarises everything this record has seen."""

    siblings: tuple[Sibling, ...] = ()
    context: Clock = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not self.siblings and not self.context

    @property
    def live(self) -> list[Sibling]:
        """Siblings that hold a value (not tombstones)."""
        return [s for s in self.siblings if s.value is not None]

    @property
    def is_deleted(self) -> bool:
        """True when every sibling is a tombstone (or there is none)."""
        return all(s.value is None for s in self.siblings)


EMPTY = Record()


def _pick(a: Sibling, b: Sibling) -> Sibling:
    """Choose between two siblings with the same dot (only possible after corruption or a bug);
    the rule is deterministic so that ``reconcile`` stays commutative."""
    return max(a, b, key=lambda s: (s.ts_ms, s.value is not None, s.value or b""))


def reconcile(a: Record, b: Record) -> Record:
    """Merge two records of the same key: the join of the causal lattice."""
    if a is b or a == b:
        return a
    a_dots = {s.dot: s for s in a.siblings}
    b_dots = {s.dot: s for s in b.siblings}
    keep: dict[tuple[str, int], Sibling] = {}
    for dot, s in a_dots.items():
        other = b_dots.get(dot)
        if other is not None:
            keep[dot] = s if other == s else _pick(s, other)
        elif not vclock.covers(b.context, s.actor, s.counter):
            keep[dot] = s
    for dot, s in b_dots.items():
        if dot not in a_dots and not vclock.covers(a.context, s.actor, s.counter):
            keep[dot] = s
    return Record(tuple(keep[d] for d in sorted(keep)), vclock.merge(a.context, b.context))


def reconcile_all(records: Iterable[Record]) -> Record:
    out = EMPTY
    for r in records:
        out = reconcile(out, r)
    return out


def write(
    local: Record,
    actor: str,
    value: bytes | None,
    ts_ms: int,
    context: Mapping[str, int] | None = None,
    floor: int = 0,
) -> Record:
    """The coordinator's step of a put (or, with ``value=None``, a delete).

    ``context`` is what the client saw (from ``get_versioned``); without one the write supersedes
    everything ``local`` holds, which gives a single writer plain overwrite semantics.
    Siblings of ``local`` that ``context`` did not see stay as siblings of the new value.
    ``floor``: the new dot's counter is above it (the highest counter of ``actor`` in a record
    that was reaped: a replica that still holds that record must not take the new write for
    one it has seen).
    """
    seen: Mapping[str, int] = local.context if context is None else context
    counter = max(local.context.get(actor, 0), seen.get(actor, 0), floor) + 1
    keep = [s for s in local.siblings if not vclock.covers(seen, s.actor, s.counter)]
    new = Sibling(actor, counter, ts_ms, value)
    keep.append(new)
    keep.sort(key=lambda s: (s.actor, s.counter))
    ctx = vclock.merge(local.context, seen)
    ctx[actor] = counter
    if len(ctx) > MAX_CONTEXT_ACTORS:
        ctx = _prune_context(ctx, keep, actor)
    return Record(tuple(keep), ctx)


def _prune_context(ctx: Clock, siblings: list[Sibling], writer: str) -> Clock:
    """Drop context entries of actors that hold no sibling, in actor order, down to the bound.
    The writer's own entry and the entries covering siblings are kept (invariant 1)."""
    protected = {s.actor for s in siblings} | {writer}
    out = dict(ctx)
    for actor in sorted(ctx):
        if len(out) <= MAX_CONTEXT_ACTORS:
            break
        if actor not in protected:
            del out[actor]
    return out


def resolve(record: Record) -> bytes | None:
    """The default resolver: the live sibling with the latest timestamp (ties broken by dot), or
    ``None`` when the key is absent or deleted. Deterministic: every replica picks the same."""
    best: Sibling | None = None
    for s in record.siblings:
        if s.value is None:
            continue
        if best is None or (s.ts_ms, s.actor, s.counter) > (best.ts_ms, best.actor, best.counter):
            best = s
    return None if best is None else best.value


# --- encoding ------------------------------------------------------------------------------
#
# On the wire a record is the msgpack-able list ``[1, context, siblings]`` where ``context`` is
# the flat clock ``[actor, counter, ...]`` and ``siblings`` the flat array
# ``[actor, counter, ts_ms, value_or_nil, ...]``.
#
# In storage (``encode``/``decode``) the resolved value is moved out of the msgpack part to the
# end of the bytes, so that ``get`` finds it with one slice and no decoding:
#
#     kind (1 byte) + length of head (1 byte, or 0xff + uint32_be) + head + value
#
# ``head`` is ``msgpack([1, context, siblings])``. ``kind`` is 1 when the tail holds the resolved
# (live) value, whose slot in ``siblings`` is then ``True``; 0 when no sibling is live (the key
# is absent or deleted) and the tail is empty.


def to_wire(record: Record) -> list[object]:
    """The record as plain msgpack-able data (used inside protocol messages)."""
    sibs: list[object] = []
    for s in record.siblings:
        sibs += (s.actor, s.counter, s.ts_ms, s.value)
    return [FORMAT_VERSION, vclock.to_flat(record.context), sibs]


def from_wire(obj: object) -> Record:
    return _from_parts(obj, None)


def _from_parts(obj: object, tail: bytes | None) -> Record:
    if not isinstance(obj, list) or len(obj) != 3 or obj[0] != FORMAT_VERSION:
        raise RecordError("not an encoded record (expected [1, context, siblings])")
    try:
        ctx = vclock.from_flat(obj[1])
    except ValueError as exc:
        raise RecordError(f"not an encoded record: {exc}") from None
    flat = obj[2]
    if not isinstance(flat, list) or len(flat) % 4:
        raise RecordError("record siblings must be a flat array of 4-tuples")
    sibs = []
    for i in range(0, len(flat), 4):
        actor, counter, ts, value = flat[i : i + 4]
        if value is True and tail is not None:
            value, tail = tail, None
        if not (
            isinstance(actor, str)
            and type(counter) is int  # not bool: msgpack true/false is no counter
            and counter > 0
            and type(ts) is int
            and (value is None or isinstance(value, bytes))
        ):
            raise RecordError("malformed sibling in record")
        if ctx.get(actor, 0) < counter:
            raise RecordError("record context does not cover one of its siblings")
        sibs.append(Sibling(actor, counter, ts, value))
    if tail is not None:
        raise RecordError("record tail value has no sibling")
    sibs.sort(key=lambda s: (s.actor, s.counter))
    if any(a.dot == b.dot for a, b in itertools.pairwise(sibs)):
        raise RecordError("record holds two siblings with the same dot")
    return Record(tuple(sibs), ctx)


def _resolved_index(record: Record) -> int:
    best = -1
    for i, s in enumerate(record.siblings):
        if s.value is None:
            continue
        b = record.siblings[best] if best >= 0 else None
        if b is None or (s.ts_ms, s.actor, s.counter) > (b.ts_ms, b.actor, b.counter):
            best = i
    return best


_SIZES = [bytes((n,)) for n in range(255)]


def _frame(head: bytes, value: bytes | None) -> bytes:
    n = len(head)
    size = _SIZES[n] if n < 255 else b"\xff" + n.to_bytes(4, "big")
    if value is None:
        return b"\x00" + size + head
    return b"".join((b"\x01", size, head, value))


def encode(record: Record) -> bytes:
    """The storage form (see above)."""
    best = _resolved_index(record)
    sibs: list[object] = []
    for i, s in enumerate(record.siblings):
        sibs += (s.actor, s.counter, s.ts_ms, True if i == best else s.value)
    head = _packb([FORMAT_VERSION, vclock.to_flat(record.context), sibs])
    return _frame(head, record.siblings[best].value if best >= 0 else None)


def _split(data: bytes) -> tuple[memoryview, bytes | None]:
    if len(data) < 3 or data[0] > 1:
        raise RecordError("not an encoded record (bad kind byte)")
    n, start = data[1], 2
    if n == 255:
        n, start = int.from_bytes(data[2:6], "big"), 6
    end = start + n
    if end > len(data) or (data[0] == 0 and end != len(data)):
        raise RecordError("not an encoded record (bad head length)")
    return memoryview(data)[start:end], (data[end:] if data[0] == 1 else None)


def decode(data: bytes) -> Record:
    """Inverse of :func:`encode`. Raises ``RecordError`` on anything that is not a record."""
    try:
        head, tail = _split(data)
        obj = _unpackb(head)
    except RecordError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types
        raise RecordError(f"not an encoded record: {exc}") from None
    return _from_parts(obj, tail)


def decode_resolved(data: bytes) -> bytes | None:
    """``resolve(decode(data))`` with one slice and no decoding: the hot path of ``get``."""
    if len(data) < 3:  # kind, head length, at least one byte of head
        raise RecordError("not an encoded record (shorter than its framing)")
    kind = data[0]
    if kind == 1:
        n = data[1]
        start = n + 2 if n != 255 else 6 + int.from_bytes(data[2:6], "big")
        if start > len(data) or (n == 255 and len(data) < 6):
            raise RecordError("not an encoded record (shorter than its head)")
        return data[start:]
    if kind == 0:
        return None
    raise RecordError("not an encoded record (bad kind byte)")


def blind_write_encoded(
    data: bytes | None, actor: str, value: bytes, ts_ms: int, floor: int = 0
) -> bytes:
    """``encode(write(decode(data), actor, value, ts_ms, None, floor))`` for a put without
    context, which supersedes every sibling and so needs only the stored context: the hot path
    of ``put``."""
    if data is None:
        c = floor + 1
        return _frame(_packb((FORMAT_VERSION, (actor, c), (actor, c, ts_ms, True))), value)
    n = data[1] if len(data) > 2 else 255
    if n != 255 and data[0] <= 1:
        try:
            obj = _unpackb(data[2 : 2 + n])
        except Exception:  # msgpack raises several types; the checked path below says why
            obj = None
        flat = obj[1] if isinstance(obj, list) and len(obj) == 3 else None
        if (
            isinstance(flat, list)
            and obj[0] == FORMAT_VERSION
            and len(flat) == 2
            and flat[0] == actor
            and type(flat[1]) is int
            and flat[1] > 0
        ):
            # The usual case: this actor is the only writer the key has seen. Its siblings are
            # all superseded, so only the context (checked here) goes into the new record.
            counter = max(flat[1], floor) + 1
            return _frame(
                _packb((FORMAT_VERSION, (actor, counter), (actor, counter, ts_ms, True))), value
            )
    ctx = _checked_context(decode_head(data)[1])  # the siblings are all superseded
    if len(ctx) >= MAX_CONTEXT_ACTORS:
        return encode(write(decode(data), actor, value, ts_ms, None, floor))  # may need pruning
    # The new context is the stored one with this actor's counter one higher.
    counter = max(ctx.get(actor, 0), floor) + 1
    ctx[actor] = counter
    return _frame(
        _packb((FORMAT_VERSION, vclock.to_flat(ctx), (actor, counter, ts_ms, True))), value
    )


def versioned_parts(data: bytes) -> tuple[tuple[bytes, ...], bytes, bytes | None]:
    """``(live values, encoded context, resolved value)`` of an encoded record — what
    ``get_versioned`` returns. A record with one sibling (the usual case) is answered from its
    head without building siblings."""
    head, tail = _split(data)
    try:
        obj = _unpackb(head)
    except Exception as exc:  # msgpack raises several unrelated types
        raise RecordError(f"not an encoded record: {exc}") from None
    if isinstance(obj, list) and len(obj) == 3 and obj[0] == FORMAT_VERSION:
        flat, sibs = obj[1], obj[2]
        if isinstance(sibs, list) and len(sibs) == 4 and isinstance(flat, list) and flat:
            ctx = _packb(flat)  # stored sorted by actor: the same bytes as encode_context
            if tail is not None and sibs[3] is True:
                return (tail,), ctx, tail
            if tail is None and sibs[3] is None:
                return (), ctx, None
    record = decode(data)
    values = tuple(s.value for s in record.siblings if s.value is not None)
    ctx = encode_context(record.context) if record.context else b""
    return values, ctx, resolve(record)


def decode_head(data: bytes) -> list[Any]:
    """The msgpack head ``[1, context, siblings]`` of an encoded record, shape-checked."""
    n = data[1] if len(data) > 2 else 255
    # Short head (a plain slice is cheapest): a live record's value follows the head, a
    # tombstone ends with it.
    end = 2 + n
    if n != 255 and ((data[0] == 1 and end <= len(data)) or (data[0] == 0 and end == len(data))):
        head: bytes | memoryview = data[2:end]
    else:
        head, _ = _split(data)
    try:
        obj = _unpackb(head)
    except Exception as exc:  # msgpack raises several unrelated types
        raise RecordError(f"not an encoded record: {exc}") from None
    if not isinstance(obj, list) or len(obj) != 3 or obj[0] != FORMAT_VERSION:
        raise RecordError("not an encoded record (expected [1, context, siblings])")
    flat, sibs = obj[1], obj[2]
    if not isinstance(flat, list) or not isinstance(sibs, list) or len(flat) % 2 or len(sibs) % 4:
        raise RecordError("not an encoded record (malformed context or siblings)")
    return obj


class LocalCorrupt(RecordError):
    """The stored side of a merge does not decode (the incoming record was fine)."""


def _checked_context(flat: list[Any]) -> dict[str, int]:
    """A record's flat context ``[actor, counter, ...]`` as a clock, checked: actors are
    strings in sorted order (as ``encode`` writes them), counters positive integers."""
    ctx: dict[str, int] = {}
    prev = ""
    for i in range(0, len(flat), 2):
        actor, n = flat[i], flat[i + 1]
        if not isinstance(actor, str) or type(n) is not int or n <= 0 or (i and actor <= prev):
            raise RecordError("not an encoded record (malformed context)")
        ctx[actor] = n
        prev = actor
    return ctx


def _checked_head(data: bytes) -> tuple[dict[str, int], list[tuple[str, int]], list[Any]]:
    """The context, the sibling dots and the flat siblings of an encoded record, without
    building siblings, after checking everything ``decode`` checks, and that the record is laid
    out as ``encode`` writes it: the context sorted by actor, and the resolved value (the live
    sibling ``resolve`` picks) in the tail, so that ``decode_resolved`` reads what ``decode``
    does. Raises ``RecordError``. (Records hold a handful of siblings, so a list serves
    membership tests as well as a set.)"""
    obj = decode_head(data)
    flat, sibs = obj[1], obj[2]
    ctx = _checked_context(flat)
    dots: list[tuple[str, int]] = []
    resolved = 0
    best: tuple[int, str, int] | None = None  # (ts, actor, counter) of the resolved sibling
    best_in_tail = False
    for i in range(0, len(sibs), 4):
        actor, counter, ts, value = sibs[i : i + 4]
        if value is True:
            resolved += 1
        elif value is not None and not isinstance(value, bytes):
            raise RecordError("not an encoded record (malformed sibling value)")
        if not isinstance(actor, str) or type(counter) is not int or type(ts) is not int:
            raise RecordError("not an encoded record (malformed sibling)")
        if not 0 < counter <= ctx.get(actor, 0):
            raise RecordError("record context does not cover one of its siblings")
        if (actor, counter) in dots:
            raise RecordError("record holds two siblings with the same dot")
        dots.append((actor, counter))
        if value is not None and (best is None or (ts, actor, counter) > best):
            best, best_in_tail = (ts, actor, counter), value is True
    if resolved != data[0]:  # kind 1: exactly one sibling's value is the tail; kind 0: none
        raise RecordError("record tail value does not match its siblings")
    if (best is not None) != (resolved == 1) or (best is not None and not best_in_tail):
        raise RecordError("record tail does not hold the resolved value")
    return ctx, dots, sibs


def check_encoded(data: bytes) -> None:
    """Raise ``RecordError`` unless ``data`` is a well-formed stored record. Cheaper than
    ``decode`` (no objects are built); a record from elsewhere is checked before it is kept."""
    if not isinstance(data, bytes):
        raise RecordError("a record is bytes")
    _checked_head(data)


def _absorbs(
    a_ctx: dict[str, int],
    a_dots: list[tuple[str, int]],
    b_ctx: dict[str, int],
    b_dots: list[tuple[str, int]],
) -> bool:
    """True when ``reconcile(a, b) == a``: ``a`` has seen all of ``b`` (so every sibling of
    ``b`` is in ``a`` or superseded by it), and ``b`` superseded none of ``a``'s siblings."""
    get = a_ctx.get
    for actor, n in b_ctx.items():
        if get(actor, 0) < n:
            return False
    return all(d in b_dots or b_ctx.get(d[0], 0) < d[1] for d in a_dots)


def _tail(data: bytes) -> bytes:
    n = data[1]
    return data[2 + n :] if n != 255 else data[6 + int.from_bytes(data[2:6], "big") :]


def _same_shared(a: bytes, a_sibs: list[Any], b: bytes, b_sibs: list[Any]) -> bool:
    """Whether every sibling ``a`` and ``b`` both hold (by dot) is the same in both (timestamp
    and value). It is, unless one of them was damaged or forged; then ``reconcile`` picks one
    (``_pick``) and the fast paths of ``merge_encoded``, which decide from dots, must not."""
    mine = {(a_sibs[i], a_sibs[i + 1]): i for i in range(0, len(a_sibs), 4)}
    for j in range(0, len(b_sibs), 4):
        i = mine.get((b_sibs[j], b_sibs[j + 1]))
        if i is None:
            continue
        if a_sibs[i + 2] != b_sibs[j + 2]:
            return False
        x, y = a_sibs[i + 3], b_sibs[j + 3]
        if (_tail(a) if x is True else x) != (_tail(b) if y is True else y):
            return False
    return True


def merge_encoded(local: bytes | None, incoming: bytes) -> bytes | None:
    """``encode(reconcile(decode(local), decode(incoming)))``, or ``None`` when that is what
    ``local`` already holds. The usual cases — nothing stored yet, a duplicate, a record that
    has seen everything stored (the replica step of a put), or an old one — are decided from
    the two clocks and sibling dots alone, without building or re-encoding records.

    ``incoming`` comes from elsewhere and is checked in full before anything of it is kept
    (``RecordError``); a stored ``local`` that does not decode raises :class:`LocalCorrupt`, so
    the caller can replace it with the (good) incoming record."""
    i_ctx, i_dots, i_sibs = _checked_head(incoming)
    if local is None:
        return incoming
    if local == incoming:
        return None
    try:
        # What is stored was checked when it came (or encoded here): its shape suffices on the
        # fast path; damage that passes for a record is found by decode on the slow one.
        _, flat, sibs = decode_head(local)
        l_ctx, l_dots = dict(zip(flat[0::2], flat[1::2])), list(zip(sibs[0::4], sibs[1::4]))
        absorbed = _absorbs(i_ctx, i_dots, l_ctx, l_dots)
        absorbs = not absorbed and _absorbs(l_ctx, l_dots, i_ctx, i_dots)
        usual = len(i_dots) == 1 == len(l_dots) and i_dots != l_dots  # no dot in common
        if (absorbed or absorbs) and not usual and not _same_shared(local, sibs, incoming, i_sibs):
            absorbed = absorbs = False  # a dot both hold with two contents: reconcile decides
    except (ValueError, TypeError) as exc:
        raise LocalCorrupt(str(exc)) from None
    if absorbed:
        return incoming
    if absorbs:
        return None
    try:
        old = decode(local)
    except ValueError as exc:
        raise LocalCorrupt(str(exc)) from None
    merged = reconcile(old, decode(incoming))
    return None if merged == old else encode(merged)


_packb = msgpack.Packer(use_bin_type=True).pack


_unpackb = msgpack.unpackb


def encode_context(context: Mapping[str, int]) -> bytes:
    """The opaque causal context handed to clients."""
    return vclock.encode(context)


def decode_context(data: bytes) -> Clock:
    """Inverse of :func:`encode_context`; raises ``RecordError``."""
    try:
        return vclock.decode(data)
    except ValueError as exc:
        raise RecordError(str(exc)) from None
