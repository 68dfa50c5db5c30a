"""``Feeds.repair``: rebuild a feed's links and count from its entry records.

The entry records are the ground truth (the package docstring says why): the live entries, in
key order, *are* the feed. Repair reads them all, rewrites every live entry whose links are not
exactly its neighbours in that order (or that has siblings), and writes a header whose end
witnesses are the first and last live entry and whose count equals the number of live entries.

The count is corrected with named operations, so repair is safe beside running writers and on
a replica that has not seen every write yet: an entry or removal inside the header's log window
that the header has not counted gets its own ``a<id>``/``r<id>`` operation — the same one its
writer will write, so nothing is counted twice — and only drift older than the window becomes
a correction operation ``f<hts><writer>`` (see ``_residual``). Ids of entries the repair cannot
read are kept as link candidates in the gap they fall in, as everywhere in the feed layer.

Records of entries removed before ``reap_before`` (a hybrid time) are deleted, after the live
entries no longer point to them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from feeds.ids import HybridClock, hts_of
from feeds.records import HeaderRecord, Op, candidates, with_ops
from feeds.storeio import FeedIO, Node, count_ops


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What a repair found and did."""

    entries: int  # live entries in the feed
    relinked: int  # entry records rewritten with corrected links
    reaped: int  # records of removed entries deleted
    count_before: int  # the header's count as read
    count_after: int  # the count written (== entries on a replica that has seen every write)
    header_written: bool


def _complete(io: FeedIO, header: HeaderRecord, nodes: list[Node]) -> set[bytes]:
    """Read the entries named by links or end witnesses that the scan did not list: those that
    exist join ``nodes`` (in key order); the ids this store cannot read at all (a tombstone
    counts as read) are returned — evidence of entries not replicated here yet."""
    have = {n.id for n in nodes}
    named = {c for n in nodes for c in (*n.rec.prevs, *n.rec.nexts) if c is not None}
    named.update(header.firsts, header.lasts)
    unknown = set()
    for c in sorted(named - have):
        node = io.read_entry(c)
        if node is None:
            unknown.add(c)
        elif not node.deleted:
            nodes.append(node)
    nodes.sort(key=lambda n: n.id)
    return unknown


def _between(unknown: set[bytes], lo: bytes | None, hi: bytes | None) -> list[bytes]:
    return [e for e in unknown if (lo is None or e > lo) and (hi is None or e < hi)]


def _relink(io: FeedIO, live: list[Node], unknown: set[bytes]) -> int:
    n = 0
    for i, node in enumerate(live):
        prev = live[i - 1].id if i else None
        after = live[i + 1].id if i + 1 < len(live) else None
        prevs = candidates([prev, *_between(unknown, prev, node.id)])
        nexts = candidates([after, *_between(unknown, node.id, after)])
        if node.siblings > 1 or node.rec.prevs != prevs or node.rec.nexts != nexts:
            io.write_entry(node, replace(node.rec, prevs=prevs, nexts=nexts))
            n += 1
    return n


def _residual(h: HeaderRecord, nodes: list[Node]) -> int:
    """How far the count is off in the part the log no longer shows.

    The count is ``base + sum(log)``, where ``base`` sums every operation at or below the log's
    floor (a repair's corrections count to the base too). From the records, the base should
    hold the old live entries, plus the old entries whose removal is still in the log. Entries
    newer than the floor are judged by name instead (``count_ops``), which is safe on a replica
    that has not seen them all; old entries are on every replica by the log-window assumption.
    """
    floor = h.floor
    base = h.count - sum(op.delta for op in h.log if op.key[:1] in (b"a", b"r"))
    expected = sum(1 for n in nodes if n.rec.live and hts_of(n.id) <= floor)
    expected += sum(1 for op in h.log if op.key[:1] == b"r" and hts_of(op.key[1:]) <= floor)
    return expected - base


def repair_feed(
    io: FeedIO, clock: HybridClock, writer: bytes, reap_before: int | None
) -> RepairReport:
    header = io.read_header()
    nodes = [n for n in map(io.read_entry, list(io.scan_ids(None, True))) if n is not None]
    unknown = _complete(io, header.rec, nodes)
    live = [n for n in nodes if n.rec.live]
    relinked = _relink(io, live, unknown)
    reaped = 0
    if reap_before is not None:
        for node in nodes:
            if node.rec.removed and node.rec.removed < reap_before:
                io.delete_entry(node)
                reaped += 1
    rec = header.rec
    ops = count_ops(rec, nodes)
    counted = with_ops(rec, ops, io.log_limit)
    residual = _residual(counted, nodes)
    if residual:
        hts = clock.tick(rec.hts_max)
        ops.append(Op(b"f" + hts.to_bytes(8, "big") + writer, hts, residual))
        counted = with_ops(rec, ops, io.log_limit)
    first, last = (live[0].id, live[-1].id) if live else (None, None)
    firsts = sorted({*_between(unknown, None, first), *([first] if first else [])})
    lasts = sorted({*_between(unknown, last, None), *([last] if last else [])})
    new = replace(counted, firsts=tuple(firsts), lasts=tuple(lasts))
    write = header.siblings > 1 or new != rec
    if write:
        io.write_header(header, new)
    return RepairReport(len(live), relinked, reaped, rec.count, new.count, write)
