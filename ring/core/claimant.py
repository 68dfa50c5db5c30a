"""The claimant: the one member that makes the cluster's next ownership table — pure.

Tables must never fork: two nodes that each moved a partition on their own table could each
think the other's copy is the one to delete. So one member, named in the table (``claimant``),
makes every new table (Riak's claimant), and the others take the newest table they hear of:

* **joins**: a member that serves (gossip says ``up``) and that no list names is added;
* **leave** and **remove** requests reach the claimant from any node (a ``Forward`` of the
  client's request); it checks them, plans, and answers what will move;
* **reports**: a receiver that copied a partition (``TransferDone``) and an old holder that
  deleted its copy (``CleanupDone``) tell the claimant, which switches the partition or ends
  its transfer;
* **retiring** old lists: a switched partition's old owners stop getting writes once each that
  is alive has gossiped the epoch of the switch (``Membership.peer_epochs``);
* a leaving or removed member that no list names any more goes to ``gone``.

Changes that arrive while a plan is under way are merged into it (``Draft.plan`` starts from the
pending lists), never run beside it. The claimant publishes at most one table per
``PUBLISH_MS``: each carries every change since the previous one.

If the claimant is down, tables stop changing (joins wait, transfers finish but do not switch)
until it is back — or until it is removed: ``remove`` of a claimant that is not alive makes the
node that took the request the claimant, with an epoch above every epoch it has heard of. A
claimant that leaves hands the role to the first remaining member in the table that retires it.
"""

from __future__ import annotations

from typing import Any

from ring.core.membership import UP, Membership
from ring.core.table import Draft, Table
from ring.core.validate import RequestError

PUBLISH_MS = 100  # the claimant makes at most one table per this many milliseconds


class Claimant:
    def __init__(self, name: str) -> None:
        self.name = name
        self._done: list[tuple[int, str, int]] = []  # (partition, receiver, epoch)
        self._cleaned: list[tuple[int, str, int]] = []  # (partition, holder, epoch)
        self._next_publish_ms = 0

    # --- reports -------------------------------------------------------------------------------

    def transfer_done(self, receiver: str, epoch: int, partitions: list[int]) -> None:
        self._done += [(p, receiver, epoch) for p in partitions if isinstance(p, int)]

    def cleanup_done(self, holder: str, epoch: int, partitions: list[int]) -> None:
        self._cleaned += [(p, holder, epoch) for p in partitions if isinstance(p, int)]

    # --- requests ------------------------------------------------------------------------------

    def change(
        self,
        kind: str,
        name: str,
        table: Table,
        membership: Membership,
        newest_heard: int,
    ) -> tuple[Table, dict[str, Any]]:
        """A ``leave`` or ``remove`` of ``name``: the next table and what will move.
        ``RequestError`` ("invalid") for a name that is not a member, or a change that cannot be
        made; ("unavailable") when this node cannot make it now."""
        if kind not in ("leave", "remove"):
            raise RequestError("invalid", f"unknown ring change {kind!r}")
        if name in table.gone:
            raise RequestError("invalid", f"{name} has left the cluster already")
        if name not in table.members():
            known = ", ".join(table.target_members())
            raise RequestError("invalid", f"{name} is not a member of the ring (members: {known})")
        member = membership.get(name)
        alive = name == self.name or (member is not None and member.state in ("up", "joining"))
        draft = Draft(table)
        if table.claimant != self.name:
            # Only a removal of a claimant that is gone lets another node take the role.
            if not (kind == "remove" and name == table.claimant and not alive):
                raise RequestError(
                    "unavailable", f"{table.claimant} makes ring changes; ask it (or retry)"
                )
            if newest_heard > table.epoch:
                raise RequestError(
                    "unavailable",
                    f"this node's table (epoch {table.epoch}) is behind the cluster's (epoch "
                    f"{newest_heard}); retry in a moment",
                )
            draft.claimant = self.name
            draft.dirty = True
        if kind == "remove" and alive:
            raise RequestError(
                "invalid",
                f"{name} is alive (gossip says {member.state if member else 'up'}): stop it "
                "first, or use `ringctl leave` to hand its data off",
            )
        if kind == "leave" and name in table.leaving:
            raise RequestError("invalid", f"{name} is leaving already")
        if name in table.removed:
            raise RequestError("invalid", f"{name} is removed already")
        if kind == "leave":
            draft.leaving.append(name)
        else:
            draft.remove(name)
        target = [x for x in table.target_members() if x not in draft.leaving + draft.removed]
        if not target:
            raise RequestError("invalid", f"{name} is the last member: it cannot {kind}")
        draft.dirty = True
        moved = draft.plan(target)
        retired = draft.retire()
        if self.name in retired or draft.claimant in draft.gone:
            draft.claimant = min(target)
        new = draft.finish()
        result: dict[str, Any] = {
            "name": name,
            "change": kind,
            "epoch": new.epoch,
            "moves": moved,
            "members": list(new.target_members()),
            "transfers_pending": new.transfers_pending(),
        }
        if len(target) < table.n:
            result["warning"] = (
                f"{len(target)} member(s) remain, fewer than N={table.n}: each key is kept on "
                f"{len(target)} node(s)"
            )
        return new, result

    # --- the next table ------------------------------------------------------------------------

    def tick(self, now_ms: int, table: Table, membership: Membership) -> Table | None:
        """The next table, if anything changed and it is time to publish one."""
        if table.claimant != self.name:
            self._done.clear()  # reports meant for the claimant it is not (or not yet)
            self._cleaned.clear()
            return None
        if now_ms < self._next_publish_ms:
            return None
        draft = Draft(table)
        for p, receiver, epoch in self._done:
            if 0 <= p < table.partitions:
                draft.complete(p, receiver, epoch)
        for p, holder, epoch in self._cleaned:
            if 0 <= p < table.partitions and epoch >= table.changed[p]:
                draft.cleaned(p, holder)
        self._done.clear()
        self._cleaned.clear()
        # A switched partition's old owners stop getting writes once each one that is alive has
        # the table that switched it (from then on it refuses requests routed on the old one).
        epochs = membership.peer_epochs
        for p, old in sorted(table.retiring.items()):
            need = table.changed[p]
            if all(
                x == self.name or not membership.is_alive(x) or epochs.get(x, 0) >= need
                for x in old
            ):
                draft.retire_old(p)
        known = set(table.members()) | set(table.gone)
        joins = [x.name for x in membership.members() if x.state == UP and x.name not in known]
        if joins:
            target = set(table.target_members()) - set(table.leaving) - set(table.removed)
            draft.plan(sorted(target | set(joins)))
        retired = draft.retire()
        if draft.claimant in retired:
            remaining = [x for x in draft._view().target_members() if x not in draft.leaving]
            if remaining:
                draft.claimant = min(remaining)
        new = draft.finish()
        if new is table:
            return None
        self._next_publish_ms = now_ms + PUBLISH_MS
        return new
