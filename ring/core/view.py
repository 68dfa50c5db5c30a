"""A node's view of its cluster: membership, the ring it implies, and whether it may serve — pure.

A node coordinates requests only from a **whole** view of the ring it belongs to: a write
coordinated from a partial or made-up ring is stored on nodes that are not its replicas and
acknowledged, and its real replicas never see it. So a node starts in one of four modes and
serves only when its mode's condition holds:

==============  ============================================  =================================
mode            starts when the data directory ...            serves after
==============  ============================================  =================================
``serving``     holds a ring of this node alone, or is empty   at once (alone by its own
                and ``new_cluster`` is set without seeds       founding)
``rejoining``   holds a ring with other members                a full table from a *member*
                                                               (its ring: the remembered one)
``joining``     is empty and seeds are given                   a full table from a *serving*
                                                               member
``founding``    is empty, ``new_cluster`` and seeds given      every seed answered and none is a
                                                               member: it founds; a member that
                                                               knew it: it rejoins (``joining``);
                                                               one that did not: ``Halt``
==============  ============================================  =================================

An empty data directory with neither seeds nor ``new_cluster`` is refused (:class:`StartupError`):
a node never founds a cluster it was not told to found. A **member** is a node that belongs to a
cluster: it serves, or it remembers a ring it is rejoining; a fresh joiner is not one. A full table
is a ``Sync``/``SyncReply`` (all its parts) whose flags say what its sender is. So:

* a wiped founder restarted with its usual command (``new_cluster`` plus seeds) hears from its
  old peers, which are members that know it, and rejoins them instead of founding a second
  cluster; answers are matched to the seed address each ``Join`` went to (echoed back), and a
  seed address that turns out to be the founder itself is not waited for;
* a fresh joiner trusts only a serving member's table, which is whole by that member's rule;
* a rejoining node puts the members it remembers into its view at once, as ``down`` until they
  are heard from: its ring is the one it served on (ownership does not change because nobody
  spoke yet), and the tables it sends name them, so a peer rejoining with an older ring learns
  the newer one. So a whole cluster that restarts at once comes back without any node serving
  first, also with a member missing (it stays in the ring, down, and gets hints).

Until it serves, the node's own membership record is ``joining`` (so ``status`` shows it), it
keeps sending ``Join`` to its seeds and to members it has heard of, and it still stores the
replicas it is sent. A node serves only with the cluster's ownership table (``ring.core.table``):
a fresh joiner asks for it (``TableRequest``) once a member's epoch is gossiped to it; a restarted
node starts from the table it remembers and fetches any newer one it hears of. The table of a
serving node and its members' addresses are remembered in its storage (``RING_KEY``) whenever
they change; the addresses double as seeds after a restart. A ``Join``
refused for its settings ends a node that does not serve yet (``Halt``): its settings disagree
with the cluster's, which no retry can fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from ring.core import messages as m
from ring.core.layout import RING_KEY, Storage
from ring.core.membership import (
    KNEW_YOU,
    MEMBER,
    SERVING,
    Membership,
    MembershipConfig,
    RandomSource,
    Sync,
    SyncReply,
)
from ring.core.table import Table

WAIT_LOG_MS = 10_000  # how often a node that does not serve yet says what it waits for


class StartupError(ValueError):
    """The node cannot start from what it was given (an empty data directory, no seeds, and no
    instruction to found a cluster)."""


@dataclass(frozen=True, slots=True)
class ViewConfig:
    name: str
    address: str
    cluster: str
    seeds: tuple[str, ...]
    new_cluster: bool
    n: int
    partitions: int
    membership: MembershipConfig

    def settings(self) -> dict[str, Any]:
        """What every member of a cluster must agree on; carried by Join and full tables."""
        return {"cluster": self.cluster, "n": self.n, "partitions": self.partitions}


def load_ring(storage: Storage) -> tuple[Table | None, dict[str, str]]:
    """The ownership table a node last knew and its members' addresses (name -> address, ''
    when unknown). A ring saved by an older version (names and addresses only) gives no table:
    the node fetches the cluster's."""
    raw = storage.get(RING_KEY)
    if raw is None:
        return None, {}
    obj = msgpack.unpackb(raw)
    table: Table | None = None
    items = obj
    if isinstance(obj, dict):
        table = Table.from_wire(obj.get("table"))
        items = obj.get("addresses", [])
    out: dict[str, str] = {}
    for item in items:
        if isinstance(item, list) and len(item) == 2:
            out[str(item[0])] = str(item[1])
        elif isinstance(item, str):
            out[item] = ""
    return table, out


