"""Claim: an explicit, balanced partition ownership table, changed minimally as members come and go.

**What.** The ownership table holds one *preference list* per partition: the
``N' = min(n, members)`` distinct members that store the partition's replicas, index 0 being its
*primary*. ``claim(previous, members, partitions, n)`` computes the table for a new member set
from the current one (or from nothing, for a new cluster). It replaces Dynamo's strategy 2 of
the random-token ring of milestone 1 (whose loads spread by tens of percent) by Dynamo's strategy 3
(DeCandia et al. 2007, section 6.2: Q equal partitions, Q/S of them per member, assigned
explicitly), which is also what riak_core's claim does for its fixed-size ring.

**Goals**, in order of priority:

1. *Correct lists*: every list holds exactly ``N'`` distinct members, all from ``members``.
2. *Tight balance*: with ``S = partitions * N'`` replica slots and ``m`` members, every member
   holds ``floor(S/m)`` or ``ceil(S/m)`` slots, whatever sequence of joins and leaves led here.
   (The ceil is at most ``partitions``, so this is always achievable.)
3. *Minimal movement*: a slot changes hands only when the balance needs it. A member that stays in
   a list stays in it (and at its position) unless it holds more than its target.
4. *Balanced primaries*: each member is primary of ``floor(Q/m)`` or ``ceil(Q/m)`` partitions
   where the lists allow it, by reordering members *within* lists, which moves no data.
5. *Spreading* (fresh tables only): many distinct replica groups, so that losing any N members
   loses few partitions' every replica, and a failed member's load falls on many others.

**Determinism.** The result is a pure function of ``(previous, set(members), partitions, n)``:
names are sorted, and the only "randomness" is a SplitMix64 written out below, seeded with a
constant (fresh tables) or with a BLAKE2b digest of the sorted names, ``partitions`` and ``N'``
(changes). Never the ``random`` module, never ``hash()`` of a string (``PYTHONHASHSEED``
randomizes it), never the iteration order of a set of strings. Every node computing a claim from
the same inputs gets the same table. The module does no I/O and reads no
clock (``tests/unit/test_purity.py``).

**How.**

* *Targets.* ``S = Q*N'`` slots, ``base, extra = divmod(S, m)``. Every member's target is
  ``base``; the ``extra`` members that already hold the most slots (ties: lower name) get
  ``base + 1``. Handing the ceil to the members that already have it is what keeps movement
  minimal: after a join every old member still at or above its target only gives, after a leave
  every remaining member only receives (both follow from ``floor``/``ceil`` moving monotonically
  with the mean), so the slots that change hands are exactly the newcomer's target or the
  leaver's load.
* *Keep.* Start from ``previous`` with departed members dropped (and lists cut to ``N'`` when
  ``n`` shrank): these slots are never touched again except to shed surplus.
* *Fill holes.* Walk the partitions in order; each free slot goes to the member with the
  largest deficit (target minus load; ties: see below) that is not in the list yet. A lazy
  max-heap keeps this ``O(log m)``. If every member with a deficit is already in the list, a short
  search first tries to rearrange the slots filled earlier in this call so that one with a
  deficit fits (``_fill_holes``); failing that, the slot goes to the least-surplus absent member
  and the next step takes it back.
* *Shed surplus.* Each member above its target (in name order) offers its partitions in its
  own shuffled order; each give hands one slot, at the same position, to the member with the
  largest deficit that is not in that list, choosing among the next ``_WINDOW`` (8) offered
  partitions the one whose give best spreads company: the fewest lists the receiver already
  shares with the others in it, minus those the donor shares with them. This never gets stuck,
  which is why no two-step swap or donor search is needed: targets differ by at most one, so a
  donor ``d`` holds ``load(d) >= target(d) + 1 >= target(r) > load(r)`` slots for any receiver
  ``r``, hence holds a partition ``r`` lacks. A partition without an absent receiver stays so
  (receivers are only ever added to lists, and the set of receivers only shrinks), so a donor
  still over its target after its walk would be a donor whose every partition holds some
  receiver ``r``: impossible by the count above. Every give lowers the total surplus by one; at
  the end every member is exactly at its target.
* *Why shuffles and company.* Receivers of equal deficit are ordered by a shuffle per member
  set (the seed above), and donors walk shuffled partitions. With fixed orders (by name, by
  partition index) every claim takes from the same partitions: a table grown 3 -> 12 by joins
  kept its three founders together in ~250 of their 256 partitions, so the leave of one founder
  could not hand its slots to the other two and moved 1.16x its load. With one shuffle shared
  by all donors, the second donor first met exactly the partitions the first had just given
  away: 2 -> 4 members at N=2 left 25 of 64 lists {m0, m1} and 25 {m2, m3}, and any later leave
  moved 1.13x its load. With both fixes, every single leave in those histories moves exactly
  the leaver's load (the tests replay them).
* *Primaries.* Every member should be primary of ``lo = floor(Q/m)`` to ``hi = ceil(Q/m)``
  partitions. A linear pass swaps a primary above ``hi`` with the least-primary member of its
  list below ``hi`` (then the same for ``lo``); what is left is solved by augmenting paths
  (breadth-first search over "b could take over p's primary from a", the classic bipartite
  matching step): along a path ``a0 -> a1 -> ... -> ak`` each ``a(i+1)`` becomes primary of one
  partition of ``a(i)``, so only the two ends' counts change. Forward from members above ``hi``,
  then backward from members below ``lo``. When no path exists the lists themselves forbid a
  better split for that member, and claim leaves it there. Nothing is swapped when every count
  is already within ``lo..hi``.
* *Fresh tables.* Concatenate pseudo-random permutations of the members (a fixed-seed
  Fisher-Yates) and cut the sequence into consecutive groups of ``N'``. Each permutation uses
  every member once, so loads are ``floor``/``ceil`` by construction; where a group straddles two
  permutations the next one is fixed up so that its first members are not already in the group.
  This gives close to ``Q`` distinct replica groups instead of the ``m`` of a rotation
  ``members[(p*N' + i) % m]``, at the same cost. A previous table of which no member survives is
  treated as no table.

**Invariants** (tested in ``tests/unit/test_claim.py`` and ``tests/property/test_claim_props.py``):
lists are full and distinct; loads are ``floor``/``ceil`` of the mean; ``claim(t, members(t))``
is ``t`` for a table it produced (a fixed point: nothing moves without a membership change); one
join moves the newcomer's target, one leave the leaver's load (``moved``); growth below N adds
the newcomer to every list and shrinking below N only removes the leaver.

**Cost.** ``O(S log m)`` for the load phases and ``O(Q*N')`` per primary augmenting path (rare
after the linear pass). 1000 members, 16384 partitions, N=3: well under a second of pure Python
(``benchmarks/ring_scale.py``).

**Known failure modes elsewhere, and why they do not apply.** riak_core's ``claim_v2``
(``riak_core_claim.erl``) works on the ring's *adjacency*: a member must not own two partitions
closer than ``target_n_val``, so preference lists are walks; it can fail to meet that spacing
("tail violations" where the ring wraps, see riak_core ``docs/claim-fixes.md``), falls back to a
full re-striping (``sequential_claim``) that moves most of the data, and leaves could end
unbalanced (``docs/ring_claim.md``). Here lists are explicit, so distinctness is a per-list
check, never a spacing puzzle, and no fallback re-stripes the table: every slot that moves goes
straight from a member over its target to one under it.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Sequence

Table = tuple[tuple[str, ...], ...]

_MASK64 = (1 << 64) - 1
_SEED = 0x52494E474B560001  # fixed: the fresh table must be the same on every node


class _SplitMix64:
    """SplitMix64 (Steele, Lea, Flood 2014): a tiny, fully specified PRNG, the same everywhere."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK64

    def below(self, bound: int) -> int:
        """A number in ``0..bound-1`` (modulo bias is irrelevant here; determinism is not)."""
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return (z ^ (z >> 31)) % bound


