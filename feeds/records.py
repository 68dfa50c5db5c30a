"""The two records of a feed, their encoding, and the deterministic merge of their siblings.

Pure functions only: no store, no clock. ``merge_entry`` and ``merge_header`` are the whole
sibling-merge rule of the feed layer; the result does not depend on the order the store lists
siblings in, and no information a sibling carries is dropped:

**Entry** ``[1, data, prevs, nexts, removed, remover]``. ``data`` and the id never change after
the entry is written. ``removed`` is 0 for a live entry, else the hybrid time of its removal by
writer ``remover``. ``prevs`` and ``nexts`` are *sets of candidates* (an id, or ``None`` for "no
neighbour"); a well-linked entry has exactly one of each. Merging siblings takes the union of
the candidates and the earliest removal — a removal, once written, wins over any concurrent
rewrite of the links, so a removed entry never comes back.

**Header** ``[1, firsts, lasts, tally, hts_max]``. ``firsts``/``lasts`` are the *end
witnesses*: every entry some writer believed to be at the head/tail that no walk has verified
since. Merging takes their union; a walk that verifies an end replaces them by the entry it
found (``feeds.walk``). ``tally`` is the count, an operation-based counter merged by
``feeds.counter``. ``hts_max`` is the newest hybrid timestamp any writer wrote here; writers
observe it, so new operations sort after everything the header has seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgpack

from feeds import counter
from feeds.counter import Op, Tally
from ring.errors import CorruptData

FORMAT = 1

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
    remover: bytes = b""

    @property
    def live(self) -> bool:
        return not self.removed


@dataclass(frozen=True, slots=True)
class HeaderRecord:
    firsts: tuple[bytes, ...] = ()
    lasts: tuple[bytes, ...] = ()
    tally: Tally = field(default_factory=Tally)
    hts_max: int = 0

    @property
    def count(self) -> int:
        return self.tally.count


EMPTY_HEADER = HeaderRecord()


# --- encoding ----------------------------------------------------------------------------------

_pack = msgpack.Packer(use_bin_type=True).pack
_unpackb = msgpack.unpackb


def encode_entry(rec: EntryRecord) -> bytes:
    return _pack([FORMAT, rec.data, list(rec.prevs), list(rec.nexts), rec.removed, rec.remover])


def _flat(ops: Iterable[Op]) -> list[object]:
    out: list[object] = []
    for op in ops:
        out += (op.key, op.author, op.hts, op.delta)
    return out


def encode_header(h: HeaderRecord) -> bytes:
    t = h.tally
    marks = [x for mark in t.marks for x in mark]
    tally = [t.base, marks, _flat(t.log), _flat(t.proxied), _flat(t.dups), t.horizon]
    return _pack([FORMAT, list(h.firsts), list(h.lasts), tally, h.hts_max])


def _unpack(raw: bytes, what: str, size: int) -> list[object]:
    try:
        obj = msgpack.unpackb(raw)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CorruptData(f"feed {what} record cannot be decoded: {exc}") from None
    if not isinstance(obj, list) or len(obj) != size or obj[0] != FORMAT:
        raise CorruptData(f"feed {what} record has an unknown format")
    return obj


def _ids(obj: object, none_ok: bool) -> tuple[Candidate, ...]:
    if type(obj) is not list:
        raise CorruptData("feed record holds malformed entry ids")
    for c in obj:
        if (c is None and none_ok) or (type(c) is bytes and len(c) == 12):
            continue
        raise CorruptData("feed record holds malformed entry ids")
    return tuple(obj)


def decode_entry(raw: bytes) -> EntryRecord:
    try:
        obj = _unpackb(raw)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CorruptData(f"feed entry record cannot be decoded: {exc}") from None
    if type(obj) is not list or len(obj) != 6 or obj[0] != FORMAT:
        raise CorruptData("feed entry record has an unknown format")
    _, data, prevs, nexts, removed, remover = obj
    if not (
        (data is None or type(data) is bytes) and type(removed) is int and type(remover) is bytes
    ):
        raise CorruptData("feed entry record is malformed")
    return EntryRecord(data, _ids(prevs, True), _ids(nexts, True), removed, remover)


def _ops(flat: list[object]) -> tuple[Op, ...]:
    if type(flat) is not list or len(flat) % 4:
        raise ValueError("malformed operations")
    ops = []
    for i in range(0, len(flat), 4):
        key, author, hts, delta = flat[i : i + 4]
        if type(key) is not bytes or type(author) is not bytes:
            raise ValueError("malformed operation")
        if type(hts) is not int or type(delta) is not int:
            raise ValueError("malformed operation")
        ops.append(Op(key, author, hts, delta))
    return tuple(ops)


def _tally(obj: object) -> Tally:
    try:
        base, flat, log, proxied, dups, horizon = obj  # type: ignore[misc]
        marks = tuple(tuple(flat[i : i + 3]) for i in range(0, len(flat), 3))
        if not (
            isinstance(base, int)
            and isinstance(horizon, int)
            and all(
                len(m) == 3
                and isinstance(m[0], bytes)
                and isinstance(m[1], int)
                and isinstance(m[2], int)
                for m in marks
            )
        ):
            raise ValueError("malformed count")
        return Tally(base, marks, _ops(log), _ops(proxied), _ops(dups), horizon)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CorruptData("feed header record holds a malformed count") from None


def decode_header(raw: bytes) -> HeaderRecord:
    _, firsts, lasts, tally, hts_max = _unpack(raw, "header", 5)
    if not isinstance(hts_max, int):
        raise CorruptData("feed header record is malformed")
    return HeaderRecord(_ids(firsts, False), _ids(lasts, False), _tally(tally), hts_max)  # type: ignore[arg-type]


# --- merging siblings ----------------------------------------------------------------------------


def merge_entry(values: Iterable[bytes]) -> EntryRecord:
    """One record from the siblings of an entry key (see the module docstring)."""
    recs = [decode_entry(v) for v in values]
    if len(recs) == 1:
        return recs[0]
    removals = sorted((r.removed, r.remover) for r in recs if r.removed)
    data = [r.data for r in recs if r.data is not None]
    removed, remover = removals[0] if removals else (0, b"")
    return EntryRecord(
        min(data) if data and not removed else None,
        candidates(c for r in recs for c in r.prevs),
        candidates(c for r in recs for c in r.nexts),
        removed,
        remover,
    )


def merge_header(values: Iterable[bytes], limit: int = counter.LOG_LIMIT) -> HeaderRecord:
    """One header from the siblings of a header key (see the module docstring)."""
    heads = [decode_header(v) for v in values]
    if not heads:
        return EMPTY_HEADER
    if len(heads) == 1:
        return heads[0]
    return HeaderRecord(
        candidates(c for h in heads for c in h.firsts),  # type: ignore[arg-type]
        candidates(c for h in heads for c in h.lasts),  # type: ignore[arg-type]
        counter.merge([h.tally for h in heads], limit),
        max(h.hts_max for h in heads),
    )


def with_own(
    h: HeaderRecord, op: Op, remembered: counter.Mark | None, limit: int = counter.LOG_LIMIT
) -> tuple[HeaderRecord, counter.Mark]:
    """``h`` after its writer's own operation (see ``counter.count_own``). Time, for retiring
    idle authors, is the newest timestamp the header has seen."""
    hts_max = max(h.hts_max, op.hts)
    tally, mark = counter.count_own(h.tally, op, remembered, hts_max, limit)
    return HeaderRecord(h.firsts, h.lasts, tally, hts_max), mark


def with_proxied(
    h: HeaderRecord, ops: Iterable[Op], limit: int = counter.LOG_LIMIT
) -> HeaderRecord:
    """``h`` after counting, by name, operations found in the entries."""
    ops = list(ops)
    hts_max = max([h.hts_max, *(op.hts for op in ops)])
    tally = counter.count_proxied(h.tally, ops, hts_max, limit)
    return HeaderRecord(h.firsts, h.lasts, tally, hts_max)
