"""The two records of a feed, their encoding, and the deterministic merge of their siblings.

Pure functions only: no store, no clock. ``merge_entry`` and ``merge_header`` are the whole
sibling-merge rule of the feed layer; they are commutative (the result does not depend on the
order the store lists siblings in) and never drop information a sibling carries:

**Entry** ``[1, data, prevs, nexts, removed]``. ``data`` and the id never change after the
entry is written. ``removed`` is 0 for a live entry, else the hybrid time of its removal.
``prevs`` and ``nexts`` are *sets of candidates* (an id, or ``None`` for "no neighbour"); a
well-linked entry has exactly one of each. Merging siblings takes the union of the candidates,
the data, and the earliest removal time — a removal, once written, wins over any concurrent
rewrite of the links, so a removed entry never comes back.

**Header** ``[1, firsts, lasts, count, floor, log, hts_max]``. ``firsts``/``lasts`` are the
*end witnesses*: every entry some writer believed to be at the head/tail. Merging takes their
union; a walk that has verified the ends replaces them by the verified entry. ``count`` is an
operation-based counter: each change to it is an operation with a unique id — ``a<id>`` (entry
added, +1), ``r<id>`` (entry removed, -1), ``f<hts><writer>`` (a repair's correction) — and the
header's value is the sum over the set of operations it has seen. ``log`` keeps the operations
with the ``LOG_LIMIT`` newest hybrid timestamps, ``floor`` is the newest timestamp dropped from
it, so the log holds *every* operation of the header newer than ``floor``. Merging siblings
takes the union of the operation sets::

    count = ref.count + sum(op.delta for op in union(logs)
                            if op not in ref.log and op.hts > ref.floor)

which counts an operation applied in two siblings once: two writers removing the same entry,
a retried operation and a repair that counted an entry its writer also counts all dedup by id.
It relies on one assumption, stated in the package docstring: an operation reaches every copy
of the header before ``LOG_LIMIT`` newer operations have been applied to any copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import msgpack

from ring.errors import CorruptData

FORMAT = 1
LOG_LIMIT = 64

Candidate = bytes | None


def candidates(items: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """A candidate set in its canonical order (``None`` first, then ids)."""
    return tuple(sorted(set(items), key=lambda c: (c is not None, c or b"")))


@dataclass(frozen=True, slots=True)
class EntryRecord:
    data: bytes | None
    prevs: tuple[Candidate, ...]
    nexts: tuple[Candidate, ...]
    removed: int = 0

    @property
    def live(self) -> bool:
        return not self.removed


@dataclass(frozen=True, slots=True)
class Op:
    """One change of the count; ``key`` identifies it, ``hts`` places it in the log window."""

    key: bytes
    hts: int
    delta: int


@dataclass(frozen=True, slots=True)
class HeaderRecord:
    firsts: tuple[bytes, ...] = ()
    lasts: tuple[bytes, ...] = ()
    count: int = 0
    floor: int = 0
    log: tuple[Op, ...] = ()
    hts_max: int = 0

    def knows(self, key: bytes, hts: int) -> bool:
        """Whether this header has counted operation ``key`` (exact above ``floor``; below it,
        by the log-window assumption, every operation has been counted)."""
        return hts <= self.floor or any(op.key == key for op in self.log)


EMPTY_HEADER = HeaderRecord()


def add_op(entry_id: bytes) -> Op:
    from feeds.ids import hts_of

    return Op(b"a" + entry_id, hts_of(entry_id), 1)


def remove_op(entry_id: bytes, hts: int) -> Op:
    return Op(b"r" + entry_id, hts, -1)


# --- encoding ----------------------------------------------------------------------------------

_pack = msgpack.Packer(use_bin_type=True).pack


def encode_entry(rec: EntryRecord) -> bytes:
    return _pack([FORMAT, rec.data, list(rec.prevs), list(rec.nexts), rec.removed])


def encode_header(h: HeaderRecord) -> bytes:
    flat: list[object] = []
    for op in h.log:
        flat += (op.key, op.hts, op.delta)
    return _pack([FORMAT, list(h.firsts), list(h.lasts), h.count, h.floor, flat, h.hts_max])


def _unpack(raw: bytes, what: str, size: int) -> list[object]:
    try:
        obj = msgpack.unpackb(raw)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CorruptData(f"feed {what} record cannot be decoded: {exc}") from None
    if not isinstance(obj, list) or len(obj) != size or obj[0] != FORMAT:
        raise CorruptData(f"feed {what} record has an unknown format")
    return obj


def _ids(obj: object, what: str, none_ok: bool) -> tuple[Candidate, ...]:
    if not isinstance(obj, list) or not all(
        (c is None and none_ok) or (isinstance(c, bytes) and len(c) == 12) for c in obj
    ):
        raise CorruptData(f"feed {what} record holds malformed entry ids")
    return tuple(obj)


def decode_entry(raw: bytes) -> EntryRecord:
    _, data, prevs, nexts, removed = _unpack(raw, "entry", 5)
    if not (data is None or isinstance(data, bytes)) or not isinstance(removed, int):
        raise CorruptData("feed entry record is malformed")
    return EntryRecord(data, _ids(prevs, "entry", True), _ids(nexts, "entry", True), removed)


def decode_header(raw: bytes) -> HeaderRecord:
    _, firsts, lasts, count, floor, flat, hts_max = _unpack(raw, "header", 7)
    if not (
        isinstance(count, int)
        and isinstance(floor, int)
        and isinstance(hts_max, int)
        and isinstance(flat, list)
        and len(flat) % 3 == 0
    ):
        raise CorruptData("feed header record is malformed")
    log = tuple(Op(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3))
    if not all(isinstance(o.key, bytes) and isinstance(o.hts, int) for o in log):
        raise CorruptData("feed header record holds a malformed operation")
    return HeaderRecord(
        _ids(firsts, "header", False),  # type: ignore[arg-type]
        _ids(lasts, "header", False),  # type: ignore[arg-type]
        count,
        floor,
        log,
        hts_max,
    )


# --- merging siblings ----------------------------------------------------------------------------


def merge_entry(values: Iterable[bytes]) -> EntryRecord:
    """One record from the siblings of an entry key (see the module docstring)."""
    recs = [decode_entry(v) for v in values]
    if len(recs) == 1:
        return recs[0]
    removed = [r.removed for r in recs if r.removed]
    data = [r.data for r in recs if r.data is not None]
    return EntryRecord(
        min(data) if data and not removed else None,
        candidates(c for r in recs for c in r.prevs),
        candidates(c for r in recs for c in r.nexts),
        min(removed) if removed else 0,
    )


def truncate(ops: Iterable[Op], floor: int, limit: int = LOG_LIMIT) -> tuple[tuple[Op, ...], int]:
    """The log window: operations newer than ``floor``, at most ``limit``, oldest first; and
    the new floor (operations at or below it are dropped together, so ``knows`` stays exact)."""
    kept = sorted((op for op in ops if op.hts > floor), key=lambda op: (op.hts, op.key))
    if len(kept) > limit:
        floor = kept[len(kept) - limit - 1].hts
        kept = [op for op in kept if op.hts > floor]
    return tuple(kept), floor


def _union(ops: Iterable[Op]) -> dict[bytes, Op]:
    out: dict[bytes, Op] = {}
    for op in ops:
        seen = out.get(op.key)
        # Two removers of one entry write the same operation with different times: keep the
        # earliest, whatever order the siblings come in.
        if seen is None or (op.hts, op.delta) < (seen.hts, seen.delta):
            out[op.key] = op
    return out


def merge_header(values: Iterable[bytes], limit: int = LOG_LIMIT) -> HeaderRecord:
    """One header from the siblings of a header key (see the module docstring)."""
    heads = [decode_header(v) for v in values]
    if not heads:
        return EMPTY_HEADER
    if len(heads) == 1:
        return heads[0]
    # The reference sibling is chosen by content, so the merge does not depend on sibling order.
    ref = max(heads, key=lambda h: (h.floor, len(h.log), h.count, encode_header(h)))
    ref_keys = {op.key for op in ref.log}
    ops = _union(op for h in heads for op in h.log)
    count = ref.count + sum(
        op.delta for op in ops.values() if op.key not in ref_keys and op.hts > ref.floor
    )
    log, floor = truncate(ops.values(), max(h.floor for h in heads), limit)
    return HeaderRecord(
        candidates(c for h in heads for c in h.firsts),  # type: ignore[arg-type]
        candidates(c for h in heads for c in h.lasts),  # type: ignore[arg-type]
        count,
        floor,
        log,
        max(h.hts_max for h in heads),
    )


def with_ops(h: HeaderRecord, ops: Iterable[Op], limit: int = LOG_LIMIT) -> HeaderRecord:
    """``h`` after applying ``ops``; an operation ``h`` already counted is not counted again."""
    count, new = h.count, list(h.log)
    hts_max = h.hts_max
    for op in ops:
        hts_max = max(hts_max, op.hts)
        if h.knows(op.key, op.hts) or any(o.key == op.key for o in new):
            continue
        count += op.delta
        new.append(op)
    log, floor = truncate(new, h.floor, limit)
    return replace(h, count=count, log=log, floor=floor, hts_max=hts_max)