class View:
    """Membership, ring and readiness of one node (see the module docstring)."""

    def __init__(
        self, config: ViewConfig, storage: Storage, *, now_ms: int, incarnation: int
    ) -> None:
        self.config = config
        self.name = config.name
        self.storage = storage
        self.table, self.remembered = load_ring(storage)
        if self.table is not None and (
            self.table.partitions != config.partitions or self.table.n != config.n
        ):
            raise StartupError(
                f"the data directory holds a ring of {self.table.partitions} partitions with "
                f"N={self.table.n}, not {config.partitions} and N={config.n}: the ring size and N "
                "are fixed when a cluster is created"
            )
        self.seeds = [s for s in dict.fromkeys(config.seeds) if s != config.address]
        others = [n for n in self.remembered if n != config.name]
        if self.remembered:
            self.mode = "rejoining" if others else "serving"
        elif config.new_cluster:
            self.mode = "founding" if self.seeds else "serving"
        elif self.seeds:
            self.mode = "joining"
        else:
            raise StartupError(
                "the data directory holds no cluster: give --seeds to join a cluster or "
                "--new-cluster to found one"
            )
        self._expected = others
        self.membership = Membership(
            config.name,
            config.address,
            incarnation=incarnation,
            config=config.membership,
            now_ms=now_ms,
            settings=config.settings(),
            serving=self.mode == "serving",
            member=self.mode in ("serving", "rejoining"),
        )
        # The members it remembers are in its view from the start (down until heard from), so
        # its ring is the one it served on, and the tables it sends name them.
        self.membership.remember(self.remembered, now_ms)
        if self.table is not None:
            self.membership.epoch = self.membership.newest_epoch = self.table.epoch
            for name in self.table.gone:  # names spent: never let back in
                self.membership.mark_left(name, now_ms)
        self._table_parts: dict[str, set[int]] = {}  # full-table parts received, per sender
        self._synced = False  # a full table from a sender good enough for our mode
        self._answers: dict[str, tuple[str, int]] = {}  # founding: seed -> (its name, flags)
        self._halted = False
        self._reported: set[tuple[str, str]] = set()
        self._next_wait_log = now_ms + WAIT_LOG_MS
        self._changes: list[tuple[str, str | None, str]] = []  # for the node, see drain_changes

    # --- queries -------------------------------------------------------------------------------

    @property
    def serving(self) -> bool:
        return self.mode == "serving"

    def alive(self, name: str) -> bool:
        return name == self.name or self.membership.is_alive(name)

    @property
    def ring(self) -> Table:
        """The ownership table (a node that serves always has one)."""
        assert self.table is not None, "no ownership table yet"
        return self.table

    def preference_list(self, key: bytes) -> tuple[str, ...]:
        """Who answers reads of ``key`` (its partition's owners)."""
        t = self.ring
        return t.owners[t.partition_of(key)]

    def progress(self, now_ms: int) -> list[m.Effect]:
        """Serve now if what the node waited for is here (a table just arrived)."""
        return [] if self.serving else self._progress(now_ms)

    def install(self, table: Table) -> bool:
        """Take ``table`` if it is newer than ours (True), and remember it."""
        if self.table is not None and table.epoch <= self.table.epoch:
            return False
        if table.partitions != self.config.partitions or table.n != self.config.n:
            return False  # another cluster's table; the settings check refuses its sender
        self.table = table
        self.membership.epoch = table.epoch
        self.membership.newest_epoch = max(self.membership.newest_epoch, table.epoch)
        self._save_ring(force=True)
        return True

    def drain_changes(self) -> list[tuple[str, str | None, str]]:
        """Membership changes ``(name, old state or None, new state)`` since the last call."""
        out, self._changes = self._changes, []
        return out

    def address_of(self, name: str) -> str | None:
        member = self.membership.get(name)
        return None if member is None else member.address

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, now_ms: int) -> list[m.Effect]:
        # The members remembered from the last run are seeds too, so a node restarted without
        # seeds finds its cluster again.
        seeds = list(self.seeds)
        for name, address in sorted(self.remembered.items()):
            if name != self.name and address and address not in seeds:
                seeds.append(address)
        effects: list[m.Effect] = list(self.membership.join(seeds, now_ms))
        if self.remembered and self.config.new_cluster:
            text = "the data directory holds a cluster: --new-cluster is ignored, rejoining it"
            effects.append(m.Log("info", text, "new_cluster_ignored"))
        if self.serving:
            effects += self._begin_serving(now_ms, "founded" if not self.remembered else "alone")
        self._sync_ring()
        return effects

    def stop(self, now_ms: int) -> list[m.Effect]:
        return list(self.membership.leave(now_ms))

    # --- events --------------------------------------------------------------------------------

    def datagram(self, src: str, msg: Any, now_ms: int, rng: RandomSource) -> list[m.Effect]:
        effects: list[m.Effect] = list(self.membership.handle(src, msg, now_ms, rng))
        self._sync_ring()
        self._report_refusals(effects)
        if not self.serving:
            if (
                isinstance(msg, Sync | SyncReply)
                and msg.src_name != self.name
                and msg.settings == self.membership.settings  # a table it did not drop
            ):
                self._note_table(msg)
            effects += self._progress(now_ms)  # a ping may bring the last member it waits for
        return effects

    def tick(self, now_ms: int, rng: RandomSource) -> list[m.Effect]:
        effects: list[m.Effect] = list(self.membership.tick(now_ms, rng))
        self._sync_ring()
        self._report_refusals(effects)
        if not self.serving:
            effects += self._progress(now_ms)
            if now_ms >= self._next_wait_log and not self.serving:
                self._next_wait_log = now_ms + WAIT_LOG_MS
                waiting = self.waiting_for()
                effects.append(
                    m.Log("info", f"not serving yet: {waiting}", "waiting", {"for": waiting})
                )
        return effects

    def waiting_for(self) -> str:
        """What a node that does not serve yet waits for, in words (logs and status)."""
        if self.mode == "founding":
            missing = [s for s in self._founding_seeds() if s not in self._answers]
            return (
                f"founding a cluster once its seeds answered and none belongs to a cluster (not "
                f"answered yet: {', '.join(missing)})"
            )
        if self.mode == "joining" and not self._synced:
            return "a full membership table from a serving member (is a node of the cluster up?)"
        if self.mode == "joining":
            return "the ownership table from a serving member"
        unknown = [n for n in self._expected if self.membership.get(n) is None]
        if not self._synced:
            return "a full membership table from a member of the ring it remembers"
        if self.table is None:
            return "the ownership table from a member of the cluster"
        return f"news of the members it remembers: {', '.join(unknown)}"

    # --- readiness -----------------------------------------------------------------------------

    def _founding_seeds(self) -> list[str]:
        """The seeds a founder waits for: all but those that turned out to be itself."""
        return [s for s in self.seeds if s not in self.membership.own_seeds]

    def _note_table(self, msg: Sync | SyncReply) -> None:
        if self.mode == "founding":
            if msg.seed in self.seeds:  # an answer to our Join to that seed
                self._answers[msg.seed] = (msg.src_name, msg.flags)
            return
        wanted = SERVING if self.mode == "joining" else MEMBER
        if not msg.flags & wanted:
            return
        parts = self._table_parts.setdefault(msg.src_name, set())
        parts.add(msg.part)
        self._synced = self._synced or len(parts) >= msg.parts

    def _progress(self, now_ms: int) -> list[m.Effect]:
        if self.mode == "founding":
            return self._found(now_ms)
        if not self._synced or self.table is None:
            return []
        known = self.membership.get
        if self.mode == "rejoining" and not all(known(n) for n in self._expected):
            return []
        return self._begin_serving(now_ms, "joined" if self.mode == "joining" else "rejoined")

    def _found(self, now_ms: int) -> list[m.Effect]:
        """Founding: join a cluster that already lists us; refuse one that does not; found one
        once every seed answered as a newcomer."""
        members = sorted((n, seed, f) for seed, (n, f) in self._answers.items() if f & MEMBER)
        for name, _seed, flags in members:
            if flags & KNEW_YOU:
                self.mode = "joining"
                text = f"seed {name} belongs to a cluster that lists {self.name}: rejoining it"
                text += " instead of founding a new one"
                return [m.Log("info", text, "rejoining", {"seed": name})]
        if members and not self._halted:
            self._halted = True
            name, seed, _ = members[0]
            return [
                m.Halt(
                    f"seed {name} ({seed}) belongs to a cluster that does not list {self.name}: "
                    "--new-cluster founds a cluster only when no seed belongs to one. Start "
                    "without --new-cluster to join that cluster, or give other seeds"
                )
            ]
        if not members and all(s in self._answers for s in self._founding_seeds()):
            return self._begin_serving(now_ms, "founded")
        return []

    def _begin_serving(self, now_ms: int, how: str) -> list[m.Effect]:
        self.mode = "serving"
        if self.table is None:  # founding
            self.table = Table.found(self.name, self.config.partitions, self.config.n)
            self.membership.epoch = self.membership.newest_epoch = self.table.epoch
        self.membership.set_serving(now_ms)
        self._sync_ring()
        self._save_ring(force=True)
        members = ", ".join(self.ring.members())
        text = f"serving: {how} cluster {self.config.cluster!r}, ring of {members}"
        fields = {"how": how, "cluster": self.config.cluster, "members": list(self.ring.members())}
        return [m.Log("info", text, "serving", fields), m.Serving()]

    # --- the ring ------------------------------------------------------------------------------

    def _sync_ring(self) -> None:
        changes = self.membership.drain_changes()
        if not changes:
            return
        self._changes += changes
        self._save_ring()

    def _save_ring(self, force: bool = False) -> None:
        """Remember the table and its members' addresses (which double as seeds after a
        restart). Only a serving node's view is kept: a partial one would let the next start
        serve too early."""
        if not self.serving or self.table is None:
            return
        ring: dict[str, str] = {}
        for name in self.table.members():
            member = self.membership.get(name)
            ring[name] = member.address if member is not None else self.remembered.get(name, "")
        if force or ring != self.remembered:
            packed = msgpack.packb(
                {
                    "table": self.table.to_wire(),
                    "addresses": [[n, a] for n, a in sorted(ring.items())],
                }
            )
            self.storage.write([(RING_KEY, packed)], sync=True)
            self.remembered = ring

    def _report_refusals(self, effects: list[m.Effect]) -> None:
        for sender, reason in self.membership.drain_refusals():
            if reason.startswith("refused: ") and not self.serving and not self._halted:
                self._halted = True
                if self.table is not None and self.name in self.table.leaving + self.table.gone:
                    # It was leaving when it stopped, and the cluster let it go meanwhile.
                    effects += self.membership.leave(0, permanent=True)
                    effects.append(m.Retired(f"{self.name} has left the cluster: {reason[9:]}"))
                else:
                    text = f"{sender} refused to let {self.name} join: {reason[9:]}"
                    effects.append(m.Halt(text))
            elif (sender, reason) not in self._reported:
                self._reported.add((sender, reason))
                effects.append(m.Log("warning", reason, "peer_refused", {"peer": sender}))