def claim(
    previous: Sequence[Sequence[str]] | None,
    members: Iterable[str],
    partitions: int,
    n: int,
) -> Table:
    """The ownership table for ``members`` (the new member set; order and duplicates are
    irrelevant), starting from ``previous`` (the current table, or None for a new cluster).

    Raises ValueError for no members, ``partitions < 1``, ``n < 1`` or a ``previous`` whose length
    is not ``partitions``, and TypeError for a single string as ``members``. ``previous`` may hold
    departed members, duplicates or lists of another length (``n`` changed): they are cleaned.
    """
    if isinstance(members, str):
        raise TypeError("members must be an iterable of names, not one string")
    names = sorted(set(members))
    if not names:
        raise ValueError("a table needs at least one member")
    if partitions < 1:
        raise ValueError("a table needs at least one partition")
    if n < 1:
        raise ValueError("n must be at least 1")
    width = min(n, len(names))
    table: list[list[str]] | None = None
    if previous is not None:
        if len(previous) != partitions:
            raise ValueError(
                f"the previous table has {len(previous)} partitions, expected {partitions}"
            )
        table = _surviving(previous, set(names), width)
    if table is None:
        table = _fresh(names, partitions, width)
    _balance_load(table, names, width, _SplitMix64(_seed(names, partitions, width)))
    _balance_primaries(table, names)
    return tuple(tuple(row) for row in table)


