"""Coordinating requests and serving as a replica: quorums, read repair, hinted handoff — pure.

The rules (Dynamo, DeCandia et al. 2007; Riak KV):

* **Who coordinates a write.** Only a member of the key's preference list: a dot's counter must be
  one more than every dot that actor issued for the key, and only a replica keeps every dot it
  issued. Any other node forwards the write to the first live member of the list (``Forward``).
  A forwarded write that reaches a node which, in *its* view, is not a replica either (views
  disagree while membership changes) is passed on once more, then refused; it is never
  coordinated by a non-replica, so W counts replicas only. Each forward carries the time its
  sender still waits, and the coordinator gives up earlier, so the real outcome gets back.
* **Writes.** The coordinator applies ``record.write`` to its local record, stores the result,
  and sends it to the other members of the partition's write list (``Table.write_list``: the
  owners, and while the partition moves its pending or retiring owners too, W needed in each
  list), which merge it with ``reconcile``. It acknowledges the
  client after W replicas stored it (itself included). A replica that is down is replaced by the
  next live node outside the preference list, which keeps a **hint**; when there is none, the
  coordinator keeps the hint itself. When the client is answered, every replica that has not
  stored the write yet gets a hint kept by the coordinator, written before the answer leaves
  (group commit), and dropped if that replica's acknowledgement still comes. Hints kept by the
  coordinator do not count towards W.
* **Hinted handoff.** Hints are delivered to their node when it is up or joining, a few at a
  time (``HINT_WINDOW`` in flight), and dropped once that node acknowledged them — unless the
  hint changed in the meantime (``ring.core.hints``). A hint its node refuses is set aside.
* **Reads.** The coordinator (any node) asks the live members of the preference list, answers
  after R replies with the ``reconcile`` of what it got, keeps collecting until every asked
  replica answered or the timeout, then sends the merged record to every replica whose copy
  differs (**read repair**).
* **One failure, one operation.** A replica record that does not decode counts as no answer
  (logged once, counted) and is rewritten by the read repair; a stored record that does not
  decode under a write fails that write and starts a repair read of the key, which sets it
  aside when no replica has a good copy. Nothing here lets a bad record reach another request.
* **Scans** ask every live member of the table for a page of at most ``limit`` records and about
  ``SCAN_PAGE_BYTES``; the answer is cut at the nearest page that was cut, and at
  ``SCAN_ANSWER_BYTES``, so a page of large values never exceeds a frame.
* **Deletes** are writes of a tombstone. Tombstones are never reaped by this version.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ring.core import messages as m
from ring.core import record as rec
from ring.core import validate
from ring.core.hints import HintStore
from ring.core.layout import DATA, Storage, hint_key
from ring.core.ops import (
    ForwardOp,
    GetOp,
    HintOp,
    Op,
    Origin,
    PutOp,
    ScanOp,
    get_result,
    merge_scan,
)
from ring.core.replica import SCAN_PAGE_BYTES, Replica
from ring.core.table import Table
from ring.core.validate import RequestError
from ring.core.view import View

if TYPE_CHECKING:
    from ring.core.node import NodeConfig

HINT_WINDOW = 256  # hint deliveries in flight per node at most
MAX_FORWARD_HOPS = 1  # a forwarded write may be passed on this many more times
SCAN_ANSWER_BYTES = 8 * 1024 * 1024  # a scan answer holds about this much of keys and values

Report = Callable[[str, str, list[m.Effect]], None]


def forward_budget(timeout_ms: int) -> int:
    """The time a node that received a forward may take, when its sender waits ``timeout_ms``:
    a fifth less (at least 50 ms less), so the answer travels back before the sender gives up."""
    return max(1, timeout_ms - max(50, timeout_ms // 5))


class Coordinator:
    def __init__(
        self,
        config: NodeConfig,
        storage: Storage,
        view: View,
        *,
        actor: str,
        first_op_id: int,
        stats: dict[str, int],
        report: Report,
    ) -> None:
        self.config = config
        self.name = config.name
        self.storage = storage
        self.view = view
        self.actor = actor
        # Every dot this node makes is above this: the highest counter of its actor in a record
        # it reaped (``ring.core.aae``), kept on disk with the actor (``Node``).
        self.floor = 0
        self.stats = stats
        self.report = report
        self.hints = HintStore(storage)
        self.replica = Replica(
            config.name, storage, self.hints, stats=stats, report=report, send=self.send
        )
        self._next_op = first_op_id
        self.ops: dict[int, Op] = {}
        self._deadlines: list[tuple[int, int]] = []
        self._hint_retry_at: dict[str, int] = {}  # target -> no delivery before this time
        self.stale_ops: set[int] = set()  # operations a replica answered Stale: retried later
        self.want_table: dict[str, int] = {}  # peers with a newer table: name -> its epoch
        # Who was answered during the current event, in order: if a piece of work raises, the
        # node takes its effects back and answers these again (with an error), so nobody who
        # was answered in it is left waiting.
        self.answered: list[Origin] = []

    # --- bookkeeping ---------------------------------------------------------------------------

    def new_op(self, op: Op, now_ms: int, timeout_ms: int | None = None) -> int:
        self._next_op += 1
        op_id = self._next_op
        self.ops[op_id] = op
        timeout = self.config.request_timeout_ms if timeout_ms is None else timeout_ms
        heapq.heappush(self._deadlines, (now_ms + timeout, op_id))
        return op_id

    @property
    def last_op_id(self) -> int:
        return self._next_op

    def drop_op(self, op_id: int) -> Op | None:
        op = self.ops.pop(op_id, None)
        if isinstance(op, HintOp):
            self.hints.inflight.discard(op.skey)
        elif isinstance(op, PutOp):
            self._release(op)
        return op

    def fail_op(
        self, op_id: int, op: Op, effects: list[m.Effect], answered: set[Origin] | None = None
    ) -> None:
        """An exception while handling ``op``: drop it and tell whoever waits, unless it was
        answered already (before, or again in ``answered`` after a rollback)."""
        self.drop_op(op_id)
        origin = getattr(op, "origin", None)
        done = getattr(op, "answered", False) or origin in (answered or ())
        if isinstance(origin, Origin) and not done:
            self.answer(origin, "internal", "internal error; see the node log", effects)

    def idle(self) -> bool:
        return not any(
            isinstance(op, PutOp | GetOp | ForwardOp | ScanOp) for op in self.ops.values()
        )

    def send(self, dest: str, msg: Any, effects: list[m.Effect]) -> None:
        address = self.view.address_of(dest)
        if address:  # unknown (or a name that left, known by name only): nowhere to send
            effects.append(m.Send(dest, address, msg))

    def answer(
        self, origin: Origin | None, error: str | None, result: Any, effects: list[m.Effect]
    ) -> None:
        if origin is None:
            return  # a repair read: nobody waits
        self.answered.append(origin)
        if origin.peer is None:
            effects.append(m.Reply(origin.req_id, error, result))
        else:
            self.send(origin.peer, m.ForwardReply(origin.req_id, error, result), effects)

    def fail_quorum(
        self, origin: Origin | None, replied: int, needed: int, what: str, effects: list[m.Effect]
    ) -> None:
        result = {
            "message": f"only {replied} {what}, {needed} needed",
            "replied": replied,
            "needed": needed,
        }
        self.answer(origin, "quorum", result, effects)

    def preference_list(self, key: bytes) -> tuple[str, ...]:
        """Who answers reads of ``key``: its partition's owners."""
        return self.view.preference_list(key)

    @property
    def epoch(self) -> int:
        return self.view.ring.epoch

    # --- get -----------------------------------------------------------------------------------

    def start_get(
        self,
        origin: Origin | None,
        key: bytes,
        r: int,
        versioned: bool,
        now_ms: int,
        effects: list[m.Effect],
        pl: tuple[str, ...] | None = None,
    ) -> None:
        if pl is None:
            pl = self.preference_list(key)
        asked = tuple(n for n in pl if self.view.alive(n))
        if len(asked) < r:
            self.fail_quorum(origin, len(asked), r, "replicas are reachable", effects)
            return
        op = GetOp(origin, key, r, versioned, asked, self.epoch)
        op_id = self.new_op(op, now_ms)
        for node in asked:
            if node == self.name:
                op.replies[node] = self.storage.get(DATA + key)  # checked before it is used
            else:
                self.send(node, m.ReplicaGet(op_id, key, self.epoch), effects)
        self.progress_get(op_id, op, effects)

    def repair(self, key: bytes, now_ms: int, effects: list[m.Effect]) -> None:
        """Read ``key`` from every live replica only to repair them (nobody waits)."""
        self.start_get(None, key, 1, False, now_ms, effects)

    def progress_get(
        self, op_id: int, op: GetOp, effects: list[m.Effect], final: bool = False
    ) -> None:
        if not op.answered and len(op.replies) >= op.r and self._vet(op, effects):
            self.answer(op.origin, None, get_result(op.replies, op.versioned), effects)
            op.answered = True
        if len(op.replies) + len(op.bad) == len(op.asked) or final:
            self._vet(op, effects)  # read repair decodes only replies that differ
            del self.ops[op_id]
            if not op.answered:
                self.fail_quorum(
                    op.origin, len(op.replies), op.r, "replicas replied in time", effects
                )
                op.answered = True
            self._read_repair(op, effects)

    def _vet(self, op: GetOp, effects: list[m.Effect]) -> bool:
        """Set aside (into ``op.bad``) the replies that do not decode; True if R good ones are
        left. Replies that are all the same bytes from two replicas or more are taken as they
        are: each replica checked what it stored when it came from elsewhere
        (its own writes it encoded itself), so only one whose disk damaged it could hold a bad
        copy, and two cannot hold the same damage. That is the usual read, and it checks
        nothing; any other set of replies is checked, each distinct record once."""
        replies = op.replies
        if len(replies) > 1 and len(set(replies.values())) == 1:
            return True
        good: set[bytes] = set()
        for node, raw in list(replies.items()):
            if raw is None or raw in good:
                continue
            if self.replica.checked(node, op.key, raw, effects):
                good.add(raw)
            else:
                del replies[node]
                op.bad.add(node)
        return len(replies) >= op.r

    def _read_repair(self, op: GetOp, effects: list[m.Effect]) -> None:
        raws = set(op.replies.values())
        if len(raws) == 1 and not op.bad:
            return  # every replica that answered holds the same bytes: nothing to repair
        decoded = {n: rec.EMPTY if r is None else rec.decode(r) for n, r in op.replies.items()}
        merged = rec.reconcile_all(decoded.values())
        if merged.is_empty:
            answered = len(op.replies) + len(op.bad)
            everyone = len(op.asked) == answered == len(self.preference_list(op.key))
            if self.name in op.bad and everyone:
                # Every replica answered and none holds a good copy: ours cannot be repaired.
                self.replica.quarantine(DATA + op.key, effects)
            return
        encoded = rec.encode(merged)
        stale = [n for n, got in sorted(decoded.items()) if got != merged] + sorted(op.bad)
        for node in stale:
            self.stats["read_repairs"] += 1
            if node == self.name:
                table = self.view.ring
                if self.name in table.write_list(table.partition_of(op.key)):
                    self.replica.merge(DATA + op.key, encoded, effects)
            else:
                # Routed on the table the read was: a replica that no longer holds the key
                # refuses it (a stale epoch for its partition).
                self.send(node, m.ReplicaPut(0, op.key, encoded, None, op.epoch), effects)

    # --- put / delete --------------------------------------------------------------------------

    def route_write(
        self,
        origin: Origin,
        op: str,
        args: dict[str, Any],
        now_ms: int,
        effects: list[m.Effect],
        *,
        hops: int = 0,
        timeout_ms: int | None = None,
    ) -> None:
        """Coordinate a write if this node is a replica of its key, else pass it on."""
        timeout = self.config.request_timeout_ms if timeout_ms is None else timeout_ms
        key = validate.key(args, self.config.max_key_bytes)
        pl = self.preference_list(key)
        if self.name in pl:
            self._coordinate_write(origin, op, key, args, pl, now_ms, effects, timeout)
            return
        if hops > MAX_FORWARD_HOPS:
            raise RequestError(
                "unavailable",
                f"node {self.name} is not a replica of this key in its view of the ring (the "
                "nodes' views differ while membership changes); retry",
            )
        for node in pl:  # the first replica that serves (a joining one would refuse)
            if node != origin.peer and self.view.membership.may_coordinate(node):
                op_id = self.new_op(ForwardOp(origin, node), now_ms, timeout)
                self.send(node, m.Forward(op_id, op, args, hops, timeout), effects)
                self.stats["forwards"] = self.stats.get("forwards", 0) + 1
                return
        raise RequestError("unavailable", f"all {len(pl)} replicas of this key are down")

    def forwarded(self, src: str, msg: m.Forward, now_ms: int, effects: list[m.Effect]) -> None:
        """A write another node passed on; it gets a ForwardReply in its time budget."""
        origin = Origin(msg.op_id, src)
        args = msg.args if isinstance(msg.args, dict) else {}
        try:
            if msg.op not in ("put", "del", "absorb"):
                raise RequestError("invalid", f"cannot forward {msg.op!r}")
            if not isinstance(msg.hops, int) or not isinstance(msg.timeout_ms, int):
                raise RequestError("invalid", "a forward carries integer hops and timeout_ms")
            self.check_serving()
            # Never longer than our own timeout, whatever the sender says.
            budget = min(forward_budget(msg.timeout_ms), self.config.request_timeout_ms)
            self.route_write(
                origin, msg.op, args, now_ms, effects, hops=msg.hops + 1, timeout_ms=budget
            )
        except RequestError as exc:
            self.answer(origin, exc.kind, str(exc), effects)

    def check_serving(self) -> None:
        if not self.view.serving:
            raise RequestError(
                "unavailable",
                f"node {self.name} does not serve yet (it waits for {self.view.waiting_for()}); "
                "retry shortly or ask another node",
            )

    def _coordinate_write(
        self,
        origin: Origin,
        op: str,
        key: bytes,
        args: dict[str, Any],
        pl: tuple[str, ...],
        now_ms: int,
        effects: list[m.Effect],
        timeout_ms: int,
    ) -> None:
        assert self.name in pl, "only a replica coordinates a write"
        cfg = self.config
        value = validate.value(args, cfg.max_value_bytes) if op == "put" else None
        # The cluster's default W is capped by the replicas that exist (a cluster of one node
        # works with the defaults); a W asked for explicitly is never weakened.
        w = validate.quorum(args, "w", min(cfg.w, len(pl)), cfg.n)
        ctx = validate.context(args)
        if w > len(pl):
            self.fail_quorum(origin, len(pl), w, "replicas exist in this cluster", effects)
            return
        if op == "absorb":
            new = self._absorb(key, args, effects)
        else:
            new = self._write_record(key, value, ctx, now_ms, effects)
        table = self.view.ring
        p = table.partition_of(key)
        put = PutOp(origin, key, w, new, (), acked={self.name}, deadline_ms=now_ms + timeout_ms)
        op_id = self.new_op(put, now_ms, timeout_ms)
        self._replicate(op_id, put, table, p, effects)
        self.progress_put(op_id, put, effects)

    def _absorb(self, key: bytes, args: dict[str, Any], effects: list[m.Effect]) -> bytes:
        """A whole record from elsewhere (a dump being loaded): merged into ours with
        ``reconcile``, and sent as it is to the other replicas, which merge it too."""
        record = args.get("record")
        if not isinstance(record, bytes):
            raise RequestError("invalid", "absorb takes a record (bytes, as a dump holds it)")
        try:
            self.replica.merge(DATA + key, record, effects)
        except ValueError as exc:
            raise RequestError("invalid", f"not a stored record: {exc}") from None
        return record

    def _write_record(
        self,
        key: bytes,
        value: bytes | None,
        ctx: Any,
        now_ms: int,
        effects: list[m.Effect],
    ) -> bytes:
        """The coordinator's new record of a put or delete, stored."""
        raw = self.storage.get(DATA + key)
        try:
            if ctx is None and value is not None:
                new = rec.blind_write_encoded(raw, self.actor, value, now_ms, self.floor)
            else:
                local = rec.EMPTY if raw is None else rec.decode(raw)
                new = rec.encode(rec.write(local, self.actor, value, now_ms, ctx, self.floor))
        except ValueError as exc:
            self.replica.checked(self.name, key, raw, effects)
            self.repair(key, now_ms, effects)
            raise RequestError(
                "corrupt",
                f"the record of this key on {self.name} does not decode ({exc}); it is being "
                "repaired from the other replicas: retry",
            ) from None
        self.replica.store(key, raw, new)
        return new

    def _replicate(
        self, op_id: int, put: PutOp, table: Table, p: int, effects: list[m.Effect]
    ) -> None:
        """Send ``put``'s record to the members of ``p``'s write list that have not stored it,
        or to a fallback for each one that is down (a hint we keep when there is none)."""
        write_list = table.write_list(p)
        put.epoch = table.epoch
        put.groups = table.write_groups(p)
        put.primaries = tuple(n for n in write_list if n != self.name)
        if self.name not in write_list:
            put.acked.discard(self.name)  # our copy goes when we clean the partition up
        put.expected = {n for n in put.expected if n in write_list or n in put.fallbacks}
        covered = self._covered(put)
        replica_put = m.ReplicaPut(op_id, put.key, put.record, None, table.epoch)  # encoded once
        spare: list[str] | None = None  # live nodes outside the write list, when needed
        for node in put.primaries:
            if node in covered or node in put.hinted:
                continue
            if self.view.membership.is_alive(node):
                put.expected.add(node)
                self.send(node, replica_put, effects)
                continue
            if spare is None:
                # Not a node the write went to already (on an older table it may have been a
                # replica: its acknowledgement must not pass for a fallback's).
                used = put.acked | put.expected | put.fallbacks.keys()
                spare = [
                    n
                    for n in table.fallbacks(p)
                    if self.view.alive(n) and n != self.name and n not in used
                ]
            if spare:
                fallback = spare.pop(0)
                put.fallbacks[fallback] = node
                put.expected.add(fallback)
                msg = m.ReplicaPut(op_id, put.key, put.record, node, table.epoch)
                self.send(fallback, msg, effects)
            else:
                put.hinted.add(node)
                self._store_hint(node, put.key, put.record, put.epoch)

    def _covered(self, op: PutOp) -> set[str]:
        """The primaries that hold the write, or whose fallback holds it for them."""
        return {op.fallbacks.get(n, n) for n in op.acked}

    def _quorum(self, op: PutOp) -> bool:
        """W acknowledgements in every list of the write's partition (the owners, and the
        pending owners while it moves)."""
        covered = self._covered(op)
        return all(len(covered.intersection(g)) >= min(op.w, len(g)) for g in op.groups)

    def progress_put(
        self, op_id: int, op: PutOp, effects: list[m.Effect], final: bool = False
    ) -> None:
        if not op.answered and self._quorum(op):
            # Every replica that has not stored the write yet gets a hint now, in the batch
            # the answer waits for: a coordinator that dies after answering loses no replica.
            covered = self._covered(op)
            for node in op.primaries:
                if node not in covered and node not in op.hinted:
                    op.hinted.add(node)
                    op.provisional.add(node)
                    self._store_hint(node, op.key, op.record, op.epoch)
                    self.hints.held.add(hint_key(node, op.key))
            self.answer(op.origin, None, None, effects)
            op.answered = True
        if not (final or op.expected <= op.acked):
            return
        del self.ops[op_id]
        self._release(op)
        # Every replica that did not store the write gets it later through a hint we keep.
        covered = self._covered(op)
        for node in op.primaries:
            if node not in covered and node not in op.hinted:
                self._store_hint(node, op.key, op.record, op.epoch)
        if not op.answered:
            what = "replicas stored the write in time"
            replied = len(self._covered(op))
            if len(op.groups) > 1:  # the partition moves: W are needed in each of its lists
                covered = self._covered(op)
                replied = min(len(covered.intersection(g)) for g in op.groups)
                what += " in one of the replica lists of its moving partition (W in each)"
            self.fail_quorum(op.origin, replied, op.w, what, effects)
            op.answered = True

    def _put_acked(self, op: PutOp, src: str) -> None:
        op.acked.add(src)
        primary = op.fallbacks.get(src, src)
        if primary in op.provisional:
            # The replica stored it after all: the hint written for it is not needed.
            op.provisional.discard(primary)
            if self.hints.matches(primary, op.key, op.record):
                self.hints.drop(primary, op.key)
            else:
                self.hints.held.discard(hint_key(primary, op.key))

    def _release(self, op: PutOp) -> None:
        """The write's request ended: its remaining provisional hints are ordinary hints."""
        for node in op.provisional:
            self.hints.held.discard(hint_key(node, op.key))
        op.provisional.clear()

    def _store_hint(self, target: str, key: bytes, record: bytes, epoch: int) -> None:
        """A hint the coordinator keeps for a replica of a write it coordinates, routed on the
        table of ``epoch`` (the write's)."""
        self.hints.store_own(target, key, record, epoch)
        self.stats["hints_stored"] += 1

    # --- scan ----------------------------------------------------------------------------------

    def start_scan(
        self, origin: Origin, args: dict[str, Any], now_ms: int, effects: list[m.Effect]
    ) -> None:
        self.scan_parsed(origin, validate.scan(args), now_ms, effects)

    def scan_parsed(
        self,
        origin: Origin,
        parsed: tuple[bytes | None, bytes | None, bool, int],
        now_ms: int,
        effects: list[m.Effect],
    ) -> None:
        start, stop, reverse, limit = parsed
        table = self.view.ring
        asked = tuple(n for n in table.members() if self.view.alive(n))
        needed = self._scan_quorum()
        owning = set(table.owning())
        if sum(1 for n in asked if n in owning) < needed:
            self.fail_quorum(
                origin, len(asked), needed, "owners are reachable to cover every key", effects
            )
            return
        op = ScanOp(origin, (start, stop, reverse, limit), asked)
        op_id = self.new_op(op, now_ms)
        for node in asked:
            if node == self.name:
                op.replies[node] = self.replica.scan(start, stop, reverse, limit, SCAN_PAGE_BYTES)
            else:
                msg = m.ScanRequest(op_id, start, stop, reverse, limit, SCAN_PAGE_BYTES, self.epoch)
                self.send(node, msg, effects)
        self.progress_scan(op_id, op, effects)

    def _scan_quorum(self) -> int:
        """Owners that must answer a scan so that every key has a replica among them."""
        return max(1, len(self.view.ring.owning()) - self.config.n + 1)

    def progress_scan(
        self, op_id: int, op: ScanOp, effects: list[m.Effect], final: bool = False
    ) -> None:
        if len(op.replies) < len(op.asked) and not final:
            return
        del self.ops[op_id]
        needed = self._scan_quorum()
        owning = set(self.view.ring.owning())
        if sum(1 for n in op.replies if n in owning) < needed:
            self.fail_quorum(
                op.origin, len(op.replies), needed, "nodes answered the scan in time", effects
            )
            return
        _, _, reverse, limit = op.args
        result, corrupt = merge_scan(list(op.replies.values()), reverse, limit, SCAN_ANSWER_BYTES)
        if corrupt:
            self.stats["corrupt_records"] = self.stats.get("corrupt_records", 0) + corrupt
            self.report(
                "corrupt:scan",
                f"a scan skipped {corrupt} record(s) that do not decode "
                "(the other replicas of their keys answered)",
                effects,
            )
        self.answer(op.origin, None, result, effects)

    # --- replies -------------------------------------------------------------------------------

    def reply(self, src: str, msg: Any, now_ms: int, effects: list[m.Effect]) -> None:
        """An answer from a peer to one of our operations (late or duplicate ones are dropped)."""
        op_id = getattr(msg, "op_id", None)
        op = self.ops.get(op_id) if isinstance(op_id, int) else None
        if op is None:
            return
        assert isinstance(op_id, int)
        if isinstance(msg, m.ReplicaPutAck) and isinstance(op, PutOp):
            if msg.ok is True and (src in op.primaries or src in op.fallbacks):
                self._put_acked(op, src)
            self.progress_put(op_id, op, effects)
        elif isinstance(msg, m.ReplicaPutAck) and isinstance(op, HintOp):
            if src != op.target:
                return  # an ack for a hint counts only from the node the hint is for
            self.drop_op(op_id)
            if msg.ok is True and self.hints.matches(op.target, op.key, op.encoded):
                self.hints.drop(op.target, op.key)
                self.stats["hints_delivered"] += 1
            elif msg.ok is not True and self.hints.matches(op.target, op.key, op.encoded):
                # The target refused the record itself: retrying cannot help. Set it aside.
                self.hints.quarantine(op.target, op.key)
                self.stats["hints_refused"] = self.stats.get("hints_refused", 0) + 1
                text = f"{op.target} refused a hint ({m.key_ref(op.key)}); it was set aside"
                self.report(f"hint-refused:{op.target}", text, effects)
        elif isinstance(msg, m.ReplicaGetReply) and isinstance(op, GetOp):
            if src in op.asked and src not in op.replies and src not in op.bad:
                raw = msg.record
                if raw is not None and not isinstance(raw, bytes):
                    op.bad.add(src)
                else:
                    op.replies[src] = raw  # checked by _vet before it is used
                self.progress_get(op_id, op, effects)
        elif isinstance(msg, m.ScanReply) and isinstance(op, ScanOp):
            if src in op.asked and src not in op.replies and isinstance(msg.items, list):
                op.replies[src] = (msg.items, msg.more is not False)
                self.progress_scan(op_id, op, effects)
        elif isinstance(msg, m.Stale):
            self.on_stale(src, msg)
        elif isinstance(msg, m.ForwardReply) and isinstance(op, ForwardOp):
            if src != op.dest:
                return
            del self.ops[op_id]
            self.answer(op.origin, msg.error, msg.result, effects)

    # --- timers --------------------------------------------------------------------------------

    def due(self, now_ms: int) -> list[tuple[int, Op]]:
        """The operations whose deadline has passed (each to be expired on its own)."""
        out: list[tuple[int, Op]] = []
        while self._deadlines and self._deadlines[0][0] <= now_ms:
            _, op_id = heapq.heappop(self._deadlines)
            op = self.ops.get(op_id)
            if op is not None:
                out.append((op_id, op))
        return out

    def expire(self, op_id: int, op: Op, now_ms: int, effects: list[m.Effect]) -> None:
        if isinstance(op, GetOp):
            self.progress_get(op_id, op, effects, final=True)
        elif isinstance(op, PutOp):
            self.progress_put(op_id, op, effects, final=True)
        elif isinstance(op, ScanOp):
            self.progress_scan(op_id, op, effects, final=True)
        elif isinstance(op, ForwardOp):
            del self.ops[op_id]
            self.answer(
                op.origin, "timeout", f"node {op.dest} did not answer the forwarded write", effects
            )
        else:
            self.drop_op(op_id)
            self._hint_retry_at[op.target] = now_ms + self.config.hint_retry_ms

    def hint_targets(self, now_ms: int) -> list[str]:
        """Targets to hand hints to now: up (or joining), or no longer in the ring (their hints
        go to the key's owners), and not waiting out a retry pause."""
        if len(self.hints.inflight) >= HINT_WINDOW:
            return []
        if self.view.table is None:
            return []  # no hints are handed on before the node has a table
        healthy = self.view.membership.is_healthy
        members = set(self.view.table.members())
        return [
            t
            for t in self.hints.targets()
            if t != self.name
            and (healthy(t) or t not in members)  # hints for a member gone are retargeted
            and now_ms >= self._hint_retry_at.get(t, 0)
        ]

    def deliver_hints(self, target: str, now_ms: int, effects: list[m.Effect]) -> None:
        """Send the next hints of ``target``, as many as the window allows. A target whose hints
        were all sent rests for ``hint_retry_ms`` (what is left is waiting to be acknowledged, or
        will be retried)."""
        room = HINT_WINDOW - len(self.hints.inflight)
        if room <= 0:
            return
        batch = self.hints.batch(target, room)
        table = self.view.ring
        for skey, key, raw in batch:
            p = table.partition_of(key)
            if self.hints.epoch_of(target, key) < table.changed[p]:
                # The partition's lists changed since the hint was made: a member that copied
                # the partition from its target may have passed this key already, or the
                # target may hold it no more. Every member of its lists gets the hint.
                self._retarget(target, key, raw, table.write_list(p), effects)
                continue
            op_id = self.new_op(HintOp(skey, raw, target, key), now_ms)
            self.hints.inflight.add(skey)
            self.send(target, m.ReplicaPut(op_id, key, raw, None, self.epoch), effects)
        if len(batch) < room:
            self._hint_retry_at[target] = now_ms + self.config.hint_retry_ms

    def _retarget(
        self, target: str, key: bytes, raw: bytes, owners: tuple[str, ...], effects: list[m.Effect]
    ) -> None:
        """A hint whose partition changed while it waited goes to every member of its lists
        (its target included, if it still is one), routed on the current table. One that does
        not decode is set aside instead (no member would take it)."""
        try:
            rec.check_encoded(raw)
        except ValueError:
            self.hints.quarantine(target, key)
            self.stats["hints_refused"] = self.stats.get("hints_refused", 0) + 1
            return
        self.hints.drop(target, key)
        self._spread(key, raw, owners, effects)
        self.stats["hints_retargeted"] = self.stats.get("hints_retargeted", 0) + 1

    def _spread(
        self, key: bytes, raw: bytes, nodes: tuple[str, ...], effects: list[m.Effect]
    ) -> None:
        """Give ``nodes`` a hinted record: merged into ours if we are one of them, a hint for
        each of the others. Merging is idempotent, so nobody can end up with less."""
        for node in nodes:
            if node == self.name:
                self.replica.merge(DATA + key, raw, effects)
            else:
                self.hints.store(node, key, raw, self.epoch)

    # --- a newer table -------------------------------------------------------------------------

    def on_stale(self, src: str, msg: m.Stale) -> None:
        """A replica's answer: our request was routed on an older table. The operation is
        retried once the newer table is here (``retry_stale``)."""
        if isinstance(msg.op_id, int) and msg.op_id in self.ops:
            self.stale_ops.add(msg.op_id)
        if isinstance(msg.epoch, int):
            self.want_table[src] = max(self.want_table.get(src, 0), msg.epoch)

    def retry_stale(self, now_ms: int, effects: list[m.Effect]) -> None:
        """Retry, on the table we now have, the operations a replica found stale."""
        table = self.view.ring
        for op_id in sorted(self.stale_ops):
            op = self.ops.get(op_id)
            if isinstance(op, HintOp):
                # Its target's view of the partition differs: the next round gives the hint to
                # every member of the partition's lists (as one whose epoch is unknown).
                self.drop_op(op_id)
                self.hints.forget_epoch(op.target, op.key)
            elif isinstance(op, GetOp) and not op.answered:
                del self.ops[op_id]
                self.start_get(op.origin, op.key, op.r, op.versioned, now_ms, effects)
            elif isinstance(op, PutOp):
                # A new id: an acknowledgement of a message sent on the old table (perhaps as a
                # replica, to a node that is now a fallback) must not count for the new one.
                del self.ops[op_id]
                new_id = self.new_op(op, now_ms, max(1, op.deadline_ms - now_ms))
                self._replicate(new_id, op, table, table.partition_of(op.key), effects)
                self.progress_put(new_id, op, effects)
            elif isinstance(op, ScanOp):
                del self.ops[op_id]
                self.scan_parsed(op.origin, op.args, now_ms, effects)
        self.stale_ops.clear()

    def target_is_back(self, target: str) -> None:
        self._hint_retry_at.pop(target, None)
