"""A ringkv node — pure: ``Node.handle(event, now_ms) -> effects``.

It takes an event (a client request, a message from a peer, a gossip datagram, a tick) and
returns effects (messages to send, replies, log lines; ``ring.core.messages.Effect``). The only
things it is handed are the local ``Storage`` (synchronous; a write is durable once the shell
commits it, before any effect of the same event leaves), the time and a seeded random source, so
``ringd`` and the simulator run exactly this code.

The node is cut by job:

* ``ring.core.view``: membership, the ring, and whether the node may serve (how a node founds,
  joins or rejoins a cluster, and why it never serves on a view it made up);
* ``ring.core.validate``: what a client may ask;
* ``ring.core.coordinator``: quorum reads and writes, forwarding, scans, read repair, and the
  handing of hints to their nodes;
* ``ring.core.replica``: the replica side — storing, answering and scanning what peers send or
  ask for, and which records are usable;
* ``ring.core.hints``: hints kept for other nodes, indexed by target.

This module keeps the node's identity and dispatches events, **one failure, one operation**: an
exception while handling one request, one peer message, one expiring operation or one hint
takes back the effects of that piece of work only (and fails that request, answering its client
with an ``internal`` error), is counted (``errors``) and logged once per kind; every other
effect of the same event still happens. Storage writes the failed piece already made stay (a
failed write may still have happened, as with any error a client sees).

**Identity.** A data directory's actor is the node name plus an epoch made when the directory
was created; a wiped directory gets a new one, so a node never reuses a counter (kv679). A node
also takes a new epoch when its last run ended without a clean stop (``RUNNING_KEY`` still set)
and did not fsync every write: its newest acknowledged writes may then be lost from its disk (an
acknowledgement means "in the write-ahead log", which a power loss can cut short), and reusing
their dots would let a new write pass for one a replica already holds. The price is one more
actor in the clocks of the keys it writes afterwards (pruned above
``record.MAX_CONTEXT_ACTORS``). With ``sync`` every acknowledged write is on disk, and the
epoch stays. And it takes a new epoch before it deletes its copy of partitions that moved away
(``ring.core.handoff``): a partition that comes back is copied from replicas that may lack its
newest writes of a key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ring.common import MAX_KEY_BYTES, MAX_VALUE_BYTES
from ring.core import messages as m
from ring.core import record as rec
from ring.core import validate
from ring.core.aae import AntiEntropy
from ring.core.claimant import Claimant
from ring.core.coordinator import Coordinator
from ring.core.handoff import Handoff, page
from ring.core.layout import ACTOR_KEY, FLOOR_KEY, RUNNING_KEY, Storage
from ring.core.membership import MAX_FIELD_BYTES, Membership, MembershipConfig, RandomSource
from ring.core.ops import ForwardOp, Origin
from ring.core.table import Table
from ring.core.validate import RequestError
from ring.core.view import StartupError, View, ViewConfig

HELD_MAX = 10_000  # replica requests held for a newer table, at most
HELD_MS = 2_000  # a held request not served by then is dropped (its sender times out)
TABLE_ASK_MS = 500  # a peer is asked for its table at most this often

__all__ = ["Node", "NodeConfig", "NodeRandom", "RequestError", "StartupError"]


class NodeRandom(RandomSource, Protocol):
    """The part of ``random.Random`` a node uses; the shell passes a seeded ``random.Random``."""

    def getrandbits(self, k: int) -> int: ...


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    address: str
    cluster: str = "ringkv"
    seeds: tuple[str, ...] = ()
    new_cluster: bool = False  # found a cluster if the data directory holds none (see view)
    n: int = 3
    r: int = 2
    w: int = 2
    partitions: int = 1024
    handoff_rate_mb_s: float = 32.0  # partition transfers are throttled to this, per receiver
    aae_interval_ms: int = 60_000  # every partition is compared with each co-replica this often
    tombstone_grace_ms: int = 86_400_000  # a tombstone is kept at least this long after the delete
    aae_rebuild_ms: int = 3_600_000  # trees are rebuilt from the disk this often (0: never)
    request_timeout_ms: int = 2000
    tick_ms: int = 20
    hint_retry_ms: int = 500
    sync: bool = False  # every write is fsynced before it is acknowledged
    max_key_bytes: int = MAX_KEY_BYTES
    max_value_bytes: int = MAX_VALUE_BYTES
    membership: MembershipConfig = field(default_factory=MembershipConfig)

    def __post_init__(self) -> None:
        if not 1 <= self.r <= self.n or not 1 <= self.w <= self.n:
            raise ValueError(f"need 1 <= R, W <= N (got N={self.n} R={self.r} W={self.w})")
        if self.aae_interval_ms < 1 or self.tombstone_grace_ms < 0 or self.aae_rebuild_ms < 0:
            raise ValueError("the anti-entropy interval is positive, the grace not negative")

    def view_config(self) -> ViewConfig:
        return ViewConfig(
            name=self.name,
            address=self.address,
            cluster=self.cluster,
            seeds=self.seeds,
            new_cluster=self.new_cluster,
            n=self.n,
            partitions=self.partitions,
            membership=self.membership,
        )


class Node:
    def __init__(
        self,
        config: NodeConfig,
        storage: Storage,
        *,
        now_ms: int,
        rng: NodeRandom,
        incarnation: int = 0,
    ) -> None:
        self.config = config
        self.name = config.name
        self.storage = storage
        self.rng = rng
        self.stats: dict[str, int] = {
            "read_repairs": 0,
            "hints_stored": 0,
            "hints_delivered": 0,
            "errors": 0,
        }
        self._reported: set[str] = set()
        self._pending_logs: list[m.Effect] = []
        # The view first: it refuses to start from nothing before anything is written.
        self.view = View(config.view_config(), storage, now_ms=now_ms, incarnation=incarnation)
        self.actor = self._load_actor()
        # Op ids start at a random offset so that a late reply meant for a previous incarnation
        # of this node cannot be taken for a reply to a new request.
        self.coordinator = Coordinator(
            config,
            storage,
            self.view,
            actor=self.actor,
            first_op_id=rng.getrandbits(40) << 16,
            stats=self.stats,
            report=self._report,
        )
        self.claimant = Claimant(config.name)
        self.handoff = Handoff(
            config.name,
            storage,
            rate_bytes_s=int(config.handoff_rate_mb_s * 1_000_000),
            first_op_id=rng.getrandbits(40) << 16,
            send=self.coordinator.send,
            merge=self.coordinator.replica.merge,
            delete=self.coordinator.replica.delete,
            hold_cleanup=self._hints_to_hand_off,
            on_delete=self._renew_actor,
        )
        rate = int(config.handoff_rate_mb_s * 1_000_000)
        self.aae = AntiEntropy(
            config.name,
            storage,
            partitions=config.partitions,
            interval_ms=config.aae_interval_ms,
            grace_ms=config.tombstone_grace_ms,
            rebuild_ms=config.aae_rebuild_ms,
            rate_bytes_s=rate,
            first_op_id=rng.getrandbits(40) << 16,
            now_ms=now_ms,
            send=self.coordinator.send,
            merge=self.coordinator.replica.merge,
            delete=self._reap_records,
            jitter=lambda n: self.rng.getrandbits(32) % max(1, n),
            hinted=self.coordinator.hints.holds,
        )
        self.coordinator.replica.on_change = self.aae.trees.update
        self.coordinator.floor = self._load_floor()
        self._held: list[tuple[int, str, Any]] = []  # (since, src, msg) waiting for a table
        self._table_asked: dict[str, tuple[int, int]] = {}  # peer -> (epoch, when)
        self._retired = False
        self._retire_logged = False
        if self.view.table is not None:
            self.handoff.refresh(self.view.table)
            self.aae.refresh(self.view.table)

    # --- identity ------------------------------------------------------------------------------

    def _load_actor(self) -> str:
        """This data directory's actor (see the module docstring for when it changes), and the
        mark that the node runs (removed by a clean ``stop``)."""
        raw = self.storage.get(ACTOR_KEY)
        running = self.storage.get(RUNNING_KEY)
        if raw is not None and running != b"0":
            actor = raw.decode()
        else:
            actor = f"{self.name}@{self.rng.getrandbits(48):012x}"
            self.storage.write([(ACTOR_KEY, actor.encode())], sync=True)
            if raw is not None:
                self._pending_logs.append(
                    m.Log(
                        "warning",
                        f"the last run of {self.name} ended without a clean stop and without "
                        f"--sync: it may have lost its newest writes, so it writes as {actor} "
                        "from now on (a new actor epoch; no counter of the old one is reused)",
                        "actor_renewed",
                        {"actor": actor, "why": "unclean_stop"},
                    )
                )
        flag = b"1" if self.config.sync else b"0"
        self.storage.write([(RUNNING_KEY, flag)], sync=True)
        return actor

    def _load_floor(self) -> int:
        raw = self.storage.get(FLOOR_KEY)
        if raw is None:
            return 0
        actor, _, counter = raw.decode(errors="replace").rpartition(" ")
        return int(counter) if actor == self.actor and counter.isdigit() else 0

    def _reap_records(self, items: list[tuple[bytes, bytes]]) -> None:
        """Delete reaped tombstones; first raise the floor of our dots above every counter of
        our actor they held, in the same write (a replica that missed the reap still holds
        them, and must not take a new write of ours for one it has seen)."""
        c = self.coordinator
        top = c.floor
        for _, raw in items:
            try:
                flat = rec.decode_head(raw)[1]
            except ValueError:
                continue
            for actor, n in zip(flat[0::2], flat[1::2]):
                if actor == self.actor and type(n) is int and n > top:
                    top = n
        puts: list[tuple[bytes, bytes]] = []
        if top > c.floor:
            c.floor = top
            puts.append((FLOOR_KEY, f"{self.actor} {top}".encode()))
        self.storage.write(puts, [skey for skey, _ in items])
        for skey, raw in items:
            c.replica.on_change(skey[1:], raw, None)

    def _renew_actor(self) -> None:
        """A new actor epoch, before the node deletes a copy of partitions that moved away
        (``ring.core.handoff``): counters of the old one are never issued again."""
        self.actor = f"{self.name}@{self.rng.getrandbits(48):012x}"
        self.storage.write([(ACTOR_KEY, self.actor.encode())], sync=True)
        self.coordinator.actor = self.actor
        self.coordinator.floor = 0  # a new actor has issued no counter yet
        self.stats["actor_renewals"] = self.stats.get("actor_renewals", 0) + 1

    # --- the parts, as tests and the simulator look at them -----------------------------------

    @property
    def membership(self) -> Membership:
        return self.view.membership

    @property
    def ring(self) -> Table:
        return self.view.ring

    @property
    def table(self) -> Table | None:
        return self.view.table

    def ready(self) -> bool:
        """Whether the node serves: it knows the whole ring and may coordinate requests."""
        return self.view.serving

    def preference_list(self, key: bytes) -> tuple[str, ...]:
        """The owners of ``key``'s partition (none before the node has a table)."""
        if self.view.table is None:
            return ()
        return self.coordinator.preference_list(key)

    def idle(self) -> bool:
        return self.coordinator.idle()

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, now_ms: int) -> list[m.Effect]:
        effects, self._pending_logs = self._pending_logs, []
        effects += self.view.start(now_ms)
        self._after_view(effects)
        return effects

    def stop(self, now_ms: int) -> list[m.Effect]:
        """Graceful shutdown: tell the peers this node is going down (not leaving the ring),
        and mark the stop clean (the next start keeps the actor)."""
        effects = self.view.stop(now_ms)
        self.storage.write((), [RUNNING_KEY], sync=True)
        return effects

    # --- dispatch ------------------------------------------------------------------------------

    def handle(self, event: Any, now_ms: int) -> list[m.Effect]:
        effects: list[m.Effect] = []
        kind = type(event)
        self.coordinator.answered.clear()
        self.aae.trees.now_ms = now_ms
        if kind is m.Tick:
            self._tick(now_ms, effects)  # several pieces of work, each isolated on its own
            return effects
        # Any other event is one piece of work (one request, one message, one datagram).
        last_op = self.coordinator.last_op_id
        try:
            if kind is m.PeerMessage:
                self._peer_message(event.src, event.msg, now_ms, effects)
            elif kind is m.ClientRequest:
                self._client_request(event, now_ms, effects)
            elif kind is m.Datagram:
                effects += self.view.datagram(event.src, event.msg, now_ms, self.rng)
                self._after_view(effects)
                self._ask_tables(now_ms, effects)  # a newer epoch was gossiped
            else:
                raise TypeError(f"unknown event {event!r}")
        except Exception as exc:
            answered = self._failed(exc, _what(event), 0, last_op, 0, effects)
            self._after_failure(event, effects, answered)
        return effects

    def _isolated(
        self,
        effects: list[m.Effect],
        what: str,
        work: Callable[[], None],
        on_error: Callable[[list[m.Effect], set[Origin]], None] | None = None,
    ) -> None:
        """Run one piece of work; if it raises, take back its effects and operations only."""
        c = self.coordinator
        mark, last_op, answers = len(effects), c.last_op_id, len(c.answered)
        try:
            work()
        except Exception as exc:
            answered = self._failed(exc, what, mark, last_op, answers, effects)
            if on_error is not None:
                on_error(effects, answered)

    def _failed(
        self,
        exc: Exception,
        what: str,
        mark: int,
        last_op: int,
        answers: int,
        effects: list[m.Effect],
    ) -> set[Origin]:
        """Take back the effects (from ``mark``) and the operations (after ``last_op``) of a
        piece of work that raised; whoever it had answered gets an error instead (returned);
        count it, and log it once per kind."""
        c = self.coordinator
        del effects[mark:]
        for op_id in [i for i in c.ops if i > last_op]:
            c.drop_op(op_id)
        rolled_back = list(dict.fromkeys(c.answered[answers:]))
        del c.answered[answers:]
        for origin in rolled_back:
            c.answer(origin, "internal", "internal error; see the node log", effects)
        self.stats["errors"] += 1
        self._report(
            f"error:{what}:{type(exc).__name__}",
            f"{what} failed ({type(exc).__name__}: {exc}); only that operation is affected",
            effects,
            level="error",
        )
        return set(rolled_back)

    def _after_failure(self, event: Any, effects: list[m.Effect], answered: set[Origin]) -> None:
        """Tell whoever waits for the failed event's outcome that it failed (unless the
        rollback answered them already)."""
        c = self.coordinator
        if type(event) is m.ClientRequest:
            if Origin(event.req_id) not in answered:
                c.answer(
                    Origin(event.req_id), "internal", "internal error; see the node log", effects
                )
            return
        if type(event) is not m.PeerMessage:
            return
        src, msg = event.src, event.msg
        op_id = getattr(msg, "op_id", None)
        if not isinstance(op_id, int):
            return
        if isinstance(msg, m.ReplicaPut):
            if op_id:
                c.send(src, m.ReplicaPutAck(op_id, False), effects)
        elif isinstance(msg, m.Forward):
            if Origin(op_id, src) not in answered:
                error = "internal error; see the node log"
                c.answer(Origin(op_id, src), "internal", error, effects)
        elif not isinstance(msg, m.ReplicaGet | m.ScanRequest):
            op = c.ops.get(op_id)  # a reply to one of our operations: that operation fails
            if op is not None:
                c.fail_op(op_id, op, effects, answered)

    def _report(
        self, kind: str, text: str, effects: list[m.Effect], level: str = "warning"
    ) -> None:
        """Log ``text`` the first time something of ``kind`` happens (callers count each)."""
        if kind not in self._reported:
            self._reported.add(kind)
            event = kind.split(":", 1)[0].replace("-", "_")
            text += " (logged once; see the counters)"
            effects.append(m.Log(level, text, event, {"kind": kind}))

    def _after_view(self, effects: list[m.Effect]) -> None:
        for name, epoch in self.view.membership.drain_newer().items():
            want = self.coordinator.want_table
            want[name] = max(want.get(name, 0), epoch)
        for name, old, new in self.view.drain_changes():
            text = f"member {name}: {old or 'new'} -> {new}"
            fields = {"member": name, "from": old or "new", "to": new}
            effects.append(m.Log("info", text, "member_state", fields))
            if new in ("up", "joining") and name != self.name:
                self.coordinator.target_is_back(name)  # hand it its hints at once

    # --- client requests -----------------------------------------------------------------------

    def _client_request(self, req: m.ClientRequest, now_ms: int, effects: list[m.Effect]) -> None:
        origin = Origin(req.req_id)
        try:
            self._client(origin, req.op, req.args, now_ms, effects)
        except RequestError as exc:
            self.coordinator.answer(origin, exc.kind, str(exc), effects)

    def _client(
        self, origin: Origin, op: str, raw_args: Any, now_ms: int, effects: list[m.Effect]
    ) -> None:
        args: dict[str, Any] = raw_args if isinstance(raw_args, dict) else {}
        c = self.coordinator
        if op in ("get", "getv", "put", "del", "scan", "absorb"):
            c.check_serving()
        if op in ("get", "getv"):
            key = validate.key(args, self.config.max_key_bytes)
            # The default R is capped by the replicas that exist, as W is.
            pl = c.preference_list(key)
            if self.name not in pl:
                # A read coordinated off its replicas asks N remote nodes instead of N-1: what a
                # client that routes by the table saves (``ring.net.routing``).
                self.stats["reads_not_replica"] = self.stats.get("reads_not_replica", 0) + 1
            r = validate.quorum(args, "r", min(self.config.r, len(pl)), self.config.n)
            c.start_get(origin, key, r, op == "getv", now_ms, effects, pl)
        elif op in ("put", "del", "absorb"):
            c.route_write(origin, op, args, now_ms, effects)
        elif op == "records":
            c.check_serving()
            c.answer(origin, None, self._records(args), effects)
        elif op == "scan":
            c.start_scan(origin, args, now_ms, effects)
        elif op == "status":
            c.answer(origin, None, self.status(now_ms), effects)
        elif op == "ring":
            since = args.get("since")
            if args.get("table") is True and self.view.serving:
                # A smart client's table check (``route_table``): cheap when nothing changed.
                routes = self.route_table(since if isinstance(since, int) else None)
                if "owners" not in routes:
                    info: dict[str, Any] = {"epoch": routes["epoch"], "table": routes}
                else:
                    info = {**self.ring_info(), "table": routes}
            else:
                info = self.ring_info()
            c.answer(origin, None, info, effects)
        elif op in ("leave", "remove"):
            self._change(origin, op, args, now_ms, effects)
        elif op == "locate":
            c.check_serving()
            key = validate.key(args, self.config.max_key_bytes)
            table = self.view.ring
            p = table.partition_of(key)
            result = {
                "partition": p,
                "owners": list(table.owners[p]),
                "pending": list(table.pending.get(p, ())),
                "epoch": table.epoch,
            }
            c.answer(origin, None, result, effects)
        else:
            raise RequestError("invalid", f"unknown operation {op!r}")

    # --- messages from peers -------------------------------------------------------------------

    def _peer_message(self, src: str, msg: Any, now_ms: int, effects: list[m.Effect]) -> None:
        c = self.coordinator
        kind = type(msg)
        if kind is m.ReplicaPut or kind is m.ReplicaGet or kind is m.ScanRequest:
            if not self._routed_here(src, msg, now_ms, effects):
                return
            if kind is m.ReplicaPut:
                c.replica.on_put(src, msg, effects)
            elif kind is m.ReplicaGet:
                c.replica.on_get(src, msg, effects)
            else:
                c.replica.on_scan(src, msg, effects)
        elif kind is m.Forward:
            if msg.op in ("leave", "remove"):
                self._change(Origin(msg.op_id, src), msg.op, msg.args, now_ms, effects, msg.hops)
            else:
                c.forwarded(src, msg, now_ms, effects)
        elif kind is m.Stale:
            c.on_stale(src, msg)
            table = self.view.table
            if table is not None and isinstance(msg.epoch, int) and msg.epoch <= table.epoch:
                # We took the replica's table meanwhile: retry on it now (no newer table may
                # come to trigger the retry).
                c.retry_stale(now_ms, effects)
            self._ask_tables(now_ms, effects)
        elif kind is m.TableRequest:
            table = self.view.table
            if table is not None and isinstance(msg.epoch, int) and table.epoch > msg.epoch:
                update = m.TableUpdate(table.to_wire())
                if self.view.address_of(src):
                    c.send(src, update, effects)
                elif isinstance(msg.address, str) and 0 < len(msg.address) <= MAX_FIELD_BYTES:
                    # A member we know by name only (one that left, say) still gets the table
                    # that tells it so.
                    effects.append(m.Send(src, msg.address, update))
        elif kind is m.TableUpdate:
            self._install(Table.from_wire(msg.table), now_ms, effects)
        elif kind is m.HandoffRequest:
            if self._routed_here(src, msg, now_ms, effects):
                self._send_page(src, msg, effects)
        elif kind is m.HandoffPage:
            if self.view.table is None:
                return
            if self.aae.owns(src, msg.op_id):
                self.aae.on_page(src, msg, now_ms, self.view.table, effects)
            else:
                self.handoff.on_page(src, msg, now_ms, self.view.table, effects)
        elif kind is m.AaeRoots:
            if self.view.table is not None and self.view.serving:
                self.aae.on_roots(src, msg, self.view.table, effects)
        elif kind is m.AaeRootsReply:
            if self.view.table is not None:
                self.aae.on_roots_reply(src, msg, now_ms, self.view.table, effects)
        elif kind is m.AaePush:
            if self.view.table is not None and self.view.serving:
                self.aae.on_push(src, msg, self.view.table, effects)
        elif kind is m.AaePushAck:
            self.aae.on_push_ack(src, msg, now_ms)
        elif kind is m.ReapCheck:
            if self.view.table is not None and self.view.serving:
                self.aae.on_reap_check(src, msg, self.view.table, effects)
        elif kind is m.ReapAck:
            if self.view.table is not None:
                self.aae.on_reap_ack(src, msg, self.view.table, effects)
        elif kind is m.Reap:
            if self.view.table is not None and msg.epoch == self.view.table.epoch:
                self.aae.on_reap(src, msg, self.view.table)
        elif kind is m.TransferDone:
            if isinstance(msg.epoch, int) and isinstance(msg.partitions, list):
                self.claimant.transfer_done(src, msg.epoch, msg.partitions)
        elif kind is m.CleanupDone:
            if isinstance(msg.epoch, int) and isinstance(msg.partitions, list):
                self.claimant.cleanup_done(src, msg.epoch, msg.partitions)
        else:
            c.reply(src, msg, now_ms, effects)

    # --- the ownership table -------------------------------------------------------------------

    def _routed_here(self, src: str, msg: Any, now_ms: int, effects: list[m.Effect]) -> bool:
        """Whether to act on a replica request now: it was routed on our table or one that
        routes its partition(s) the same. One routed on a newer table waits until we have that
        table; one routed on an older one is answered ``Stale`` (its sender retries)."""
        epoch = msg.epoch
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise ValueError("a replica request carries its table epoch (an integer)")
        table = self.view.table
        if table is None or epoch > table.epoch:
            if len(self._held) < HELD_MAX:
                self._held.append((now_ms, src, msg))
            self.coordinator.want_table[src] = max(self.coordinator.want_table.get(src, 0), epoch)
            self._ask_tables(now_ms, effects)
            return False
        if type(msg) is m.ScanRequest:
            stale = epoch < table.last_change()
        elif type(msg) is m.HandoffRequest:
            parts = msg.partitions if isinstance(msg.partitions, list) else []
            stale = any(
                not isinstance(p, int) or not 0 <= p < table.partitions or table.stale(p, epoch)
                for p in parts
            )
        else:
            if not isinstance(msg.key, bytes):
                raise ValueError("a key is bytes")
            p = table.partition_of(msg.key)
            stale = table.stale(p, epoch)
            if not stale and (type(msg) is m.ReplicaGet or msg.hint_for in (None, self.name)):
                # Routed at the same epoch, yet not to a holder of the partition: the sender's
                # view is not ours (a hint made on an older table, say). It retries.
                stale = self.name not in table.write_list(p)
        if stale:
            if msg.op_id:
                self.coordinator.send(src, m.Stale(msg.op_id, table.epoch), effects)
            self.stats["stale_requests"] = self.stats.get("stale_requests", 0) + 1
        return not stale

    def _records(self, args: dict[str, Any]) -> dict[str, Any]:
        """One page of this node's stored records (a cluster-wide save reads every node with
        it): of the partitions it owns, in key order after ``after``; or, with ``hints``, of the
        hints it keeps for other nodes (writes acknowledged through it that their owners may
        not hold yet)."""
        after = args.get("after")
        if after is not None and not isinstance(after, bytes):
            raise RequestError("invalid", "records: after is bytes or null")
        budget = args.get("max_bytes", 1024 * 1024)
        if type(budget) is not int or budget < 1:
            raise RequestError("invalid", "records: max_bytes is a positive integer")
        budget = min(budget, 4 * 1024 * 1024)
        table = self.view.ring
        owned = [p for p in range(table.partitions) if self.name in table.owners[p]]
        if args.get("hints"):
            items, after, done = self.coordinator.hints.page(after, budget)
        else:
            items, after, done = page(self.storage, set(owned), table.partitions, after, budget)
        return {
            "items": items,
            "after": after,
            "done": done,
            "epoch": table.epoch,
            "partitions": owned,
        }

    def _send_page(self, src: str, msg: m.HandoffRequest, effects: list[m.Effect]) -> None:
        table = self.view.ring
        if msg.after is not None and not isinstance(msg.after, bytes):
            raise ValueError("a handoff cursor is bytes or None")
        budget = msg.max_bytes if isinstance(msg.max_bytes, int) else 1
        budget = min(max(1, budget), 4 * 1024 * 1024)
        segments = msg.segments
        if segments is not None and (
            not isinstance(segments, list) or not all(isinstance(b, bytes) for b in segments)
        ):
            raise ValueError("handoff segments are a list of bitmaps")
        items, after, done = page(
            self.storage, set(msg.partitions), table.partitions, msg.after, budget, segments
        )
        self.handoff.stats.sent_bytes += sum(len(x) for x in items)
        self.coordinator.send(src, m.HandoffPage(msg.op_id, items, after, done), effects)

    def _ask_tables(self, now_ms: int, effects: list[m.Effect]) -> None:
        """Ask the peers that have a newer table than ours for it (each at most every
        ``TABLE_ASK_MS``)."""
        want = self.coordinator.want_table
        if not want:
            return
        ours = 0 if self.view.table is None else self.view.table.epoch
        for peer, epoch in sorted(want.items()):
            if epoch <= ours:
                continue
            asked = self._table_asked.get(peer)
            if asked is not None and asked[0] >= epoch and now_ms - asked[1] < TABLE_ASK_MS:
                continue
            self._table_asked[peer] = (epoch, now_ms)
            self.coordinator.send(peer, m.TableRequest(ours, self.config.address), effects)
        want.clear()

    def _install(self, table: Table, now_ms: int, effects: list[m.Effect]) -> None:
        """Take a newer table: copy and clean what it says, retry what was routed on the old
        one, serve the requests that waited for it."""
        old = self.view.table
        if not self.view.install(table):
            return
        self.handoff.refresh(table)
        self.aae.refresh(table)
        if not self.view.serving:
            effects += self.view.progress(now_ms)
            self._after_view(effects)
        for name in table.gone:
            self.view.membership.mark_left(name, now_ms)
        if old is None or old.transfers_pending() != table.transfers_pending():
            effects.append(
                m.Log(
                    "info",
                    f"ring epoch {table.epoch}: {table.transfers_pending()} partition "
                    "transfer(s) pending",
                    "ring_epoch",
                    {"epoch": table.epoch, "transfers_pending": table.transfers_pending()},
                )
            )
        if self.view.serving:
            self.coordinator.retry_stale(now_ms, effects)
        held, self._held = self._held, []
        for since, src, msg in held:
            if now_ms - since <= HELD_MS:
                self._isolated(
                    effects,
                    f"a {type(msg).__name__} from a peer",
                    lambda src=src, msg=msg: self._peer_message(src, msg, now_ms, effects),  # type: ignore[misc]
                )
        self._maybe_retire(now_ms, effects)

    def _hints_to_hand_off(self) -> bool:
        """A leaving member still keeps hints for others (it reports its last cleanup, and so
        lets the claimant retire it, only once they are delivered)."""
        table = self.view.table
        return table is not None and self.name in table.leaving and len(self.coordinator.hints) > 0

    def _maybe_retire(self, now_ms: int, effects: list[m.Effect]) -> None:
        """A member the table lets go exits once it has handed off the hints it keeps for others
        (they are replicas of other nodes' writes)."""
        table = self.view.table
        if table is None or self.name not in table.gone or self._retired or not self.view.serving:
            return
        # The table that lets it go may exist only here (it may have been the claimant that
        # made it): it stays until the claimant that table names has it, and spreads it.
        claimant = table.claimant
        if (
            claimant != self.name
            and self.view.membership.peer_epochs.get(claimant, 0) < table.epoch
        ):
            return
        if len(self.coordinator.hints):
            if not self._retire_logged:
                self._retire_logged = True
                held = len(self.coordinator.hints)
                text = (
                    f"{self.name} has left the ring; it exits once its {held} hint(s) are delivered"
                )
                effects.append(m.Log("info", text, "retiring", {"hints": held}))
            return
        self._retired = True
        effects += self.view.membership.leave(now_ms, permanent=True)
        effects.append(m.Retired(f"{self.name} has left the cluster; its data is handed off"))

    def _publish(self, table: Table, now_ms: int, effects: list[m.Effect]) -> None:
        """The claimant's new table: ours, then every live member's."""
        self._install(table, now_ms, effects)
        update = m.TableUpdate(table.to_wire())
        for member in self.view.membership.members():
            if member.name != self.name and self.view.membership.is_alive(member.name):
                self.coordinator.send(member.name, update, effects)

    def _change(
        self,
        origin: Origin,
        op: str,
        args: Any,
        now_ms: int,
        effects: list[m.Effect],
        hops: int = 0,
    ) -> None:
        """``leave`` / ``remove`` of a member: made by the claimant (forwarded to it)."""
        c = self.coordinator
        try:
            c.check_serving()
            name = args.get("name") if isinstance(args, dict) else None
            if not isinstance(name, str) or not name:
                raise RequestError("invalid", f"{op} needs the name of a member")
            table = self.view.ring
            claimant = table.claimant
            member = self.view.membership.get(claimant)
            claimant_alive = claimant == self.name or (
                member is not None and self.view.membership.is_alive(claimant)
            )
            local = claimant == self.name or (
                op == "remove" and name == claimant and not claimant_alive
            )
            if not local:
                if hops or not isinstance(hops, int):
                    raise RequestError("unavailable", f"{claimant} makes ring changes; retry")
                if not claimant_alive:
                    raise RequestError(
                        "unavailable",
                        f"the claimant {claimant}, which makes ring changes, is down: changes "
                        f"wait until it is back (or `ringctl remove {claimant}` if it is gone "
                        "for good)",
                    )
                op_id = c.new_op(ForwardOp(origin, claimant), now_ms)
                c.send(claimant, m.Forward(op_id, op, {"name": name}, 1, 0), effects)
                return
            known = self.view.membership.get(name)
            if (
                op == "remove"
                and name not in table.members()
                and name not in table.gone
                and known is not None
                and known.state in ("down", "suspect")
            ):
                # A node that died before it had joined the ring (it holds no partition): it is
                # out for good, so that it cannot come back under that name.
                self.view.membership.mark_left(name, now_ms)
                result = {
                    "name": name,
                    "change": op,
                    "epoch": table.epoch,
                    "moves": 0,
                    "members": list(table.target_members()),
                    "transfers_pending": table.transfers_pending(),
                    "note": f"{name} had not joined the ring: it held no data",
                }
                c.answer(origin, None, result, effects)
                return
            newest = self.view.membership.newest_epoch
            new, result = self.claimant.change(op, name, table, self.view.membership, newest)
            if op == "remove":
                self.view.membership.mark_left(name, now_ms)
            self._publish(new, now_ms, effects)
            c.answer(origin, None, result, effects)
        except RequestError as exc:
            c.answer(origin, exc.kind, str(exc), effects)

    # --- timers --------------------------------------------------------------------------------

    def _tick(self, now_ms: int, effects: list[m.Effect]) -> None:
        c = self.coordinator
        self._isolated(
            effects, "gossip timers", lambda: effects.extend(self.view.tick(now_ms, self.rng))
        )
        self._after_view(effects)
        self._isolated(effects, "ring changes", lambda: self._ring_timers(now_ms, effects))
        for op_id, op in c.due(now_ms):
            self._isolated(
                effects,
                "expiring a request",
                lambda op_id=op_id, op=op: c.expire(op_id, op, now_ms, effects),  # type: ignore[misc]
                lambda out, done, op_id=op_id, op=op: c.fail_op(op_id, op, out, done),  # type: ignore[misc]
            )
        for target in c.hint_targets(now_ms):
            self._isolated(
                effects,
                "hinted handoff",
                lambda target=target: c.deliver_hints(target, now_ms, effects),  # type: ignore[misc]
            )

    def _ring_timers(self, now_ms: int, effects: list[m.Effect]) -> None:
        self._ask_tables(now_ms, effects)
        if self._held and now_ms - self._held[0][0] > HELD_MS:
            self._held = [h for h in self._held if now_ms - h[0] <= HELD_MS]
        table = self.view.table
        if table is None or not self.view.serving or self._retired:
            return
        self._maybe_retire(now_ms, effects)
        new = self.claimant.tick(now_ms, table, self.view.membership)
        if new is not None:
            self._publish(new, now_ms, effects)
            table = new
        alive = self.view.membership.is_alive
        self.handoff.tick(now_ms, table, alive, effects)
        self.aae.tick(now_ms, table, alive, effects, self.handoff.stats.log)
        log = self.handoff.stats.log
        if log:
            effects += log
            log.clear()

    # --- introspection -------------------------------------------------------------------------

    def status(self, now_ms: int = 0) -> dict[str, Any]:
        table = self.view.table
        load = {} if table is None else table.load()
        members = []
        for x in self.view.membership.members():
            members.append(
                {
                    "name": x.name,
                    "address": x.address,
                    "state": x.state,
                    "incarnation": x.incarnation,
                    "partitions": load.get(x.name, 0),
                }
            )
        h = self.handoff.stats
        return {
            "node": self.name,
            "serving": self.view.serving,
            "members": members,
            "hints": self.coordinator.hints.counts(),
            "waiting_for": None if self.view.serving else self.view.waiting_for(),
            "epoch": 0 if table is None else table.epoch,
            "claimant": None if table is None else table.claimant,
            "transfers_pending": 0 if table is None else table.transfers_pending(),
            "handoff": {
                "received_records": h.received_records,
                "received_bytes": h.received_bytes,
                "sent_bytes": h.sent_bytes,
                "deleted_records": h.deleted_records,
                "refused_records": h.refused,
                "streams": len(self.handoff.streams),
            },
            "aae": {
                "exchanges": self.aae.stats.exchanges,
                "keys_repaired": self.aae.stats.keys_repaired,
                "tombstones_reaped": self.aae.stats.tombstones_reaped,
                "last_sweep_s": self.aae.last_sweep_s(now_ms, table),
                "trees_ready": self.aae.trees.ready,
                "segments_differing": self.aae.stats.segments_differing,
                "pulled_records": self.aae.stats.pulled_records,
                "pushed_records": self.aae.stats.pushed_records,
            },
        }

    def route_table(self, since: int | None) -> dict[str, Any]:
        """What a client needs to send each request to a replica of its key
        (``ring.net.routing``): the ownership table's epoch, its members with the address each
        advertises and its state in this node's view, and each partition's owners as indices
        into ``names``. Only the epoch when the client holds this table already (``since``)."""
        table = self.view.ring
        if since == table.epoch:
            return {"epoch": table.epoch}
        names = list(table.members())
        index = {name: i for i, name in enumerate(names)}
        known = [self.view.membership.get(name) for name in names]
        return {
            "epoch": table.epoch,
            "names": names,
            "addresses": [x.address if x is not None else "" for x in known],
            "states": [x.state if x is not None else "down" for x in known],
            "owners": [[index[name] for name in lst] for lst in table.owners],
        }

    def ring_info(self) -> dict[str, Any]:
        table = self.view.ring
        load = table.load()
        primaries = table.primaries()
        transfers = []
        for p in sorted(table.pending):
            transfers.append(
                {
                    "partition": p,
                    "from": list(table.owners[p]),
                    "to": list(table.pending[p]),
                    "copied": sorted(table.done.get(p, ())),
                }
            )
        cleanups = [
            {"partition": p, "holders": list(lst)} for p, lst in sorted(table.cleanup.items())
        ]
        return {
            "partitions": table.partitions,
            "n": table.n,
            "epoch": table.epoch,
            "claimant": table.claimant,
            "members": [
                {
                    "name": name,
                    "primary": primaries.get(name, 0),
                    "replicas": load.get(name, 0),
                    "leaving": name in table.leaving,
                }
                for name in table.members()
            ],
            "transfers_pending": table.transfers_pending(),
            "transfers": transfers,
            "cleanups": cleanups,
            "gone": list(table.gone),
        }


def _what(event: Any) -> str:
    """What an event is, for an error report (a few fixed kinds: the log keeps one per kind)."""
    if type(event) is m.ClientRequest:
        return "a client request"
    if type(event) is m.PeerMessage:
        return f"a {type(event.msg).__name__} from a peer"
    return "a gossip datagram" if type(event) is m.Datagram else type(event).__name__