def load(table: Sequence[Sequence[str]]) -> dict[str, int]:
    """Replica slots per member (members holding none are absent)."""
    counts: dict[str, int] = {}
    for row in table:
        for member in row:
            counts[member] = counts.get(member, 0) + 1
    return counts


def primaries(table: Sequence[Sequence[str]]) -> dict[str, int]:
    """Partitions of which each member is the primary (index 0); members with none are absent."""
    counts: dict[str, int] = {}
    for row in table:
        if row:
            counts[row[0]] = counts.get(row[0], 0) + 1
    return counts


def moved(old: Sequence[Sequence[str]], new: Sequence[Sequence[str]]) -> int:
    """Replica slots that changed hands: members in a partition's new list that were not in its
    old one, summed over partitions. Reordering within a list moves nothing."""
    if len(old) != len(new):
        raise ValueError(f"tables of {len(old)} and {len(new)} partitions")
    return sum(len(set(b).difference(a)) for a, b in zip(old, new, strict=True))


# -- the phases ------------------------------------------------------------------------------


def _seed(names: list[str], partitions: int, width: int) -> int:
    """A seed that differs between member sets (so successive claims do not all favour the same
    partitions or names) and is the same in every process (unlike ``hash()`` of a string)."""
    h = hashlib.blake2b(digest_size=8, person=b"ringkv.claim")
    h.update(f"{partitions}/{width}".encode())
    for x in names:
        h.update(b"\x00" + x.encode())
    return int.from_bytes(h.digest(), "big")


