"""``Feeds.repair``: rebuild a feed's links and count from its entry records.

The entry records are the ground truth (the package docstring says why): the live entries, in
key order, *are* the feed. Repair reads them all, rewrites every live entry whose links are not
exactly its neighbours in that order (or that has siblings), and writes a header whose end
witnesses are the first and last live entry and whose count equals the number of live entries.

The count is corrected by naming operations, so repair is safe beside running writers and on
a replica that has not seen every write yet: an add or removal whose effect is in the entries
but which the header has not counted (its writer stopped before writing the header) is counted
as that very operation — the one its writer would write, so nothing is counted twice. With
``recount``, whatever difference remains becomes a correction.

Records of entries removed before ``reap_before`` (a hybrid time) are deleted, after the live
entries no longer point to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from feeds.records import HeaderRecord, candidates, with_proxied
from feeds.storeio import FeedIO, Node, count_ops


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What a repair found and did."""

    entries: int  # live entries in the feed
    relinked: int  # entry records rewritten with corrected links
    reaped: int  # records of removed entries deleted
    count_before: int  # the header's count as read
    count_after: int  # the count written
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


def repair_feed(
    io: FeedIO,
    reap_before: int | None,
    fix: Callable[[HeaderRecord, int], HeaderRecord] | None = None,
) -> RepairReport:
    """See ``Feeds.repair``. ``fix(header, delta)`` counts a correction (with ``recount``)."""
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
    counted = with_proxied(rec, count_ops(rec, nodes), io.log_limit)
    if fix is not None and counted.count != len(live):
        counted = fix(counted, len(live) - counted.count)
    first, last = (live[0].id, live[-1].id) if live else (None, None)
    firsts = sorted({*_between(unknown, None, first), *([first] if first else [])})
    lasts = sorted({*_between(unknown, last, None), *([last] if last else [])})
    new = replace(counted, firsts=tuple(firsts), lasts=tuple(lasts))
    write = header.siblings > 1 or new != rec
    if write:
        io.write_header(header, new)
    return RepairReport(len(live), relinked, reaped, rec.count, new.count, write)
