"""The ownership table: which members hold each partition, at which epoch — pure.

A cluster's keys fall into ``partitions`` fixed, equal slices of the 64-bit MurmurHash3 space
(``partition_of``; the count is fixed when the cluster is founded). The **table** says, for every
partition, its preference list: the ``min(N, members)`` distinct members that hold its replicas,
the first being its primary. The lists come from ``ring.core.claim`` (a balanced, deterministic
claim with minimal movement). Only the cluster's **claimant** makes a new table (see
``ring.core.claimant``); every other node takes the newest one it hears of.

**Epochs.** Every table has an epoch, one higher than the table it came from. Each partition
also records the epoch at which its routing (owners or pending owners) last changed
(``changed``). A replica request carries its sender's epoch; the receiver refuses one whose epoch
is older than its partition's ``changed`` (the sender routed it on a table that no longer holds
for that partition: it fetches the table and retries) and holds one whose epoch is newer than its
own table until it has fetched that table. So no request is served from a stale view of who owns
what, and a change to one partition does not disturb requests for the others (TiKV's region
epoch, per partition).

**Transfers.** When the claim moves a partition, the table keeps its current owners (``owners``)
and records the new list as ``pending``. Until the partition **switches**:

* writes go to the owners *and* the pending owners, and need W acknowledgements in each list;
* reads are answered by the owners only (they hold every acknowledged write);
* each **receiver** (a pending owner that is not an owner) copies the partition from its
  **sources** (``sources``): the departing owner it replaces, or, when that member was removed
  (it is gone for good), every surviving owner, so the receiver holds at least what the member it
  replaces held;
* a receiver that has everything reports it to the claimant (``done``); once every receiver of a
  partition has, the claimant **switches** it: the pending list becomes the owners (reads go to
  them), and the old owners are kept as ``retiring``: they still get every write (W in their
  list too), because a node that has not taken the new table yet may still read from them;
* once every old owner that is alive has gossiped an epoch at least that of the switch (it
  refuses requests routed on the old table from then on), the claimant **retires** the old
  list: writes go to the new owners only, and the departing members go to ``cleanup`` until they
  have deleted their copy.

A member asked to leave stays in ``leaving`` until it holds nothing; a removed member stays in
``removed`` (never a source) until no list names it. Both then go to ``gone``, a name the cluster
will not take back. ``transfers_pending`` counts the partitions with a transfer or a cleanup not
finished; it is 0 once the ring has settled.

Invariants: every list holds distinct members; ``owners`` and ``pending`` lists have
``min(N, members)`` entries (the claim's); ``changed[p] <= epoch``; a name in ``gone`` is in no
list; the table is a value (``Table`` is never changed in place, ``Draft`` makes the next one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mmh3

from ring.core.claim import claim

FORMAT = 1  # the encoded table's format version


def partition_of(key: bytes, partitions: int) -> int:
    """The partition that holds ``key``: the slice of the hash space its hash falls in."""
    return (mmh3.hash64(key, signed=False)[0] * partitions) >> 64


@dataclass(frozen=True, slots=True)
class Table:
    partitions: int
    n: int
    epoch: int
    claimant: str
    owners: tuple[tuple[str, ...], ...]
    changed: tuple[int, ...]
    pending: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    done: Mapping[int, frozenset[str]] = field(default_factory=dict)
    cleanup: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    retiring: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    leaving: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # --- making one ----------------------------------------------------------------------------

    @staticmethod
    def found(name: str, partitions: int, n: int) -> Table:
        """The table of a cluster just founded by ``name``: it holds every partition."""
        return Table(
            partitions=partitions,
            n=n,
            epoch=1,
            claimant=name,
            owners=tuple((name,) for _ in range(partitions)),
            changed=(1,) * partitions,
        )

    @staticmethod
    def of(members: Iterable[str], partitions: int, n: int, epoch: int = 1) -> Table:
        """A settled table of ``members`` (the claim of a new cluster), at ``epoch``; the
        claimant is the first member by name. For tests and tools."""
        names = sorted(set(members))
        return Table(
            partitions=partitions,
            n=n,
            epoch=epoch,
            claimant=names[0],
            owners=claim(None, names, partitions, n),
            changed=(epoch,) * partitions,
        )

    # --- routing -------------------------------------------------------------------------------

    def partition_of(self, key: bytes) -> int:
        return (mmh3.hash64(key, signed=False)[0] * self.partitions) >> 64

    def read_list(self, p: int) -> tuple[str, ...]:
        """Who answers reads of partition ``p``: its owners."""
        return self.owners[p]

    def write_list(self, p: int) -> tuple[str, ...]:
        """Who stores writes of partition ``p``: its owners, then its pending owners, then its
        retiring (old) owners."""
        pend = self.pending.get(p)
        old = self.retiring.get(p)
        own = self.owners[p]
        if pend is None and old is None:
            return own
        out = list(own)
        for lst in (pend or (), old or ()):
            out += [x for x in lst if x not in out]
        return tuple(out)

    def write_groups(self, p: int) -> tuple[tuple[str, ...], ...]:
        """The lists in which a write needs its W acknowledgements."""
        groups = [self.owners[p]]
        for lst in (self.pending.get(p), self.retiring.get(p)):
            if lst is not None:
                groups.append(lst)
        return tuple(groups)

    def stale(self, p: int, epoch: int) -> bool:
        """Whether a request routed at ``epoch`` is stale for partition ``p``."""
        return epoch < self.changed[p]

    def last_change(self) -> int:
        """The newest epoch at which any partition's routing changed."""
        got = self._cache.get("last_change")
        if got is None:
            got = self._cache["last_change"] = max(self.changed)
        return int(got)

    def fallbacks(self, p: int) -> tuple[str, ...]:
        """The members outside ``p``'s write list, in the order sloppy quorum tries them: as
        they appear in the lists of the partitions after ``p``."""
        cache: dict[int, tuple[str, ...]] = self._cache.setdefault("fallbacks", {})
        got = cache.get(p)
        if got is not None:
            return got
        skip = set(self.write_list(p))
        everyone = self.members()
        seen: dict[str, None] = {}
        for step in range(1, self.partitions + 1):
            for name in self.write_list((p + step) % self.partitions):
                if name not in skip and name not in seen:
                    seen[name] = None
            if len(seen) + len(skip) >= len(everyone):
                break
        got = cache[p] = tuple(seen)
        return got

    # --- members -------------------------------------------------------------------------------

    def members(self) -> tuple[str, ...]:
        """Every member the table names (owners, pending owners, holders still to clean up,
        members leaving), sorted."""
        got = self._cache.get("members")
        if got is None:
            names: set[str] = set(self.leaving)
            for lst in self.owners:
                names.update(lst)
            for lists in (self.pending, self.cleanup, self.retiring):
                for lst in lists.values():
                    names.update(lst)
            got = self._cache["members"] = tuple(sorted(names))
        return tuple(got)

    def owning(self) -> tuple[str, ...]:
        """The members that own at least one partition (they answer reads), sorted."""
        got = self._cache.get("owning")
        if got is None:
            names: set[str] = set()
            for lst in self.owners:
                names.update(lst)
            got = self._cache["owning"] = tuple(sorted(names))
        return tuple(got)

    def target_members(self) -> tuple[str, ...]:
        """The members the table is moving to (those of the pending lists where a partition
        moves, else of the owners), sorted."""
        names: set[str] = set()
        for p in range(self.partitions):
            names.update(self.pending.get(p, self.owners[p]))
        return tuple(sorted(names))

    def load(self) -> dict[str, int]:
        """Replicas each member owns (its partitions, counted once per list)."""
        out = dict.fromkeys(self.members(), 0)
        for lst in self.owners:
            for name in lst:
                out[name] += 1
        return out

    def primaries(self) -> dict[str, int]:
        out = dict.fromkeys(self.members(), 0)
        for lst in self.owners:
            out[lst[0]] += 1
        return out

    def transfers_pending(self) -> int:
        """Partitions with a transfer, a retiring old list or a cleanup not finished (0: the
        ring has settled)."""
        cleaning = {p for p, holders in self.cleanup.items() if holders}
        return len(set(self.pending) | set(self.retiring) | cleaning)

    # --- transfers -----------------------------------------------------------------------------

    def receivers(self, p: int) -> tuple[str, ...]:
        """Pending owners of ``p`` that do not own it yet: they receive its records."""
        pend = self.pending.get(p)
        if pend is None:
            return ()
        own = self.owners[p]
        return tuple(sorted(x for x in pend if x not in own))

    def sources(self, p: int, receiver: str) -> tuple[str, ...]:
        """The members ``receiver`` copies partition ``p`` from: the departing owner it is paired
        with (receivers and departing owners, each sorted, are paired in order), or, when that
        one was removed or there is none, every owner that was not removed."""
        pend = self.pending.get(p)
        if pend is None:
            return ()
        own = self.owners[p]
        departing = sorted(x for x in own if x not in pend)
        receivers = self.receivers(p)
        if receiver not in receivers:
            return ()
        i = receivers.index(receiver)
        if i < len(departing) and departing[i] not in self.removed:
            return (departing[i],)
        survivors = tuple(x for x in own if x not in self.removed and x != receiver)
        if i >= len(departing):
            return survivors[:1]  # a list that grows: any owner holds the partition
        return survivors

    def inbound(self, name: str) -> dict[str, set[int]]:
        """What ``name`` still has to copy: source -> partitions."""
        out: dict[str, set[int]] = {}
        for p in sorted(self.pending):
            if name in self.receivers(p) and name not in self.done.get(p, frozenset()):
                for src in self.sources(p, name):
                    out.setdefault(src, set()).add(p)
        return out

    def to_clean(self, name: str) -> set[int]:
        """Partitions ``name`` has to delete its copy of."""
        return {p for p, lst in self.cleanup.items() if name in lst}

    def holds(self, name: str) -> bool:
        """Whether ``name`` is in any list, or still has a copy to delete."""
        return name in self.members()

    # --- wire ----------------------------------------------------------------------------------

    def to_wire(self) -> list[Any]:
        names = sorted(set(self.members()) | {self.claimant} | set(self.removed))
        index = {x: i for i, x in enumerate(names)}

        def ids(lst: Iterable[str]) -> list[int]:
            return [index[x] for x in lst]

        return [
            FORMAT,
            self.partitions,
            self.n,
            self.epoch,
            self.claimant,
            names,
            [ids(lst) for lst in self.owners],
            list(self.changed),
            [[p, ids(lst)] for p, lst in sorted(self.pending.items())],
            [[p, ids(sorted(s))] for p, s in sorted(self.done.items())],
            [[p, ids(lst)] for p, lst in sorted(self.cleanup.items())],
            [[p, ids(lst)] for p, lst in sorted(self.retiring.items())],
            list(self.leaving),
            list(self.removed),
            list(self.gone),
        ]

    @staticmethod
    def from_wire(obj: Any) -> Table:
        """The table ``to_wire`` made; ``ValueError`` for anything else, so a malformed table
        from a peer is refused whole, before anything of it is kept."""
        try:
            (fmt, partitions, n, epoch, claimant, names, owners, changed, pending, done,
             cleanup, retiring, leaving, removed, gone) = obj  # fmt: skip
        except (TypeError, ValueError):
            raise ValueError("not a table: the wrong shape") from None
        if fmt != FORMAT:
            raise ValueError(f"table format {fmt!r} is not {FORMAT}")
        for what, value in (("partitions", partitions), ("n", n), ("epoch", epoch)):
            if not _is_int(value) or value < 1:
                raise ValueError(f"a table's {what} is a positive integer")
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            raise ValueError("a table's member names are strings")
        if len(set(names)) != len(names) or not isinstance(claimant, str):
            raise ValueError("a table names each member once, and a claimant")

        def lst(ids: Any, most: int = len(names)) -> tuple[str, ...]:
            if not isinstance(ids, list) or not all(
                _is_int(i) and 0 <= i < len(names) for i in ids
            ):
                raise ValueError("a list holds member numbers of the table")
            out = tuple(names[i] for i in ids)
            if len(set(out)) != len(out) or len(out) > most:
                raise ValueError("a preference list names at most N members, each once")
            return out

        def by_partition(
            items: Any, nonempty: bool = True, most: int = len(names)
        ) -> dict[int, tuple[str, ...]]:
            out: dict[int, tuple[str, ...]] = {}
            if not isinstance(items, list):
                raise ValueError("a table's partition map is a list")
            for item in items:
                if not isinstance(item, list) or len(item) != 2:
                    raise ValueError("a partition map holds [partition, list] pairs")
                p, ids = item
                if not _is_int(p) or not 0 <= p < partitions or p in out:
                    raise ValueError(f"partition {p!r} is outside 0..{partitions - 1}")
                out[p] = lst(ids, most)
                if nonempty and not out[p]:
                    raise ValueError("a list of a partition is not empty")
            return out

        if not isinstance(owners, list) or len(owners) != partitions:
            raise ValueError("a table has one list per partition")
        owner_lists = tuple(lst(x, n) for x in owners)
        if not all(owner_lists):
            raise ValueError("every partition has an owner")
        if not isinstance(changed, list) or len(changed) != partitions:
            raise ValueError("a table has one list per partition")
        if not all(_is_int(c) and 1 <= c <= epoch for c in changed):
            raise ValueError("a partition's change epoch is between 1 and the table's")
        for what, value in (("leaving", leaving), ("removed", removed), ("gone", gone)):
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise ValueError(f"a table's {what} is a list of names")
        table = Table(
            partitions=partitions,
            n=n,
            epoch=epoch,
            claimant=claimant,
            owners=owner_lists,
            changed=tuple(changed),
            pending=by_partition(pending, most=n),
            done={p: frozenset(x) for p, x in by_partition(done, nonempty=False).items()},
            cleanup=by_partition(cleanup),
            retiring=by_partition(retiring),
            leaving=tuple(leaving),
            removed=tuple(removed),
            gone=tuple(gone),
        )
        if set(table.gone) & set(table.members()):
            raise ValueError("a member that is gone is in no list")
        return table


