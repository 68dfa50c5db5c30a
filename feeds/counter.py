"""The feed's count: a per-author counter that counts every operation once.

Every change of the count is an *operation* with an identity:

* ``a<id>`` (+1): entry ``id`` was added; its author is the writer in the id and its time the
  id's hybrid timestamp, so anyone who finds the entry can name the operation exactly;
* ``r<id>`` (-1): entry ``id`` was removed; author and time are the remover's, recorded in the
  entry's removal flag (a *version* of the operation: two authors may both remove one entry);
* ``f<hts><author>`` (any delta): a correction written by ``Feeds.repair(recount=True)``.

An *author* is one thread of one ``Feeds``; it works sequentially and remembers, per feed, the
newest of its own operations and the sum of their deltas — its **mark**. A header (a ``Tally``)
holds, like a PN-counter (Shapiro et al., "Conflict-free Replicated Data Types", 2011):

* ``marks``: per author, the newest mark it wrote. Siblings merge by taking the newer mark per
  author, which holds everything the older one did: exact, however far the siblings diverged;
* ``proxied``: operations counted *by name* for their author by someone else — a walk or a
  repair that found an add or a removal whose writer stopped before writing the header. Kept
  until the author's own mark covers them (the author counts them itself when it comes back);
* ``log``: the newest ``LOG_LIMIT`` removals by their authors, and ``dups``: versions counted
  twice. Two authors removing one entry at once both count it; when a merge or a write sees
  both versions, the later one becomes a dup, subtracted once;
* ``horizon`` and ``base``: authors idle for ``PRUNE_US`` (and old proxied operations and dups)
  are folded into ``base``.

    count = base + sum(mark totals) + sum(proxied deltas) - sum(dup deltas)

Exact, with two assumptions the package docstring repeats: no operation stays in flight (read
the header, write it back) for longer than ``PRUNE_US``, and two authors removing the *same*
entry at once have their header writes meet before ``LOG_LIMIT`` newer removals pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

LOG_LIMIT = 64
MIDDLE = 1 << 63  # as in feeds.ids: an id's first 8 bytes are MIDDLE -/+ its hts
PRUNE_US = 15 * 60 * 1_000_000

Mark = tuple[int, int]  # (hts of the author's newest own operation, sum of its deltas)


@dataclass(frozen=True, slots=True, order=True)
class Op:
    key: bytes
    author: bytes
    hts: int
    delta: int

    @property
    def version(self) -> tuple[bytes, bytes]:
        return (self.key, self.author)


@dataclass(frozen=True, slots=True)
class Tally:
    base: int = 0
    marks: tuple[tuple[bytes, int, int], ...] = ()  # (author, hts, total), by author
    log: tuple[Op, ...] = ()  # recent removals counted by their authors
    proxied: tuple[Op, ...] = ()
    dups: tuple[Op, ...] = ()
    horizon: int = 0

    @property
    def count(self) -> int:
        return (
            self.base
            + sum(total for _, _, total in self.marks)
            + sum(op.delta for op in self.proxied)
            - sum(op.delta for op in self.dups)
        )

    def mark(self, author: bytes) -> Mark | None:
        for a, hts, total in self.marks:
            if a == author:
                return (hts, total)
        return None

    def judge(self) -> Judge:
        return Judge(self)


class Judge:
    """Answers "has this tally counted that operation (some version of it)?"."""

    __slots__ = ("horizon", "keys", "marks")

    def __init__(self, tally: Tally) -> None:
        self.marks = {a: hts for a, hts, _ in tally.marks}
        self.keys = {op.key for op in (*tally.log, *tally.proxied)}
        self.horizon = tally.horizon

    def knows(self, op: Op) -> bool:
        return (
            op.hts < self.horizon or op.hts <= self.marks.get(op.author, -1) or op.key in self.keys
        )

    def knows_add(self, entry_id: bytes) -> bool:
        """``knows(add_op(entry_id, ...))`` without building the operation (walks ask it of
        every entry)."""
        hts = abs(int.from_bytes(entry_id[:8], "big") - MIDDLE)
        return (
            hts < self.horizon
            or hts <= self.marks.get(entry_id[8:12], -1)
            or b"a" + entry_id in self.keys
        )


def add_op(entry_id: bytes, hts: int) -> Op:
    return Op(b"a" + entry_id, entry_id[8:12], hts, 1)


def remove_op(entry_id: bytes, remover: bytes, hts: int) -> Op:
    return Op(b"r" + entry_id, remover, hts, -1)


def fix_op(author: bytes, hts: int, delta: int) -> Op:
    return Op(b"f" + hts.to_bytes(8, "big") + author, author, hts, delta)


class _State:
    """A tally taken apart for changing."""

    def __init__(self, t: Tally) -> None:
        self.base = t.base
        self.marks: dict[bytes, Mark] = {a: (h, total) for a, h, total in t.marks}
        self.log = {op.version: op for op in t.log}
        self.proxied = {op.version: op for op in t.proxied}
        self.dups = {op.version: op for op in t.dups}
        self.horizon = t.horizon

    def covered(self, op: Op) -> bool:
        return op.hts <= self.marks.get(op.author, (-1, 0))[0]

    def find_dups(self) -> None:
        """Every version of an operation but the earliest, when several are counted."""
        first: dict[bytes, Op] = {}
        clashes: list[Op] = []
        for op in (*self.log.values(), *self.proxied.values()):
            other = first.setdefault(op.key, op)
            if other.author != op.author:
                clashes.append(op)
        for op in clashes:  # rare: two authors removed one entry
            versions = [o for o in (*self.log.values(), *self.proxied.values()) if o.key == op.key]
            earliest = min(versions, key=lambda o: (o.hts, o.author))
            for o in versions:
                if o.author != earliest.author:
                    self.dups.setdefault(o.version, o)

    def retire(self, horizon: int) -> None:
        """Fold what is older than ``horizon`` into the base."""
        self.horizon = max(self.horizon, horizon)
        h = self.horizon
        for author, (hts, total) in list(self.marks.items()):
            if hts < h:
                self.base += total
                del self.marks[author]
        for version, op in list(self.proxied.items()):
            if op.hts < h or self.covered(op):
                if op.hts < h and not self.covered(op):
                    self.base += op.delta
                del self.proxied[version]
        for version, op in list(self.dups.items()):
            if op.hts < h:
                self.base -= op.delta
                del self.dups[version]
        for version, op in list(self.log.items()):
            if op.hts < h:
                del self.log[version]

    def freeze(self, limit: int) -> Tally:
        log = sorted(self.log.values(), key=lambda op: (op.hts, op.key, op.author))[-limit:]
        return Tally(
            self.base,
            tuple(sorted((a, h, t) for a, (h, t) in self.marks.items())),
            tuple(log),
            tuple(sorted(self.proxied.values())),
            tuple(sorted(self.dups.values())),
            self.horizon,
        )


def count_own(
    tally: Tally, op: Op, remembered: Mark | None, now: int, limit: int = LOG_LIMIT
) -> tuple[Tally, Mark]:
    """``tally`` after its author's own operation ``op``; ``remembered`` is the author's mark
    as it knows it (newer than the header's if the header missed one of its writes). Returns
    the new tally and the author's new mark."""
    s = _State(tally)
    if remembered is not None and remembered[0] < s.horizon:
        remembered = None  # the header retired this author into its base since
    mark = max(s.marks.get(op.author, (-1, 0)), remembered or (-1, 0))
    if op.hts > mark[0]:
        mark = (op.hts, mark[1] + op.delta)
    s.marks[op.author] = mark
    if op.key[:1] == b"r":
        s.log[op.version] = op
    s.find_dups()
    s.retire(now - PRUNE_US)
    return s.freeze(limit), mark


def count_proxied(tally: Tally, ops: Iterable[Op], now: int, limit: int = LOG_LIMIT) -> Tally:
    """``tally`` after counting, by name, operations found in the entries (those it has
    counted in any version already are skipped)."""
    judge = tally.judge()
    s = _State(tally)
    for op in ops:
        if not judge.knows(op):
            judge.keys.add(op.key)
            s.proxied[op.version] = op
    s.retire(now - PRUNE_US)
    return s.freeze(limit)


def merge(tallies: list[Tally], limit: int = LOG_LIMIT) -> Tally:
    """The tally of everything the siblings counted (deterministic, order-independent)."""
    if len(tallies) == 1:
        return tallies[0]
    # The base belongs to the newest horizon: it folded in everything older.
    # What another sibling still holds from before that horizon is in the base already.
    first = max(tallies, key=lambda t: (t.horizon, t.base))
    h = first.horizon
    s = _State(first)
    for t in tallies:
        for author, hts, total in t.marks:
            if hts >= h:
                s.marks[author] = max(s.marks.get(author, (-1, 0)), (hts, total))
        for part, ops in ((s.log, t.log), (s.proxied, t.proxied), (s.dups, t.dups)):
            for op in ops:
                if op.hts >= h:
                    part.setdefault(op.version, op)
    s.find_dups()
    s.retire(h)
    return s.freeze(limit)
