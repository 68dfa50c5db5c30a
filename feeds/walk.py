"""The verifying walk: follow links, trust only what nothing contradicts, else ask the keys.

Every id a walk sees — an end witness of the header, a link candidate of any record it reads —
is *evidence* that an entry exists at that position (ids are positions). A walk follows links,
but it only trusts a step from ``u`` to ``v`` when:

* ``u``'s link ahead is the single candidate ``v`` — or a chain of removed entries whose links
  are each single and agree back, ending at ``v``;
* ``v``'s link back is the single candidate ``u`` (or the last removed entry of that chain);
* ``v`` lies after ``u``, and no evidence the walk has seen lies strictly between them.

Any other step falls back to the ground truth as far as this store can see it: a scan of the
entry keys after ``u`` (in feed order) for the first live record. The end of the feed is
trusted only when ``u`` links to nothing and no evidence lies beyond it. Evidence the walk
passes without being able to read the record (on a cluster: an entry not yet replicated to the
replicas asked) is *unknown*, never a reason to drop a link.

With ``repair`` on, the walk writes back what it verified: once both neighbours of a node are
known it rewrites the node if its links differ or it has siblings, with the context it read, so
it supersedes only what it saw. The new links are the verified neighbour, plus every old
candidate the walk has not accounted for (read and removed, or read, live and passed), plus the
unknown evidence lying between the node and that neighbour — so evidence is never destroyed,
only moved next to where it belongs. A node whose candidates the walk has not reached yet is
rewritten when the walk ends (not at all if the walk is abandoned).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import replace

from feeds.records import Candidate, candidates, with_proxied
from feeds.storeio import FeedIO, HeaderView, Node, count_ops

_INVERT = bytes(range(255, -1, -1))


class Walk:
    """One walk in one direction; see the module docstring for what it trusts."""

    def __init__(self, io: FeedIO, header: HeaderView, forward: bool, repair: bool) -> None:
        self.io = io
        self.header = header
        self.forward = forward
        self.repair = repair
        self.placed: set[bytes] = set()  # live entries the walk put in their place
        self.gone_seen: set[bytes] = set()  # removed entries (or tombstones) this walk read
        self.unknown: set[bytes] = set()  # evidence passed that this store could not read
        self._pos: bytes | None = None  # the walk has passed everything up to here
        self._pending: list[tuple[bytes, bytes]] = []  # heap of evidence ahead of the walk
        self.complete = False  # the walk verified the far end
        self.from_end = False  # the walk started at its end (not at an entry)
        self.begin: bytes | None = None
        self.end: bytes | None = None
        self.fixes = 0
        self._deferred: list[tuple[Node, Candidate, Candidate]] = []
        self.uncounted: list[Node] = []  # nodes with operations the header has not counted
        self._judge = header.rec.tally.judge()
        self._evidence((*header.rec.firsts, *header.rec.lasts))

    # --- position and evidence ----------------------------------------------------------------

    def _after(self, a: bytes, b: bytes | None) -> bool:
        """``a`` comes after ``b`` in walk order (``None`` is the start)."""
        return b is None or (a > b if self.forward else a < b)

    def _ahead(self, node: Node) -> tuple[Candidate, ...]:
        return node.rec.nexts if self.forward else node.rec.prevs

    def _back(self, node: Node) -> tuple[Candidate, ...]:
        return node.rec.prevs if self.forward else node.rec.nexts

    def _evidence(self, ids: Iterable[Candidate]) -> None:
        pos, forward = self._pos, self.forward
        for c in ids:
            if c is not None and (pos is None or (c > pos if forward else c < pos)):
                heapq.heappush(self._pending, (c if forward else c.translate(_INVERT), c))

    def _pass(self, here: bytes | None) -> None:
        """Move the walk to ``here`` (``None``: past everything); classify evidence passed."""
        if here is not None and self._after(here, self._pos):
            self._pos = here
        pending, forward = self._pending, self.forward
        while pending:
            c = pending[0][1]
            if here is not None and (c > here if forward else c < here):
                break
            heapq.heappop(pending)
            if c not in self.placed and c not in self.gone_seen:
                self.unknown.add(c)

    def _skip_to(self, start: bytes) -> None:
        """Begin the walk at ``start``: what lies behind it is not this walk's business."""
        self._pos = start
        self._pending = [p for p in self._pending if self._after(p[1], start)]
        heapq.heapify(self._pending)

    def _evidence_before(self, there: bytes) -> bool:
        """Evidence not yet passed lies strictly before ``there``."""
        return bool(self._pending) and self._after(there, self._pending[0][1])

    def droppable(self, entry_id: bytes) -> bool:
        """Whether a link to ``entry_id`` may be replaced: the walk read it and it is removed,
        or the walk placed it (emitted it in order, so it is linked where it belongs). An entry
        read but not placed — say, one that reached this replica after the walk's scan went by
        — is evidence like any other."""
        return entry_id in self.gone_seen or entry_id in self.placed

    def _place(self, node: Node) -> None:
        self.placed.add(node.id)
        self._pass(node.id)

    def gap(self, lo: bytes | None, hi: bytes | None) -> list[bytes]:
        """Unknown evidence strictly between positions ``lo`` and ``hi`` (None: the ends)."""
        return [e for e in self.unknown if (lo is None or e > lo) and (hi is None or e < hi)]

    def _read(self, entry_id: bytes) -> Node | None:
        node = self.io.read_entry(entry_id)
        if node is not None:
            if not node.rec.live:
                self.gone_seen.add(entry_id)
            self._evidence(node.rec.prevs)
            self._evidence(node.rec.nexts)
            if (node.rec.removed or not self._judge.knows_add(entry_id)) and count_ops(
                self.header.rec, (node,), self._judge
            ):
                self.uncounted.append(node)
        return node

    # --- stepping ----------------------------------------------------------------------------

    def advance(self, u: Node | None) -> Node | None:
        """The first live entry after ``u`` (after the start when ``None``)."""
        here = None if u is None else u.id
        if u is None:
            rec = self.header.rec
            ends = sorted(rec.firsts if self.forward else rec.lasts, reverse=not self.forward)
            cands: tuple[Candidate, ...] = (ends[0] if ends else None,)
        else:
            cands = self._ahead(u)
        if len(cands) == 1:
            ok, node = self._chain(here, cands[0])
            if ok:
                return node
        return self._scan(here)

    def _chain(self, here: bytes | None, cand: Candidate) -> tuple[bool, Node | None]:
        """Follow single links from ``here`` through removed entries to a live one: ``(True,
        node)`` when every hop verified (``node`` is ``None`` at a verified end)."""
        back, forward, pending = here, self.forward, self._pending
        while True:
            if cand is None:
                return (not pending, None)
            if back is not None and (cand <= back if forward else cand >= back):
                return (False, None)
            if pending and (cand > pending[0][1] if forward else cand < pending[0][1]):
                return (False, None)  # evidence of an entry lies before it
            node = self._read(cand)
            if node is None or self._back(node) != (back,):
                return (False, None)
            if node.rec.live:
                return (True, node)
            ahead = self._ahead(node)
            if len(ahead) != 1:
                return (False, None)
            self._pass(node.id)
            back, cand = node.id, ahead[0]

    def _scan(self, here: bytes | None) -> Node | None:
        """The ground truth as far as this store can see: the first live record after
        ``here`` in key order."""
        for entry_id in self.io.scan_ids(here, self.forward):
            node = self._read(entry_id)
            if node is None:
                continue
            if node.rec.live:
                return node
            self._pass(node.id)
        return None

    # --- repairing -----------------------------------------------------------------------------

    def links(
        self, node: Node, before: Candidate, after: Candidate
    ) -> tuple[tuple[Candidate, ...], tuple[Candidate, ...]]:
        """``node``'s prevs and nexts given its verified neighbours (absolute order)."""
        rec, keep = node.rec, self.droppable
        prevs = [before, *self.gap(before, node.id)]
        prevs += (c for c in rec.prevs if c is not None and not keep(c))
        nexts = [after, *self.gap(node.id, after)]
        nexts += (c for c in rec.nexts if c is not None and not keep(c))
        return candidates(prevs), candidates(nexts)

    def _fix(self, node: Node, back: Candidate, ahead: Candidate) -> None:
        rec = node.rec
        if node.siblings == 1 and len(rec.prevs) == 1 and len(rec.nexts) == 1:
            before, after = (back, ahead) if self.forward else (ahead, back)
            if rec.prevs[0] == before and rec.nexts[0] == after:
                return  # the common case: already exactly right
        waiting = (c for c in (*node.rec.prevs, *node.rec.nexts) if c is not None)
        if any(c not in (back, ahead) and not self._decided(c) for c in waiting):
            # It names entries the walk has not reached yet: decide when the walk ends.
            self._deferred.append((node, back, ahead))
            return
        self._write(node, back, ahead)

    def _decided(self, entry_id: bytes) -> bool:
        return entry_id in self.unknown or self.droppable(entry_id)

    def _write(self, node: Node, back: Candidate, ahead: Candidate) -> None:
        before, after = (back, ahead) if self.forward else (ahead, back)
        prevs, nexts = self.links(node, before, after)
        if node.siblings == 1 and (node.rec.prevs, node.rec.nexts) == (prevs, nexts):
            return
        self.io.write_entry(node, replace(node.rec, prevs=prevs, nexts=nexts))
        self.fixes += 1

    def flush(self) -> None:
        """Write the fixes that waited for the walk to read more of the feed."""
        deferred, self._deferred = self._deferred, []
        for node, back, ahead in deferred:
            self._write(node, back, ahead)

    # --- walking -----------------------------------------------------------------------------

    def walk(self, start: bytes | None = None, limit: int | None = None) -> Iterator[Node]:
        """Live entries in walk order from the start (or from entry ``start``, or from the
        first live one after its position if it is removed or unknown)."""
        self.from_end = start is None
        if start is None:
            cur = self.advance(None)
            back_known = True
            self.begin = None if cur is None else cur.id
        else:
            self._skip_to(start)
            node = self._read(start)
            cur = node if node is not None and node.rec.live else self._scan(start)
            back_known = False
        back: bytes | None = None
        emitted = 0
        if cur is not None:
            self._place(cur)
        while cur is not None:
            yield cur
            emitted += 1
            if limit is not None and emitted >= limit:
                break
            nxt = self.advance(cur)
            if nxt is None:
                self._pass(None)
            else:
                self._place(nxt)
            if back_known and self.repair:
                self._fix(cur, back, None if nxt is None else nxt.id)
            back, back_known, cur = cur.id, True, nxt
        else:
            self.complete = True
            self.end = back
            self._pass(None)
        if self.repair:
            self.flush()

    def settle(self) -> Node | None:
        """The live entry at the start of the walk, after every end witness on this side has
        been linked in — so a writer may then replace those witnesses by its new entry."""
        rec = self.header.rec
        ends = rec.firsts if self.forward else rec.lasts
        if len(ends) <= 1:
            node = self.advance(None)
            if node is None:
                self._pass(None)
            else:
                self._place(node)
            return node
        last_witness = sorted(ends, reverse=not self.forward)[-1]
        first: Node | None = None
        for node in self.walk():
            if first is None:
                first = node
            if self._after(node.id, last_witness):
                break
        self.flush()
        if first is None:
            return None
        # The walk may have rewritten that entry: read it again for a current context.
        return self.io.read_entry(first.id)

    def finish(self) -> None:
        """After a complete walk from one end: record the verified ends (and unknown evidence
        beyond them) and the count operations the walk found missing, if the header needs it."""
        if not (self.complete and self.from_end and self.repair):
            return
        view, rec = self.header, self.header.rec
        first, last = (self.begin, self.end) if self.forward else (self.end, self.begin)
        firsts = self.witnesses(first, rec.firsts, None, first)
        lasts = self.witnesses(last, rec.lasts, last, None)
        ops = count_ops(rec, self.uncounted, self._judge)
        if view.siblings <= 1 and not ops and (rec.firsts, rec.lasts) == (firsts, lasts):
            return
        new = with_proxied(replace(rec, firsts=firsts, lasts=lasts), ops, self.io.log_limit)
        self.io.write_header(view, new)

    def witnesses(
        self, verified: bytes | None, old: Iterable[bytes], lo: bytes | None, hi: bytes | None
    ) -> tuple[bytes, ...]:
        """End witnesses: the verified end, the old ones not accounted for, and the unknown
        evidence beyond the end (between ``lo`` and ``hi``)."""
        out = {w for w in old if not self.droppable(w)}
        out.update(self.gap(lo, hi))
        if verified is not None:
            out.add(verified)
        return tuple(sorted(out))
