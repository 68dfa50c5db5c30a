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
epoch stays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ring.common import MAX_KEY_BYTES, MAX_VALUE_BYTES
from ring.core import messages as m
from ring.core import validate
from ring.core.coordinator import Coordinator
from ring.core.hashring import HashRing
from ring.core.layout import ACTOR_KEY, RUNNING_KEY, Storage
from ring.core.membership import Membership, MembershipConfig, RandomSource
from ring.core.ops import Origin
from ring.core.validate import RequestError
from ring.core.view import StartupError, View, ViewConfig

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
    vnodes: int = 128
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

    def view_config(self) -> ViewConfig:
        return ViewConfig(
            name=self.name,
            address=self.address,
            cluster=self.cluster,
            seeds=self.seeds,
            new_cluster=self.new_cluster,
            n=self.n,
            partitions=self.partitions,
            vnodes=self.vnodes,
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
                    )
                )
        flag = b"1" if self.config.sync else b"0"
        self.storage.write([(RUNNING_KEY, flag)], sync=True)
        return actor

    # --- the parts, as tests and the simulator look at them -----------------------------------

    @property
    def membership(self) -> Membership:
        return self.view.membership

    @property
    def ring(self) -> HashRing:
        return self.view.ring

    def ready(self) -> bool:
        """Whether the node serves: it knows the whole ring and may coordinate requests."""
        return self.view.serving

    def preference_list(self, key: bytes) -> tuple[str, ...]:
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
            effects.append(m.Log(level, text + " (logged once; see the counters)"))

    def _after_view(self, effects: list[m.Effect]) -> None:
        for name, old, new in self.view.drain_changes():
            effects.append(m.Log("info", f"member {name}: {old or 'new'} -> {new}"))
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
        if op in ("get", "getv", "put", "del", "scan"):
            c.check_serving()
        if op in ("get", "getv"):
            key = validate.key(args, self.config.max_key_bytes)
            # The default R is capped by the replicas that exist, as W is.
            pl = c.preference_list(key)
            r = validate.quorum(args, "r", min(self.config.r, len(pl)), self.config.n)
            c.start_get(origin, key, r, op == "getv", now_ms, effects, pl)
        elif op in ("put", "del"):
            c.route_write(origin, op, args, now_ms, effects)
        elif op == "scan":
            c.start_scan(origin, args, now_ms, effects)
        elif op == "status":
            c.answer(origin, None, self.status(), effects)
        elif op == "ring":
            c.answer(origin, None, self.ring_info(), effects)
        else:
            raise RequestError("invalid", f"unknown operation {op!r}")

    # --- messages from peers -------------------------------------------------------------------

    def _peer_message(self, src: str, msg: Any, now_ms: int, effects: list[m.Effect]) -> None:
        c = self.coordinator
        if isinstance(msg, m.ReplicaPut):
            c.replica.on_put(src, msg, effects)
        elif isinstance(msg, m.ReplicaGet):
            c.replica.on_get(src, msg, effects)
        elif isinstance(msg, m.ScanRequest):
            c.replica.on_scan(src, msg, effects)
        elif isinstance(msg, m.Forward):
            c.forwarded(src, msg, now_ms, effects)
        else:
            c.reply(src, msg, now_ms, effects)

    # --- timers --------------------------------------------------------------------------------

    def _tick(self, now_ms: int, effects: list[m.Effect]) -> None:
        c = self.coordinator
        self._isolated(
            effects, "gossip timers", lambda: effects.extend(self.view.tick(now_ms, self.rng))
        )
        self._after_view(effects)
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

    # --- introspection -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "node": self.name,
            "serving": self.view.serving,
            "members": [
                {
                    "name": x.name,
                    "address": x.address,
                    "state": x.state,
                    "incarnation": x.incarnation,
                }
                for x in self.view.membership.members()
            ],
            "hints": self.coordinator.hints.counts(),
            "waiting_for": None if self.view.serving else self.view.waiting_for(),
        }

    def ring_info(self) -> dict[str, Any]:
        ring = self.view.ring
        return {
            "partitions": ring.partitions,
            "n": self.config.n,
            "members": list(ring.members),
            "primary": ring.balance(1),
            "replicas": ring.balance(self.config.n),
        }


def _what(event: Any) -> str:
    """What an event is, for an error report (a few fixed kinds: the log keeps one per kind)."""
    if type(event) is m.ClientRequest:
        return "a client request"
    if type(event) is m.PeerMessage:
        return f"a {type(event.msg).__name__} from a peer"
    return "a gossip datagram" if type(event) is m.Datagram else type(event).__name__