def _shuffled(items: list[int], rng: _SplitMix64) -> list[int]:
    """``items`` in a seeded Fisher-Yates order."""
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = rng.below(i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def _surviving(
    previous: Sequence[Sequence[str]], live: set[str], width: int
) -> list[list[str]] | None:
    """``previous`` with departed members and duplicates dropped, each list cut to ``width``;
    None if nothing survives."""
    table: list[list[str]] = []
    kept = 0
    for row in previous:
        out: list[str] = []
        for member in row:
            if member in live and member not in out:
                out.append(member)
                if len(out) == width:
                    break
        kept += len(out)
        table.append(out)
    return table if kept else None


def _fresh(names: list[str], partitions: int, width: int) -> list[list[str]]:
    """Consecutive groups of ``width`` cut from a sequence of seeded permutations of ``names``."""
    rng = _SplitMix64(_SEED)
    m = len(names)
    perm = list(names)
    pos = m  # forces a new permutation at the first slot
    table: list[list[str]] = []
    for _ in range(partitions):
        row: list[str] = []
        while len(row) < width:
            if pos == m:
                for i in range(m - 1, 0, -1):  # Fisher-Yates
                    j = rng.below(i + 1)
                    perm[i], perm[j] = perm[j], perm[i]
                # The first `width - len(row)` of the new permutation complete `row`: none of them
                # may be in it already. There are at most len(row) such names and at least
                # m - len(row) >= width - len(row) others, so a swap partner always exists.
                need = width - len(row)
                k = need
                for i in range(need):
                    if perm[i] in row:
                        while perm[k] in row:
                            k += 1
                        perm[i], perm[k] = perm[k], perm[i]
                        k += 1
                pos = 0
            row.append(perm[pos])
            pos += 1
        table.append(row)
    return table


class _Receivers:
    """Members by decreasing deficit (ties: lower rank): a lazy max-heap.

    An entry is current while its deficit equals the member's; deficits only fall while a heap is
    in use, so an outdated entry never becomes current again.
    """

    __slots__ = ("deficit", "heap", "positive")

    def __init__(self, deficit: dict[str, int], rank: dict[str, int], positive: bool) -> None:
        self.deficit = deficit
        self.positive = positive
        self.heap = [(-d, rank[x], x) for x, d in deficit.items() if d > 0 or not positive]
        heapq.heapify(self.heap)

    def best_absent(self, row: list[str]) -> str | None:
        """The member with the largest deficit that is not in ``row`` (None if there is none)."""
        heap, deficit = self.heap, self.deficit
        skipped = []
        found = None
        while heap:
            entry = heapq.heappop(heap)
            x = entry[2]
            if -entry[0] != deficit[x]:
                continue  # outdated
            if x in row:
                skipped.append(entry)
                continue
            found = x
            heapq.heappush(heap, entry)  # still current until the caller takes a slot
            break
        for entry in skipped:
            heapq.heappush(heap, entry)
        return found

    def took(self, x: str, rank: int) -> None:
        """``x`` received a slot: its deficit falls by one."""
        self.deficit[x] -= 1
        if self.deficit[x] > 0 or not self.positive:
            heapq.heappush(self.heap, (-self.deficit[x], rank, x))

    def any(self) -> bool:
        heap, deficit = self.heap, self.deficit
        while heap and -heap[0][0] != deficit[heap[0][2]]:
            heapq.heappop(heap)
        return bool(heap)


def _balance_load(table: list[list[str]], names: list[str], width: int, rng: _SplitMix64) -> None:
    """Fill the holes and shed the surplus so every member ends exactly at its target load."""
    partitions, m = len(table), len(names)
    rank = {x: i for i, x in enumerate(names)}
    held: dict[str, set[int]] = {x: set() for x in names}
    for p, row in enumerate(table):
        for x in row:
            held[x].add(p)
    base, extra = divmod(partitions * width, m)
    by_load = sorted(names, key=lambda x: (-len(held[x]), rank[x]))
    target = dict.fromkeys(names, base)
    for x in by_load[:extra]:
        target[x] = base + 1
    deficit = {x: target[x] - len(held[x]) for x in names}

    if all(d == 0 for d in deficit.values()):
        return  # nothing to fill, nothing to shed
    # Ties between receivers of equal deficit, and the order in which a donor offers its
    # partitions, follow a per-member-set shuffle: a fixed order (by name, by partition index)
    # would make every claim take from the same partitions and hand to the same names, and a
    # table grown by many joins would keep its founders together in the partitions never picked
    # (the leave of one founder would then need many more moves than its load).
    tie = {names[i]: k for k, i in enumerate(_shuffled(list(range(m)), rng))}
    if any(len(row) < width for row in table):
        _fill_holes(table, held, deficit, tie, width)

    donors = [x for x in names if deficit[x] < 0]
    if not donors:
        return
    pool = _Receivers(deficit, tie, positive=True)

    def give(p: int, donor: str, receiver: str) -> None:
        row = table[p]
        row[row.index(donor)] = receiver  # the receiver takes the donor's position
        held[donor].discard(p)
        held[receiver].add(p)
        deficit[donor] += 1
        pool.took(receiver, tie[receiver])

    # How often two members share a list: a give prefers the partition (among the next few the
    # donor offers) that leaves the donor's company and joins company the receiver rarely has.
    together: dict[str, dict[str, int]] = {x: {} for x in names}
    for row in table:
        for x in row:
            tx = together[x]
            for y in row:
                if y != x:
                    tx[y] = tx.get(y, 0) + 1

    def score(p: int, d: str, r: str) -> int:
        td, tr = together[d], together[r]
        return sum(tr.get(y, 0) - td[y] for y in table[p] if y != d)

    for d in donors:
        # Each donor its own shuffle: with one order for all, the second donor would first meet
        # exactly the partitions the first one just gave away.
        offers = _shuffled(sorted(held[d]), rng)
        offered = 0
        window: list[int] = []
        while deficit[d] < 0:
            while len(window) < _WINDOW and offered < len(offers):
                window.append(offers[offered])
                offered += 1
            best: tuple[int, int, str] | None = None
            for k, p in enumerate(window):
                r = pool.best_absent(table[p])
                if r is None:
                    continue  # never again: see the docstring
                sc = score(p, d, r)
                if best is None or sc < best[0]:
                    best = (sc, k, r)
            if best is None:
                if offered == len(offers):
                    break
                window.clear()
                continue
            _, k, r = best
            p = window.pop(k)
            window = [q for q in window if pool.best_absent(table[q]) is not None]
            row = table[p]
            for y in row:
                if y != d:
                    together[d][y] -= 1
                    together[y][d] -= 1
                    together[r][y] = together[r].get(y, 0) + 1
                    together[y][r] = together[y].get(r, 0) + 1
            give(p, d, r)
        if not pool.any():
            break

    if any(deficit[x] < 0 for x in donors):  # pragma: no cover - impossible, see the docstring
        raise AssertionError("claim: a donor is left over its target")


_WINDOW = 8  # partitions a donor's give chooses among (by the company they leave and join)
_REROUTE_NODES = 32  # partitions a rerouting search expands at most (it bounds the cost)


def _fill_holes(
    table: list[list[str]],
    held: dict[str, set[int]],
    deficit: dict[str, int],
    rank: dict[str, int],
    width: int,
) -> None:
    """Fill every list up to ``width``, each free slot with the member of largest deficit absent
    from the list.

    When every member with a deficit is already in the list, the slots filled earlier in this
    call may be rearranged first: a breadth-first search over them finds a chain ``p <- q1 <- ...
    <- qk`` where the member filled into ``q1`` moves to ``p`` (it is absent there), the one filled
    into ``q2`` moves to ``q1``, and so on, and a member with a deficit takes the freed slot of
    ``qk``. Only slots filled in this call move, so the count of moved slots does not change
    (greedy filling alone would put a member over its target here, and shedding that surplus
    would move one more slot and evict a member that stays). The search is bounded
    (``_REROUTE_NODES``); if it fails, the least-surplus absent member fills the slot and
    shedding fixes the balance.
    """
    pool = _Receivers(deficit, rank, positive=False)
    filled: dict[int, list[str]] = {}  # partition -> members filled into it by this call

    def reroute(p: int) -> bool:
        parent: dict[int, tuple[int, str] | None] = {p: None}
        frontier = [p]
        expanded = 0
        while frontier and expanded < _REROUTE_NODES:
            following: list[int] = []
            for u in frontier:
                expanded += 1
                row_u = table[u]
                for q, ys in filled.items():
                    if q in parent:
                        continue
                    y = next((y for y in ys if y not in row_u), None)
                    if y is None:
                        continue
                    parent[q] = (u, y)
                    r = pool.best_absent(table[q])
                    if r is None or deficit[r] <= 0:
                        following.append(q)
                        continue
                    # r takes y's slot in q; y takes the slot of the member that moved on from
                    # u, and so on back to p, where the moved member fills the hole.
                    incoming, step = r, parent[q]
                    while step is not None:
                        u_prev, moving = step
                        row = table[q]
                        row[row.index(moving)] = incoming
                        ys_q = filled[q]
                        ys_q[ys_q.index(moving)] = incoming
                        held[moving].discard(q)
                        held[incoming].add(q)
                        incoming, q, step = moving, u_prev, parent[u_prev]
                    table[p].append(incoming)
                    filled.setdefault(p, []).append(incoming)
                    held[incoming].add(p)
                    pool.took(r, rank[r])
                    return True
            frontier = following
        return False

    for p, row in enumerate(table):
        while len(row) < width:
            filler = pool.best_absent(row)
            assert filler is not None  # fewer than width <= m members are in the list
            if deficit[filler] <= 0 and reroute(p):
                continue
            row.append(filler)
            filled.setdefault(p, []).append(filler)
            held[filler].add(p)
            pool.took(filler, rank[filler])


def _balance_primaries(table: list[list[str]], names: list[str]) -> None:
    """Reorder lists so every member is primary of ``lo = floor(Q/m)`` to ``hi = ceil(Q/m)``
    partitions, where the lists allow it."""
    partitions, m = len(table), len(names)
    if len(table[0]) < 2:
        return  # n = 1: primaries are the loads, already balanced
    lo, extra = divmod(partitions, m)
    hi = lo + (1 if extra else 0)
    count = dict.fromkeys(names, 0)
    for row in table:
        count[row[0]] += 1

    # Linear passes: an over-``hi`` primary swaps with the least-primary member of its list below
    # ``hi``; then a primary above ``lo`` swaps with a member of its list below ``lo``.
    for ceiling, floor in ((hi, hi), (lo, lo)):
        for row in table:
            a = row[0]
            if count[a] <= ceiling:
                continue
            best = 0
            for i in range(1, len(row)):
                if count[row[i]] < floor and (best == 0 or count[row[i]] < count[row[best]]):
                    best = i
            if best:
                b = row[best]
                row[0], row[best] = b, a
                count[a] -= 1
                count[b] += 1

    if all(lo <= c <= hi for c in count.values()):
        return
    # What is left: augmenting paths, forward from each member above hi (to one below hi), then
    # backward from each member below lo (to one above lo).
    primary_of: dict[str, list[int]] = {x: [] for x in names}
    secondary_of: dict[str, list[int]] = {x: [] for x in names}
    for p, row in enumerate(table):
        primary_of[row[0]].append(p)
        for x in row[1:]:
            secondary_of[x].append(p)
    for forward in (True, False):
        for x in names:
            while count[x] > hi if forward else count[x] < lo:
                path = _primary_path(table, x, forward, primary_of, secondary_of, count, lo, hi)
                if path is None:
                    break  # the lists allow no better split for x
                for p, taker in path:
                    row = table[p]
                    giver = row[0]
                    i = row.index(taker)
                    row[0], row[i] = taker, giver
                    primary_of[giver].remove(p)
                    primary_of[taker].append(p)
                    secondary_of[taker].remove(p)
                    secondary_of[giver].append(p)
                    count[giver] -= 1
                    count[taker] += 1


def _primary_path(
    table: list[list[str]],
    start: str,
    forward: bool,
    primary_of: dict[str, list[int]],
    secondary_of: dict[str, list[int]],
    count: dict[str, int],
    lo: int,
    hi: int,
) -> list[tuple[int, str]] | None:
    """Breadth-first: the shortest chain of (partition, member that takes its primary) steps that
    moves one primary away from ``start`` (``forward``: to a member below ``hi``) or to ``start``
    (backward: from a member above ``lo``), changing no other member's count; or None.

    Forward, an edge ``a -> b`` is a partition ``a`` is primary of and ``b`` a secondary of;
    backward, ``b -> a`` is a partition ``b`` is a secondary of and ``a`` its primary. Each edge's
    partition has a different primary, so a path never uses a partition twice.
    """
    parent: dict[str, tuple[int, str] | None] = {start: None}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for x in frontier:
            for p in primary_of[x] if forward else secondary_of[x]:
                row = table[p]
                for y in row[1:] if forward else row[:1]:
                    if y in parent:
                        continue
                    parent[y] = (p, x)
                    if (count[y] < hi) if forward else (count[y] > lo):
                        path: list[tuple[int, str]] = []
                        node, step = y, parent[y]
                        while step is not None:
                            q, prev = step
                            path.append((q, node if forward else prev))
                            node, step = prev, parent[prev]
                        return path
                    following.append(y)
        frontier = following
    return None
