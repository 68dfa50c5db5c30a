"""Sorted sets: the two record kinds, their encoding, and the deterministic merge of siblings.

Pure functions only: no store, no clock. ``merge_member`` and ``merge_node`` are the whole
sibling-merge rule of the sorted set; the result does not depend on the order siblings are
listed in.

**Member record** ``[2, set_hts, set_writer, set_score, incs, until_hts, until_writer, base,
entries]``:

* ``set`` — the last ``add``/``remove``: a register whose version is (hybrid timestamp, writer
  id); the highest version wins, everywhere. ``set_score`` is ``None`` after a remove (and before
  any add).
* ``incs`` — per writer ``[writer, base_hts, base_writer, hts, total, score, seen]``: the sum
  of the writer's ``incr`` deltas made on top of the ``set`` version ``base``. Siblings merge per
  writer by the newest ``hts`` (a writer is sequential, so its newest mark holds all its earlier
  ones: a PN-counter); marks whose base is not the winning ``set`` version are dropped — an add
  or remove supersedes the increments made on an older version, including concurrent ones.
  ``score`` is what the writer computed (the score it read + its delta: one double addition,
  as Redis) and ``seen`` a digest of the other writers' marks it read. When the newest mark saw
  exactly the other marks there are, nothing concurrent happened and its ``score`` is the score
  (so a single writer rounds as Redis does: ``1e16 + 1 == 1e16``). Otherwise concurrent
  increments met and the score is ``fsum(set_score or 0, totals)`` — every increment counts (0
  if concurrent increments of +inf and -inf met). The member exists when ``set_score`` is not
  None or some increment is on top of the current version.
* the **ledger** — what this member contributes to the count tree: ``entries`` (one per
  operation that changed the tree: ``[hts, writer, score8, n, score8, n, ...]``, the signed
  changes it applied) and ``base`` (entries folded in, everything up to version ``until``).
  Siblings merge by the union of entries (by their id ``(hts, writer)``) on top of the base with
  the newest ``until``. So the tree's contribution of a member, ``base + sum(entries)``, is
  exact whatever the siblings — two writers that moved the member from the same state both
  show their move. A writer that finds the contribution differs from ``{target: 1}`` applies the
  difference (and records it as its entry). Entries both beyond the newest ``LEDGER_LIMIT`` and
  older than ``FOLD_GRACE_US`` (2 s) before the newest, and entries older than ``PRUNE_US``
  (15 min) before it, are folded into the base: exact as long as concurrent writes of one
  member meet before that (as feeds' log assumes). Folding by count alone is not safe: a
  writer held up between its read and its commit while 16 others commit would lose its entry.

**Count-tree node** ``[2, base_hts, base_writer, base, marks]``; a mark per writer ``[writer,
epoch_hts, epoch_writer, hts, cum, helped, intent, cleared]``:

* ``cum`` — the writer's cumulative changes to each child's count, up to its operation ``hts``
  (a writer reads its own writes, so it always folds everything of its own into ``cum``);
  siblings merge per writer by the newest ``hts``.
* ``helped`` — ``[[hts, child, n, ...], ...]``: changes of the writer's operations that
  *another* writer applied for it (a reader finishing an operation whose writer crashed or is
  slow, see ``search.sortedset``); merged by union, and dropped once the writer's own ``hts``
  reaches them (then they are in ``cum``). A helper may have read a stale copy of the writer's
  ``cum``: that is why its change goes beside it, never into it.
* ``intent`` (root only) — ``[hts, member, score8, n, ...]``: the tree change of the writer's
  operation in flight; ``cleared`` the newest intent ``hts`` known finished (the maximum of the
  siblings). An intent is pending while ``intent.hts > cleared``.
* ``epoch`` — the node's ``base`` version the mark counts from. ``base`` is set only by
  ``repair``, which folds every mark into it (the newest base version wins); marks from an
  older epoch are in the base and are dropped by the merge.

The node's counts are ``base + sum(cum + helped)`` over the marks of the current epoch.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgpack

from ring.errors import CorruptData

FORMAT = 2
LEDGER_LIMIT = 16
FOLD_GRACE_US = 2 * 1_000_000
PRUNE_US = 15 * 60 * 1_000_000

Version = tuple[int, bytes]  # (hybrid timestamp, writer id)
NO_VERSION: Version = (0, b"")
Delta = tuple[tuple[bytes, int], ...]  # sorted (score8 or child byte) -> signed count


@dataclass(frozen=True, slots=True)
class Inc:
    writer: bytes
    base: Version
    hts: int
    total: float
    score: float = 0.0  # the score this writer computed (what it read + its delta)
    seen: bytes = b""  # digest of the other writers' marks it read (see ``seen_digest``)


def seen_digest(incs: Iterable[Inc], writer: bytes) -> bytes:
    """A digest of the increment marks of writers other than ``writer``."""
    h = hashlib.blake2b(digest_size=8)
    for i in sorted(incs, key=lambda i: i.writer):
        if i.writer != writer:
            h.update(i.writer + b"\0" + i.hts.to_bytes(8, "big") + struct.pack(">d", i.total))
    return h.digest()


@dataclass(frozen=True, slots=True)
class Entry:
    hts: int
    writer: bytes
    delta: Delta

    @property
    def id(self) -> Version:
        return (self.hts, self.writer)


@dataclass(frozen=True, slots=True)
class MemberRec:
    set_v: Version = NO_VERSION
    set_score: float | None = None
    incs: tuple[Inc, ...] = ()  # by writer; all on set_v
    until: Version = NO_VERSION
    base: Delta = ()
    entries: tuple[Entry, ...] = ()  # by id

    def score(self) -> float | None:
        if self.set_score is None and not self.incs:
            return None
        if self.incs:
            last = max(self.incs, key=lambda i: (i.hts, i.writer))
            if last.seen == seen_digest(self.incs, last.writer):
                return last.score  # nothing concurrent: the writer's own double addition
        parts = [self.set_score or 0.0, *(i.total for i in self.incs)]
        try:
            return math.fsum(parts)
        except OverflowError:  # an intermediate sum overflows: the plain sum, in a fixed order
            return sum(parts)
        except ValueError:  # inf - inf: only concurrent infinite increments reach it
            return 0.0

    def inc_of(self, writer: bytes) -> Inc | None:
        for i in self.incs:
            if i.writer == writer:
                return i
        return None

    def contribution(self) -> dict[bytes, int]:
        """What the count tree holds for this member: score8 -> count (zeros dropped)."""
        out = dict(self.base)
        for e in self.entries:
            for k, n in e.delta:
                out[k] = out.get(k, 0) + n
        return {k: n for k, n in out.items() if n}

    def newest_hts(self) -> int:
        hts = max(self.set_v[0], self.until[0])
        for i in self.incs:
            hts = max(hts, i.hts)
        if self.entries:
            hts = max(hts, self.entries[-1].hts)
        return hts


EMPTY_MEMBER = MemberRec()


@dataclass(frozen=True, slots=True)
class Intent:
    hts: int
    member: bytes
    change: Delta  # score8 -> signed count


@dataclass(frozen=True, slots=True)
class Mark:
    writer: bytes
    epoch: Version = NO_VERSION
    hts: int = 0
    cum: Delta = ()
    helped: tuple[tuple[int, Delta], ...] = ()  # by hts
    intent: Intent | None = None
    cleared: int = 0

    def applied(self, hts: int) -> bool:
        """Whether the writer's operation ``hts`` is counted in this mark."""
        return self.hts >= hts or any(h == hts for h, _ in self.helped)

    def pending(self) -> Intent | None:
        i = self.intent
        return i if i is not None and i.hts > self.cleared else None


