"""A ringkv node: quorum coordination, replication, read repair and hinted handoff — pure.

``Node.handle(event, now_ms)`` takes an event (a client request, a message from a peer, a gossip
datagram, a tick) and returns effects (messages to send, replies, log lines). The only things it
is handed are the local ``Storage`` (synchronous, durable when a write returns), the time and a
seeded random source, so ``ringd`` and the simulator run exactly this code.

The rules (Dynamo, DeCandia et al. 2007; Riak KV):

* **Ownership.** A key's preference list is the first N distinct ring members of its partition
  (``ring.core.hashring``). Membership liveness (SWIM, ``ring.core.membership``) never changes
  ownership; only joins and permanent leaves do.
* **A node serves only with a whole view of the ring.** A node that just started knows only
  itself, and learns the others piecemeal (a ping carries a few members); coordinating from
  that partial ring would store a write on nodes that are not its replicas, and acknowledge it.
  So after a (re)start a node answers reads and writes with ``unavailable`` until it has
  received a full membership table from a peer (``Sync``/``SyncReply``) and knows every member
  of the ring it last knew, which it keeps in its storage (``RING_KEY``). A node without other
  seeds (a cluster of one) serves at once.
* **Who coordinates a write.** A write is coordinated by a node of the key's preference list: a
  dot's counter must be one more than every dot that actor issued for the key, and only a replica
  keeps every dot it issued. Any other node forwards the write to the first live member of the
  preference list (``Forward``).
* **Writes.** The coordinator applies ``record.write`` to its local record, stores the result,
  and sends the new record to the other N-1 replicas, which merge it with ``reconcile``. It
  acknowledges the client after W replicas stored it (itself included). A replica that is down
  is replaced by the next live node outside the preference list, which keeps a **hint**; when
  there is none, or a replica did not answer before the request timeout, the coordinator keeps
  the hint itself. Hints kept by the coordinator do not count towards W.
* **Hinted handoff.** Hints are delivered to their node when it is up, and dropped once it
  acknowledged them — unless the hint changed in the meantime.
* **Reads.** The coordinator (any node) asks the live members of the preference list, answers
  after R replies with the ``reconcile`` of what it got, keeps collecting until every asked
  replica answered or the timeout, then sends the merged record to every replica whose copy
  differs (**read repair**).
* **Deletes** are writes of a tombstone. Tombstones are never reaped by this version, so a
  delete cannot be undone by a stale replica, a hint or a repair.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack

from ring.core import messages as m
from ring.core import record as rec
from ring.core.hashring import HashRing
from ring.core.layout import ACTOR_KEY, DATA, HINT, RING_KEY, Storage, hint_key, split_hint_key
from ring.core.membership import Membership, MembershipConfig, RandomSource, Sync, SyncReply
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


class NodeRandom(RandomSource, Protocol):
    """The part of ``random.Random`` a node uses; the shell passes a seeded ``random.Random``."""

    def getrandbits(self, k: int) -> int: ...


MAX_KEY_BYTES = 64 * 1024
MAX_VALUE_BYTES = 16 * 1024 * 1024
HINT_BATCH = 256  # hint deliveries in flight per node at most


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    address: str
    cluster: str = "ringkv"
    seeds: tuple[str, ...] = ()
    n: int = 3
    r: int = 2
    w: int = 2
    partitions: int = 1024
    vnodes: int = 128
    request_timeout_ms: int = 2000
    tick_ms: int = 20
    hint_retry_ms: int = 500
    max_key_bytes: int = MAX_KEY_BYTES
    max_value_bytes: int = MAX_VALUE_BYTES
    membership: MembershipConfig = field(default_factory=MembershipConfig)

    def __post_init__(self) -> None:
        if not 1 <= self.r <= self.n or not 1 <= self.w <= self.n:
            raise ValueError(f"need 1 <= R, W <= N (got N={self.n} R={self.r} W={self.w})")


class RequestError(Exception):
    """A client request that cannot be served; becomes a ``Reply`` with ``kind``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


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
        self.actor = self._load_actor()
        self.membership = Membership(
            config.name,
            config.address,
            incarnation=incarnation,
            config=config.membership,
            now_ms=now_ms,
        )
        self.ring = HashRing([config.name], partitions=config.partitions, vnodes=config.vnodes)
        # Until the view is whole (see the module docstring) the node does not serve: the ring
        # members it knew before, and the parts of a full table received so far, per peer.
        self._remembered = self._load_ring()
        self._expected = [n for n in self._remembered if n != config.name]
        self._table_parts: dict[str, set[int]] = {}
        self._synced = False
        # A node that knew other members before (or is told of seeds) must hear from them
        # first, also when restarted without seeds: serving from a ring of itself alone would
        # store writes on nodes that are not their replicas.
        self._rejoining = bool(self._expected) or any(s != config.address for s in config.seeds)
        # Op ids start at a random offset so that a late reply meant for a previous incarnation
        # of this node cannot be taken for a reply to a new request.
        self._next_op = rng.getrandbits(40) << 16
        self._ops: dict[int, Op] = {}
        self._deadlines: list[tuple[int, int]] = []
        self._next_hint_run = now_ms
        self._hints_inflight = 0
        self.stats: dict[str, int] = {"read_repairs": 0, "hints_stored": 0, "hints_delivered": 0}

    # --- identity ------------------------------------------------------------------------------

    def _load_actor(self) -> str:
        """The actor of this data directory: name plus an epoch made when the data was created.
        A node whose data was wiped gets a new epoch, so it never reuses a counter (kv679)."""
        raw = self.storage.get(ACTOR_KEY)
        if raw is not None:
            return raw.decode()
        actor = f"{self.name}@{self.rng.getrandbits(48):012x}"
        self.storage.write([(ACTOR_KEY, actor.encode())], sync=True)
        return actor

    def _load_ring(self) -> dict[str, str]:
        """The ring this node last knew whole: member name -> address ('' when unknown)."""
        raw = self.storage.get(RING_KEY)
        if raw is None:
            return {}
        out: dict[str, str] = {}
        for item in msgpack.unpackb(raw):
            if isinstance(item, list) and len(item) == 2:
                out[str(item[0])] = str(item[1])
            elif isinstance(item, str):
                out[item] = ""
        return out

    def ready(self) -> bool:
        """Whether the node knows the whole ring and may coordinate requests."""
        known = self.membership.get
        if self._rejoining and self._synced and all(known(n) for n in self._expected):
            self._rejoining = False
            self._save_ring()
        return not self._rejoining

    def _save_ring(self) -> None:
        # Only a whole view is kept: a partial one would let the next start serve too early.
        ring: dict[str, str] = {}
        for name in self.ring.members:
            member = self.membership.get(name)
            ring[name] = member.address if member is not None else ""
        if not self._rejoining and ring != self._load_ring():
            packed = msgpack.packb([[n, a] for n, a in sorted(ring.items())])
            self.storage.write([(RING_KEY, packed)], sync=True)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, now_ms: int) -> list[Any]:
        # The members remembered from the last run are seeds too, so a node restarted without
        # --seeds finds its cluster again.
        seeds = list(self.config.seeds)
        for name, address in sorted(self._remembered.items()):
            if name != self.name and address and address not in seeds:
                seeds.append(address)
        effects: list[Any] = list(self.membership.join(seeds, now_ms))
        self._sync_ring(effects)
        return effects

    def stop(self, now_ms: int) -> list[Any]:
        """Graceful shutdown: tell the peers this node is going down (not leaving the ring)."""
        return list(self.membership.leave(now_ms))

    def idle(self) -> bool:
        return not any(
            isinstance(op, PutOp | GetOp | ForwardOp | ScanOp) for op in self._ops.values()
        )

    # --- dispatch ------------------------------------------------------------------------------

    def handle(self, event: Any, now_ms: int) -> list[Any]:
        effects: list[Any] = []
        if isinstance(event, m.ClientRequest):
            origin = Origin(event.req_id)
            try:
                self._client(origin, event, now_ms, effects)
            except RequestError as exc:
                self._answer(origin, exc.kind, str(exc), effects)
        elif isinstance(event, m.PeerMessage):
            self._peer(event.src, event.msg, now_ms, effects)
        elif isinstance(event, m.Datagram):
            effects += self.membership.handle(event.src, event.msg, now_ms, self.rng)
            self._sync_ring(effects)
            if self._rejoining:
                self._note_table(event.msg)
                self.ready()  # keeps the ring as soon as the view is whole
        elif isinstance(event, m.Tick):
            effects += self.membership.tick(now_ms, self.rng)
            self._sync_ring(effects)
            self._expire(now_ms, effects)
            if now_ms >= self._next_hint_run:
                self._next_hint_run = now_ms + self.config.hint_retry_ms
                self._deliver_hints(now_ms, effects)
        else:
            raise TypeError(f"unknown event {event!r}")
        return effects

    def _note_table(self, msg: Any) -> None:
        """Count a full membership table from a peer (all its parts), the first half of
        ``ready``."""
        if isinstance(msg, Sync | SyncReply) and msg.src_name != self.name:
            parts = self._table_parts.setdefault(msg.src_name, set())
            parts.add(msg.part)
            self._synced = self._synced or len(parts) >= msg.parts

    def _sync_ring(self, effects: list[Any]) -> None:
        changes = self.membership.drain_changes()
        if not changes:
            return
        members = self.membership.ring_members()
        if tuple(members) != self.ring.members:
            self.ring = HashRing(
                members, partitions=self.config.partitions, vnodes=self.config.vnodes
            )
            self._save_ring()
        for name, old, new in changes:
            effects.append(m.Log("info", f"member {name}: {old or 'new'} -> {new}"))
            if new == "up" and name != self.name:
                self._next_hint_run = 0  # deliver its hints on the next tick

    # --- helpers -------------------------------------------------------------------------------

    def _new_op(self, op: Op, now_ms: int) -> int:
        self._next_op += 1
        op_id = self._next_op
        self._ops[op_id] = op
        heapq.heappush(self._deadlines, (now_ms + self.config.request_timeout_ms, op_id))
        return op_id

    def _send(self, dest: str, msg: Any, effects: list[Any]) -> None:
        member = self.membership.get(dest)
        if member is not None:
            effects.append(m.Send(dest, member.address, msg))

    def _load(self, key: bytes) -> rec.Record:
        raw = self.storage.get(DATA + key)
        return rec.EMPTY if raw is None else rec.decode(raw)

    def _merge_into(self, skey: bytes, incoming: bytes) -> None:
        """Reconcile an encoded record into what is stored under ``skey`` (data or hint)."""
        merged = rec.merge_encoded(self.storage.get(skey), incoming)
        if merged is not None:
            self.storage.put(skey, merged)

    def _store_hint(self, target: str, key: bytes, record: bytes) -> None:
        self._merge_into(hint_key(target, key), record)
        self.stats["hints_stored"] += 1

    def _alive(self, name: str) -> bool:
        return name == self.name or self.membership.is_alive(name)

    # --- client requests -----------------------------------------------------------------------

    def _answer(self, origin: Origin, error: str | None, result: Any, effects: list[Any]) -> None:
        if origin.peer is None:
            effects.append(m.Reply(origin.req_id, error, result))
        else:
            self._send(origin.peer, m.ForwardReply(origin.req_id, error, result), effects)

    def _fail_quorum(
        self, origin: Origin, replied: int, needed: int, what: str, effects: list[Any]
    ) -> None:
        result = {
            "message": f"only {replied} {what}, {needed} needed",
            "replied": replied,
            "needed": needed,
        }
        self._answer(origin, "quorum", result, effects)

    def _client(
        self, origin: Origin, req: m.ClientRequest, now_ms: int, effects: list[Any]
    ) -> None:
        args = req.args if isinstance(req.args, dict) else {}
        op = req.op
        if op in ("get", "getv", "put", "del", "scan"):
            self._check_ready()
        if op in ("get", "getv"):
            self._start_get(origin, args, op == "getv", now_ms, effects)
        elif op in ("put", "del"):
            self._route_write(origin, op, args, now_ms, effects)
        elif op == "scan":
            self._start_scan(origin, args, now_ms, effects)
        elif op == "status":
            self._answer(origin, None, self.status(), effects)
        elif op == "ring":
            self._answer(origin, None, self.ring_info(), effects)
        else:
            raise RequestError("invalid", f"unknown operation {op!r}")

    def _check_ready(self) -> None:
        if not self.ready():
            raise RequestError(
                "unavailable",
                f"node {self.name} is rejoining the cluster and does not know every member yet; "
                "retry shortly or ask another node",
            )

    def _key(self, args: dict[str, Any]) -> bytes:
        key = args.get("key")
        if not isinstance(key, bytes):
            raise RequestError("invalid", "key must be bytes")
        if len(key) > self.config.max_key_bytes:
            raise RequestError(
                "invalid", f"key is {len(key)} bytes; the limit is {self.config.max_key_bytes}"
            )
        return key

    def _quorum_arg(self, args: dict[str, Any], name: str, default: int) -> int:
        value = args.get(name)
        if value is None:
            return default
        if not isinstance(value, int) or not 1 <= value <= self.config.n:
            raise RequestError("invalid", f"{name} must be between 1 and N={self.config.n}")
        return value

    def _context(self, args: dict[str, Any]) -> dict[str, int] | None:
        ctx = args.get("context")
        if ctx is None:
            return None
        if not isinstance(ctx, bytes):
            raise RequestError("invalid", "context must be the bytes from get_versioned")
        if not ctx:
            return {}
        try:
            return rec.decode_context(ctx)
        except ValueError as exc:
            raise RequestError("invalid", f"context is not one ringkv produced: {exc}") from None

    def preference_list(self, key: bytes) -> tuple[str, ...]:
        return self.ring.preference_list_for(key, self.config.n)

    # --- get -----------------------------------------------------------------------------------

    def _start_get(
        self, origin: Origin, args: dict[str, Any], versioned: bool, now_ms: int, effects: list[Any]
    ) -> None:
        key = self._key(args)
        pl = self.preference_list(key)
        r = self._quorum_arg(args, "r", min(self.config.r, len(pl)))  # capped as W is
        asked = tuple(n for n in pl if self._alive(n))
        if len(asked) < r:
            self._fail_quorum(origin, len(asked), r, "replicas are reachable", effects)
            return
        op = GetOp(origin, key, r, versioned, asked)
        op_id = self._new_op(op, now_ms)
        for node in asked:
            if node == self.name:
                op.replies[node] = self.storage.get(DATA + key)
            else:
                self._send(node, m.ReplicaGet(op_id, key), effects)
        self._progress_get(op_id, op, effects)

    def _progress_get(self, op_id: int, op: GetOp, effects: list[Any], final: bool = False) -> None:
        if not op.answered and len(op.replies) >= op.r:
            op.answered = True
            self._answer(op.origin, None, get_result(op.replies, op.versioned), effects)
        if len(op.replies) == len(op.asked) or final:
            del self._ops[op_id]
            if not op.answered:
                self._fail_quorum(
                    op.origin, len(op.replies), op.r, "replicas replied in time", effects
                )
            self._read_repair(op, effects)

    def _read_repair(self, op: GetOp, effects: list[Any]) -> None:
        raws = set(op.replies.values())
        if len(raws) == 1:
            return  # every replica that answered holds the same bytes: nothing to repair
        decoded = {n: rec.EMPTY if r is None else rec.decode(r) for n, r in op.replies.items()}
        merged = rec.reconcile_all(decoded.values())
        encoded = rec.encode(merged)
        for node, got in sorted(decoded.items()):
            if got == merged:
                continue
            self.stats["read_repairs"] += 1
            if node == self.name:
                self._merge_into(DATA + op.key, encoded)
            else:
                self._send(node, m.ReplicaPut(0, op.key, encoded, None), effects)

    # --- put / delete --------------------------------------------------------------------------

    def _route_write(
        self, origin: Origin, op: str, args: dict[str, Any], now_ms: int, effects: list[Any]
    ) -> None:
        key = self._key(args)
        pl = self.preference_list(key)
        if self.name in pl:
            self._coordinate_write(origin, op, key, args, pl, now_ms, effects)
            return
        for node in pl:
            if self.membership.is_alive(node):
                op_id = self._new_op(ForwardOp(origin, node), now_ms)
                self._send(node, m.Forward(op_id, op, args), effects)
                return
        raise RequestError("unavailable", f"all {len(pl)} replicas of this key are down")

    def _coordinate_write(
        self,
        origin: Origin,
        op: str,
        key: bytes,
        args: dict[str, Any],
        pl: tuple[str, ...],
        now_ms: int,
        effects: list[Any],
    ) -> None:
        value: bytes | None = None
        if op == "put":
            value = args.get("value")
            if not isinstance(value, bytes):
                raise RequestError("invalid", "value must be bytes")
            if len(value) > self.config.max_value_bytes:
                raise RequestError(
                    "invalid",
                    f"value is {len(value)} bytes; the limit is {self.config.max_value_bytes}",
                )
        # The cluster's default W is capped by the replicas that exist (a cluster of one node
        # works with the defaults); a W asked for explicitly is never weakened.
        w = self._quorum_arg(args, "w", min(self.config.w, len(pl)))
        ctx = self._context(args)
        if w > len(pl):
            self._fail_quorum(origin, len(pl), w, "replicas exist in this cluster", effects)
            return
        raw = self.storage.get(DATA + key)
        if ctx is None and value is not None:
            new = rec.blind_write_encoded(raw, self.actor, value, now_ms)
        else:
            local = rec.EMPTY if raw is None else rec.decode(raw)
            new = rec.encode(rec.write(local, self.actor, value, now_ms, ctx))
        self.storage.put(DATA + key, new)
        others = tuple(n for n in pl if n != self.name)
        put = PutOp(origin, key, w, new, others, acked={self.name})
        op_id = self._new_op(put, now_ms)
        spare: list[str] | None = None  # live nodes outside the preference list, when needed
        for node in others:
            if self.membership.is_alive(node):
                put.expected.add(node)
                self._send(node, m.ReplicaPut(op_id, key, new, None), effects)
                continue
            if spare is None:
                walk = self.ring.walk(self.ring.partition_of(key))
                spare = [n for n in walk[len(pl) :] if self._alive(n)]
            if spare:
                fallback = spare.pop(0)
                put.fallbacks[fallback] = node
                put.expected.add(fallback)
                self._send(fallback, m.ReplicaPut(op_id, key, new, node), effects)
            else:
                put.hinted.add(node)
                self._store_hint(node, key, new)
        self._progress_put(op_id, put, effects)

    def _progress_put(self, op_id: int, op: PutOp, effects: list[Any], final: bool = False) -> None:
        if not op.answered and len(op.acked) >= op.w:
            op.answered = True
            self._answer(op.origin, None, None, effects)
        if not (final or op.expected <= op.acked):
            return
        del self._ops[op_id]
        # Every replica that did not store the write gets it later through a hint we keep.
        covered = {op.fallbacks.get(n, n) for n in op.acked}
        for node in op.primaries:
            if node not in covered and node not in op.hinted:
                self._store_hint(node, op.key, op.record)
        if not op.answered:
            self._fail_quorum(
                op.origin, len(op.acked), op.w, "replicas stored the write in time", effects
            )

    # --- scan ----------------------------------------------------------------------------------

    def _start_scan(
        self, origin: Origin, args: dict[str, Any], now_ms: int, effects: list[Any]
    ) -> None:
        start, stop = args.get("start"), args.get("stop")
        reverse = bool(args.get("reverse", False))
        limit = args.get("limit", 1000)
        for bound in (start, stop):
            if bound is not None and not isinstance(bound, bytes):
                raise RequestError("invalid", "scan start and stop must be bytes")
        if not isinstance(limit, int) or limit < 1:
            raise RequestError("invalid", "scan limit must be a positive integer")
        members = self.ring.members
        asked = tuple(n for n in members if self._alive(n))
        needed = max(1, len(members) - self.config.n + 1)
        if len(asked) < needed:
            self._fail_quorum(
                origin, len(asked), needed, "nodes are reachable to cover every key", effects
            )
            return
        op = ScanOp(origin, (start, stop, reverse, limit), asked)
        op_id = self._new_op(op, now_ms)
        for node in asked:
            if node == self.name:
                op.replies[node] = self._local_scan(start, stop, reverse, limit)
            else:
                self._send(node, m.ScanRequest(op_id, start, stop, reverse, limit), effects)
        self._progress_scan(op_id, op, effects)

    def _local_scan(
        self, start: bytes | None, stop: bytes | None, reverse: bool, limit: int
    ) -> list[Any]:
        flat: list[Any] = []
        items = self.storage.scan(
            DATA,
            None if start is None else DATA + start,
            None if stop is None else DATA + stop,
            reverse,
            limit,
        )
        for skey, raw in items:
            flat += (skey[1:], raw)
        return flat

    def _progress_scan(
        self, op_id: int, op: ScanOp, effects: list[Any], final: bool = False
    ) -> None:
        if len(op.replies) < len(op.asked) and not final:
            return
        del self._ops[op_id]
        needed = max(1, len(self.ring.members) - self.config.n + 1)
        if len(op.replies) < needed:
            self._fail_quorum(
                op.origin, len(op.replies), needed, "nodes answered the scan in time", effects
            )
            return
        _, _, reverse, limit = op.args
        result = merge_scan(list(op.replies.values()), reverse, limit)
        self._answer(op.origin, None, result, effects)

    # --- messages from peers -------------------------------------------------------------------

    def _peer(self, src: str, msg: Any, now_ms: int, effects: list[Any]) -> None:
        if isinstance(msg, m.ReplicaPut):
            ok = True
            try:
                if not isinstance(msg.record, bytes) or not isinstance(msg.key, bytes):
                    raise ValueError("a replicated record and its key are bytes")
                if msg.hint_for is not None and msg.hint_for != self.name:
                    self._store_hint(msg.hint_for, msg.key, msg.record)
                else:
                    self._merge_into(DATA + msg.key, msg.record)
            except ValueError:
                ok = False
            if msg.op_id:
                self._send(src, m.ReplicaPutAck(msg.op_id, ok), effects)
        elif isinstance(msg, m.ReplicaGet):
            raw = self.storage.get(DATA + msg.key)
            self._send(src, m.ReplicaGetReply(msg.op_id, raw), effects)
        elif isinstance(msg, m.ScanRequest):
            flat = self._local_scan(msg.start, msg.stop, msg.reverse, msg.limit)
            self._send(src, m.ScanReply(msg.op_id, flat), effects)
        elif isinstance(msg, m.Forward):
            self._forwarded(src, msg, now_ms, effects)
        else:
            self._reply_from_peer(src, msg, effects)

    def _forwarded(self, src: str, msg: m.Forward, now_ms: int, effects: list[Any]) -> None:
        """Coordinate a write another node passed on; it gets a ForwardReply."""
        origin = Origin(msg.op_id, src)
        args = msg.args if isinstance(msg.args, dict) else {}
        try:
            if msg.op not in ("put", "del"):
                raise RequestError("invalid", f"cannot forward {msg.op!r}")
            self._check_ready()
            key = self._key(args)
            self._coordinate_write(
                origin, msg.op, key, args, self.preference_list(key), now_ms, effects
            )
        except RequestError as exc:
            self._answer(origin, exc.kind, str(exc), effects)

    def _reply_from_peer(self, src: str, msg: Any, effects: list[Any]) -> None:
        op_id = getattr(msg, "op_id", None)
        if not isinstance(op_id, int):
            return
        op = self._ops.get(op_id)
        if op is None:
            return  # late or duplicate reply: the operation already finished
        if isinstance(msg, m.ReplicaPutAck) and isinstance(op, PutOp):
            if msg.ok and (src in op.primaries or src in op.fallbacks):
                op.acked.add(src)
            self._progress_put(op_id, op, effects)
        elif isinstance(msg, m.ReplicaPutAck) and isinstance(op, HintOp):
            del self._ops[op_id]
            self._hints_inflight -= 1
            if msg.ok and self.storage.get(op.skey) == op.encoded:
                self.storage.write((), [op.skey])
                self.stats["hints_delivered"] += 1
        elif isinstance(msg, m.ReplicaGetReply) and isinstance(op, GetOp):
            if src in op.asked and src not in op.replies:
                if msg.record is not None and not isinstance(msg.record, bytes):
                    return  # not a record: the replica counts as not having answered
                op.replies[src] = msg.record
                self._progress_get(op_id, op, effects)
        elif isinstance(msg, m.ScanReply) and isinstance(op, ScanOp):
            if src in op.asked and src not in op.replies:
                op.replies[src] = msg.items
                self._progress_scan(op_id, op, effects)
        elif isinstance(msg, m.ForwardReply) and isinstance(op, ForwardOp):
            del self._ops[op_id]
            self._answer(op.origin, msg.error, msg.result, effects)

    # --- timers --------------------------------------------------------------------------------

    def _expire(self, now_ms: int, effects: list[Any]) -> None:
        out = effects
        while self._deadlines and self._deadlines[0][0] <= now_ms:
            _, op_id = heapq.heappop(self._deadlines)
            op = self._ops.get(op_id)
            if op is None:
                continue
            if isinstance(op, GetOp):
                self._progress_get(op_id, op, out, final=True)
            elif isinstance(op, PutOp):
                self._progress_put(op_id, op, out, final=True)
            elif isinstance(op, ScanOp):
                self._progress_scan(op_id, op, out, final=True)
            elif isinstance(op, ForwardOp):
                del self._ops[op_id]
                self._answer(
                    op.origin, "timeout", f"node {op.dest} did not answer the forwarded write", out
                )
            else:
                del self._ops[op_id]
                self._hints_inflight -= 1

    def _deliver_hints(self, now_ms: int, effects: list[Any]) -> None:
        for skey, raw in self.storage.scan(HINT):
            if self._hints_inflight >= HINT_BATCH:
                return
            target, key = split_hint_key(skey)
            if target == self.name or not self.membership.is_up(target):
                continue
            if any(isinstance(op, HintOp) and op.skey == skey for op in self._ops.values()):
                continue
            op_id = self._new_op(HintOp(skey, raw, target), now_ms)
            self._hints_inflight += 1
            self._send(target, m.ReplicaPut(op_id, key, raw, None), effects)

    # --- introspection -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "node": self.name,
            "members": [
                {
                    "name": x.name,
                    "address": x.address,
                    "state": x.state,
                    "incarnation": x.incarnation,
                }
                for x in self.membership.members()
            ],
        }

    def ring_info(self) -> dict[str, Any]:
        return {
            "partitions": self.ring.partitions,
            "n": self.config.n,
            "members": list(self.ring.members),
            "primary": self.ring.balance(1),
            "replicas": self.ring.balance(self.config.n),
        }
