"""Feeds: KVS-style doubly linked lists of entries on the ringkv key-value API.

    from feeds import Feeds
    f = Feeds(ring.open("data"))          # or Feeds(ring.connect("host:port,..."))
    entry_id = f.add("news", b"hello")     # newest first; f.append(...) adds at the tail
    for entry in f.entries("news", limit=20):   # .id, .data; reverse=True, start=ID
        ...
    f.page("news", cursor=None, limit=100)  # Page(entries, next)
    f.remove("news", entry_id); f.count("news"); f.repair("news")

Only ``get_versioned``, ``put`` (with contexts), ``delete`` and ``scan`` are used, so the same
code runs on an embedded store and on a cluster.

Layout (``feeds.ids``)
----------------------
A feed ``F`` is a header ``feeds:<len>:F:h`` and one record per entry ``feeds:<len>:F:e<id>``.
An entry id is 12 bytes: an 8-byte *position* and the 4-byte id of the author that made it.
``add`` takes position ``2**63 - hts`` and ``append`` ``2**63 + hts``, where ``hts`` is a hybrid
timestamp later than everything the author has observed (the header and the end it links to).
So ids never change, ids are unique, and **key order is feed order**.

Entry records hold the data, ``prevs``/``nexts`` and a removal flag; the header holds end
witnesses (``firsts``/``lasts``), the count, and the newest timestamp written (``records``).

Why entries are the truth and links a cache
-------------------------------------------
Writers on different nodes update the same header and the same neighbours at once, and the
store keeps their writes as siblings. Deciding which sibling's links are right is impossible
from the links alone; but the *set* of entry records and their positions is never ambiguous:
an entry is written once under a fresh key, and its removal flag only ever goes from clear to
set. So the feed *is* its live entry records in key order. Links and the header are a cache
that makes walking and adding O(1) — and a cache can always be checked and rebuilt:

* every read is ``get_versioned``; siblings merge deterministically (``records``): link
  candidates and end witnesses by union, the removal flag by "any removal wins", the count by
  ``counter.merge``. Merged values are written back with the context they were read with, so
  a write supersedes exactly what was seen and a concurrent write survives as a sibling;
* a walk (``walk``) trusts a step only when the forward link, the back-link and the positions
  agree and no evidence of another entry lies between; otherwise it scans the entry keys (in
  feed order) for the truth, and writes back what it verified;
* every id a reader sees in a link or witness is *evidence* of an entry. Nothing — walk, add,
  repair — drops a link it has not accounted for: an entry it could not read (not replicated
  to the replicas it asked yet) stays linked from the gap its position falls in. This is what
  makes concurrent writers through different, lagging nodes lose nothing;
* ``repair`` relinks every live entry from a full scan and counts what crashed operations left
  uncounted. Walks do the same for what they pass.

The count (``counter``)
-----------------------
``count`` is one header read. The header's count is a per-author counter (an author is a
thread of a ``Feeds``): each author's newest mark — its newest operation and the sum of its
deltas — merges by taking the newer, like a PN-counter; operations found in the entries by a
walk or a repair (an add whose writer crashed before the header write) are counted by name
until their author's mark covers them; two authors removing one entry are recognised as one
removal. It is exact under two assumptions: no operation stays in flight (header read to
header write) longer than 15 minutes, the span after which idle authors are folded into a
base (clocks are assumed within that of each other too); and two authors removing the same
entry at once have their header writes meet before 64 newer removals pass. Otherwise
``repair(recount=True)`` sets the count from the entries.

Costs and crash safety
----------------------
add/append: 2 reads + 3 writes; remove: 2 reads + 2 writes; get, count: 1 read; walking k
entries: k + 1 reads (``api``). Removal sets the flag and counts; the next walk that passes
unlinks the entry (1 read for it, 2 writes per run of removed entries).

Writes are ordered so that a crash between any two leaves a walkable feed: an add writes its
entry, then the header, then the old end's back-link (a crash after the first write leaves an
entry nothing links to yet — invisible until ``repair`` links it in; after the second, a link
the next walk verifies and fixes); a removal writes the flag, then the header (a walk counts a
removal whose header write never happened).
"""

from feeds.api import Entry, Feeds, Page
from feeds.repair import RepairReport

__all__ = ["Entry", "Feeds", "Page", "RepairReport"]