@dataclass(frozen=True, slots=True)
class NodeRec:
    base_v: Version = NO_VERSION
    base: Delta = ()
    marks: tuple[Mark, ...] = ()  # by writer; all of epoch base_v

    def counts(self) -> dict[bytes, int]:
        out: dict[bytes, int] = dict(self.base)
        for m in self.marks:
            for k, n in m.cum:
                out[k] = out.get(k, 0) + n
            for _, delta in m.helped:
                for k, n in delta:
                    out[k] = out.get(k, 0) + n
        return out

    def mark_of(self, writer: bytes) -> Mark:
        for m in self.marks:
            if m.writer == writer:
                return m
        return Mark(writer, self.base_v)

    def with_mark(self, mark: Mark) -> NodeRec:
        marks = [m for m in self.marks if m.writer != mark.writer]
        marks.append(mark)
        marks.sort(key=lambda m: m.writer)
        return NodeRec(self.base_v, self.base, tuple(marks))

    def pending(self) -> list[tuple[bytes, Intent]]:
        return [(m.writer, i) for m in self.marks if (i := m.pending()) is not None]


EMPTY_NODE = NodeRec()


def delta_of(counts: dict[bytes, int]) -> Delta:
    return tuple(sorted((k, n) for k, n in counts.items() if n))