def _drop(lists: dict[int, tuple[str, ...]], p: int, name: str) -> bool:
    """Take ``name`` out of partition ``p``'s list in ``lists`` (the entry goes when empty);
    True if it was there."""
    lst = lists.get(p)
    if not lst or name not in lst:
        return False
    left = tuple(x for x in lst if x != name)
    if left:
        lists[p] = left
    else:
        del lists[p]
    return True


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Draft:
    """The claimant's next table, built from the current one change by change; ``finish`` makes
    it a ``Table`` one epoch higher (or returns the current one when nothing changed)."""

    def __init__(self, table: Table) -> None:
        self.base = table
        self.epoch = table.epoch + 1
        self.claimant = table.claimant
        self.owners = list(table.owners)
        self.changed = list(table.changed)
        self.pending = dict(table.pending)
        self.done = dict(table.done)
        self.cleanup = dict(table.cleanup)
        self.retiring = dict(table.retiring)
        self.leaving = list(table.leaving)
        self.removed = list(table.removed)
        self.gone = list(table.gone)
        self.dirty = False

    def _view(self) -> Table:
        return Table(
            partitions=self.base.partitions,
            n=self.base.n,
            epoch=self.epoch,
            claimant=self.claimant,
            owners=tuple(self.owners),
            changed=tuple(self.changed),
            pending=dict(self.pending),
            done=dict(self.done),
            cleanup=dict(self.cleanup),
            retiring=dict(self.retiring),
            leaving=tuple(self.leaving),
            removed=tuple(self.removed),
            gone=tuple(self.gone),
        )

    def plan(self, members: Iterable[str]) -> int:
        """Move towards a table for ``members``, from where the current plan is heading (a
        change during a change is merged into one plan). Returns the replica slots that move
        compared to that plan."""
        t = self._view()
        base = [t.pending.get(p, t.owners[p]) for p in range(t.partitions)]
        target = claim(base, members, t.partitions, t.n)
        moved = 0
        for p in range(t.partitions):
            old_target = base[p]
            new = target[p]
            moved += len(set(new) - set(old_target))
            if new == old_target:
                continue
            self.dirty = True
            own = self.owners[p]
            if set(new) == set(own):
                # Only the order changes (or a pending move is called off): nothing to copy.
                self.owners[p] = new
                self.pending.pop(p, None)
                self.done.pop(p, None)
            else:
                old_sources = {r: t.sources(p, r) for r in t.receivers(p)}
                self.pending[p] = new
                view = self._view()
                kept = {
                    r
                    for r in self.done.get(p, frozenset())
                    if r in view.receivers(p) and view.sources(p, r) == old_sources.get(r)
                }
                if kept:
                    self.done[p] = frozenset(kept)
                else:
                    self.done.pop(p, None)
            self.changed[p] = self.epoch
            # A receiver the new plan drops may hold part of the partition: it deletes it.
            dropped = [x for x in t.receivers(p) if x not in new and x not in self.removed]
            if dropped:
                self._to_cleanup(p, dropped)
            # A member that holds the partition again has nothing to delete.
            for x in new:
                self._uncleanup(p, x)
            self._maybe_switch(p)
        return moved

    def remove(self, name: str) -> None:
        """``name`` is gone for good: it is never a source again, and it deletes nothing (its
        copies went with it), so it leaves every cleanup list at once."""
        if name not in self.removed:
            self.removed.append(name)
        if name in self.leaving:
            self.leaving.remove(name)
        for p in list(self.cleanup):
            self._uncleanup(p, name)
        for p in list(self.retiring):
            if _drop(self.retiring, p, name):  # it gets no more writes
                self.changed[p] = self.epoch
        self.dirty = True

    def complete(self, p: int, receiver: str, epoch: int) -> bool:
        """``receiver`` has copied partition ``p`` from all its sources (as routed at
        ``epoch``); True if that was news."""
        if p not in self.pending or epoch < self.changed[p]:
            return False
        view = self._view()
        if receiver not in view.receivers(p) or receiver in self.done.get(p, frozenset()):
            return False
        self.done[p] = self.done.get(p, frozenset()) | {receiver}
        self.dirty = True
        self._maybe_switch(p)
        return True

    def _maybe_switch(self, p: int) -> None:
        pend = self.pending.get(p)
        if pend is None:
            return
        own = self.owners[p]
        receivers = {x for x in pend if x not in own}
        if not receivers <= self.done.get(p, frozenset()):
            return
        # Reads go to the new owners; the old ones keep getting writes until they all have this
        # table (``retire_old``).
        old = tuple(x for x in own if x not in self.removed)
        before = self.retiring.get(p, ())
        self.retiring[p] = before + tuple(x for x in old if x not in before)
        self.owners[p] = pend
        del self.pending[p]
        self.done.pop(p, None)
        self.changed[p] = self.epoch
        self.dirty = True

    def retire_old(self, p: int) -> bool:
        """Every old owner of switched partition ``p`` has the table that switched it: writes
        go to the new owners only, and the departing members delete their copy."""
        old = self.retiring.pop(p, None)
        if old is None:
            return False
        lists = set(self.owners[p]) | set(self.pending.get(p, ()))
        departing = [x for x in old if x not in lists and x not in self.removed]
        if departing:
            self._to_cleanup(p, departing)
        self.changed[p] = self.epoch
        self.dirty = True
        return True

    def cleaned(self, p: int, holder: str) -> bool:
        """``holder`` deleted its copy of ``p``; True if that was news."""
        if not self._uncleanup(p, holder):
            return False
        self.dirty = True
        return True

    def _uncleanup(self, p: int, name: str) -> bool:
        return _drop(self.cleanup, p, name)

    def _to_cleanup(self, p: int, names: Iterable[str]) -> None:
        self.cleanup[p] = tuple(sorted(set(self.cleanup.get(p, ())) | set(names)))

    def retire(self) -> list[str]:
        """Members leaving or removed that no list names any more go to ``gone``."""
        held: set[str] = set()
        for lst in self.owners:
            held.update(lst)
        for lists in (self.pending.values(), self.cleanup.values(), self.retiring.values()):
            for lst in lists:
                held.update(lst)
        out: list[str] = []
        for name in list(self.leaving) + list(self.removed):
            if name not in held and name not in self.gone and name not in out:
                out.append(name)
        for name in out:
            if name in self.leaving:
                self.leaving.remove(name)
            if name in self.removed:
                self.removed.remove(name)
            self.gone.append(name)
            self.dirty = True
        return out

    def finish(self) -> Table:
        if not self.dirty and self.claimant == self.base.claimant:
            return self.base
        return self._view()