# --- encoding ----------------------------------------------------------------------------------

_pack = msgpack.Packer(use_bin_type=True).pack


def _flat(delta: Delta) -> list[object]:
    out: list[object] = []
    for k, n in delta:
        out += (k, n)
    return out


def _delta(flat: Sequence[object]) -> Delta:
    if len(flat) % 2:
        raise ValueError("odd delta")
    out = []
    for i in range(0, len(flat), 2):
        k, n = flat[i], flat[i + 1]
        if type(k) is not bytes or type(n) is not int:
            raise ValueError("malformed delta")
        out.append((k, n))
    return tuple(out)


def encode_member(r: MemberRec) -> bytes:
    incs = [[i.writer, i.base[0], i.base[1], i.hts, i.total, i.score, i.seen] for i in r.incs]
    entries = [[e.hts, e.writer, *_flat(e.delta)] for e in r.entries]
    raw: bytes = _pack(
        [FORMAT, r.set_v[0], r.set_v[1], r.set_score, incs, *r.until, _flat(r.base), entries]
    )
    return raw


def _unpack(raw: bytes, what: str, size: int) -> list[object]:
    try:
        obj = msgpack.unpackb(raw)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CorruptData(f"sorted set {what} record cannot be decoded: {exc}") from None
    if type(obj) is not list or len(obj) != size or obj[0] != FORMAT:
        raise CorruptData(f"sorted set {what} record has an unknown format")
    return obj


def decode_member(raw: bytes) -> MemberRec:
    _, set_hts, set_writer, set_score, incs, u_hts, u_writer, base, entries = _unpack(
        raw, "member", 9
    )
    try:
        if type(set_hts) is not int or type(set_writer) is not bytes:
            raise ValueError("version")
        if set_score is not None and type(set_score) is not float:
            raise ValueError("score")
        if type(u_hts) is not int or type(u_writer) is not bytes:
            raise ValueError("until")
        out_incs = []
        if type(incs) is not list or type(entries) is not list:
            raise ValueError("incs")
        for w, bh, bw, hts, total, score, seen in incs:
            if not (type(w) is bytes and type(bh) is int and type(bw) is bytes):
                raise ValueError("inc")
            if type(hts) is not int or type(total) is not float:
                raise ValueError("inc")
            if type(score) is not float or type(seen) is not bytes:
                raise ValueError("inc")
            out_incs.append(Inc(w, (bh, bw), hts, total, score, seen))
        out_entries = []
        for e in entries:
            if type(e) is not list:  # a map would be indexed by key (KeyError)
                raise ValueError("entry")
            hts, w = e[0], e[1]
            if type(hts) is not int or type(w) is not bytes:
                raise ValueError("entry")
            out_entries.append(Entry(hts, w, _delta(e[2:])))
        return MemberRec(
            (set_hts, set_writer),
            set_score,
            tuple(out_incs),
            (u_hts, u_writer),
            _delta(base),  # type: ignore[arg-type]
            tuple(out_entries),
        )
    except (TypeError, ValueError, IndexError):
        raise CorruptData("sorted set member record is malformed") from None


def encode_node(r: NodeRec) -> bytes:
    marks = []
    for m in r.marks:
        helped = [[h, *_flat(d)] for h, d in m.helped]
        i = m.intent
        intent = None if i is None else [i.hts, i.member, *_flat(i.change)]
        marks.append([m.writer, *m.epoch, m.hts, _flat(m.cum), helped, intent, m.cleared])
    raw: bytes = _pack([FORMAT, r.base_v[0], r.base_v[1], _flat(r.base), marks])
    return raw


def _int_bytes(a: object, b: object) -> tuple[int, bytes]:
    if type(a) is not int or type(b) is not bytes:
        raise ValueError("version")
    return a, b


def decode_node(raw: bytes) -> NodeRec:
    _, b_hts, b_writer, base, marks = _unpack(raw, "count", 5)
    try:
        base_v = _int_bytes(b_hts, b_writer)
        out = []
        if type(marks) is not list:
            raise ValueError("marks")
        for w, e_hts, e_writer, hts, cum, helped, intent, cleared in marks:
            if type(w) is not bytes or type(hts) is not int or type(cleared) is not int:
                raise ValueError("mark")
            if type(helped) is not list or (intent is not None and type(intent) is not list):
                raise ValueError("mark")
            hs = []
            for h in helped:
                if type(h) is not list or type(h[0]) is not int:
                    raise ValueError("helped")
                hs.append((h[0], _delta(h[1:])))
            it = None
            if intent is not None:
                if type(intent[0]) is not int or type(intent[1]) is not bytes:
                    raise ValueError("intent")
                it = Intent(intent[0], intent[1], _delta(intent[2:]))
            epoch = _int_bytes(e_hts, e_writer)
            out.append(Mark(w, epoch, hts, _delta(cum), tuple(hs), it, cleared))
        return NodeRec(base_v, _delta(base), tuple(out))  # type: ignore[arg-type]
    except (TypeError, ValueError, IndexError):
        raise CorruptData("sorted set count record is malformed") from None


# --- merging siblings ----------------------------------------------------------------------------


def fold(r: MemberRec, limit: int = LEDGER_LIMIT, grace: int = FOLD_GRACE_US) -> MemberRec:
    """Fold into the base the ledger entries that are both beyond the newest ``limit`` and
    older than ``grace`` before the newest, and those older than ``PRUNE_US`` before it."""
    entries = r.entries
    if not entries:
        return r
    newest = entries[-1].hts
    cut = 0
    while cut < len(entries) - limit and entries[cut].hts < newest - grace:
        cut += 1
    while cut < len(entries) and entries[cut].hts < newest - PRUNE_US:
        cut += 1
    if not cut:
        return r
    base = dict(r.base)
    for e in entries[:cut]:
        for k, n in e.delta:
            base[k] = base.get(k, 0) + n
    until = max(r.until, entries[cut - 1].id)
    return MemberRec(r.set_v, r.set_score, r.incs, until, delta_of(base), entries[cut:])


def merge_member_recs(
    recs: Sequence[MemberRec], limit: int = LEDGER_LIMIT, grace: int = FOLD_GRACE_US
) -> MemberRec:
    if not recs:
        return EMPTY_MEMBER
    if len(recs) == 1:
        return recs[0]
    top = max(recs, key=lambda r: (r.set_v, r.set_score is not None, r.set_score or 0.0))
    incs: dict[bytes, Inc] = {}
    for r in recs:
        for i in r.incs:
            if i.base == top.set_v:
                old = incs.get(i.writer)
                if old is None or (i.hts, i.total) > (old.hts, old.total):
                    incs[i.writer] = i
    ledger = max(recs, key=lambda r: (r.until, r.base))
    entries: dict[Version, Entry] = {}
    for r in recs:
        for e in r.entries:
            if e.id > ledger.until:
                entries.setdefault(e.id, e)
    merged = MemberRec(
        top.set_v,
        top.set_score,
        tuple(incs[w] for w in sorted(incs)),
        ledger.until,
        ledger.base,
        tuple(entries[i] for i in sorted(entries)),
    )
    return fold(merged, limit, grace)


def merge_member(
    values: Iterable[bytes], limit: int = LEDGER_LIMIT, grace: int = FOLD_GRACE_US
) -> MemberRec:
    return merge_member_recs([decode_member(v) for v in values], limit, grace)


def merge_marks(a: Mark, b: Mark) -> Mark:
    """Two siblings' marks of one writer (same epoch)."""
    top = max(a, b, key=lambda m: (m.hts, m.cum))
    helped = {h: d for m in (a, b) for h, d in m.helped if h > top.hts}
    intents = [m.intent for m in (a, b) if m.intent is not None]
    intent = max(intents, key=lambda i: (i.hts, i.member, i.change)) if intents else None
    return Mark(
        top.writer,
        top.epoch,
        top.hts,
        top.cum,
        tuple(sorted(helped.items())),
        intent,
        max(a.cleared, b.cleared),
    )


def merge_node_recs(recs: Sequence[NodeRec]) -> NodeRec:
    if not recs:
        return EMPTY_NODE
    if len(recs) == 1:
        return recs[0]
    top = max(recs, key=lambda r: (r.base_v, r.base))
    marks: dict[bytes, Mark] = {}
    for r in recs:
        for m in r.marks:
            if m.epoch != top.base_v:
                continue  # folded into a newer base by repair
            old = marks.get(m.writer)
            marks[m.writer] = m if old is None else merge_marks(old, m)
    return NodeRec(top.base_v, top.base, tuple(marks[w] for w in sorted(marks)))


def merge_node(values: Iterable[bytes]) -> NodeRec:
    return merge_node_recs([decode_node(v) for v in values])
