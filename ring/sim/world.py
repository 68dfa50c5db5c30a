"""The simulated world: production node cores, their disks, their clocks and their lives.

Each node is a real ``ring.core.node.Node`` over a ``SimDisk`` (``ring.sim.disk``). The world
feeds it events (``Tick`` every ``tick_ms``, peer messages, datagrams, client requests) and
carries out its effects (``Send``/``SendDatagram`` through the simulated network, ``Reply`` back
to the client) the way ``ringd``'s runtime does: the effects of the events a node handles are
held until its **flush**, which comes 0-1 ms later (the end of a loop iteration), commits the
node's buffered writes to its disk's log (group commit) and only then sends them on.

Invariants:

* **time**: a node reads the virtual clock plus its own skew (``offset_ms``), never real time;
* **randomness**: each node gets a ``random.Random`` seeded from the run's one generator;
* **crash**: the ``Node`` object and all its in-flight state are dropped, with its uncommitted
  writes and unsent effects; what its disk committed persists. Its messages still in flight are
  lost or not (a coin per message: the process died with data in its socket buffers or not).
  TCP messages addressed to an earlier life of a node are dropped (the connection broke);
  datagrams reach whoever listens on the address;
* **power loss**: a crash that also loses the writes the disk had not written back yet;
* **graceful stop**: ``Node.stop`` runs, its writes are committed and its effects sent, then the
  node is dropped;
* **restart**: a new ``Node`` over the same disk with an incarnation above every one its
  previous life used, then ``start``; with **wipe** the disk is replaced by an empty one (a
  lost data directory — the node must then take a fresh actor epoch, kv679). The configuration
  of each life comes from ``make_config(name, address, life)``, so a layout can start a node
  differently after a restart (without seeds, as docker-compose's node1 once was);
* **observation**: put/delete coordination and replies are reported to an ``Observer`` (the
  history), which may read any node's storage: the world is ours to inspect.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack

from ring.core import messages as m
from ring.core.layout import HINT, RING_KEY
from ring.core.node import Node, NodeConfig
from ring.sim.disk import SimDisk
from ring.sim.network import Network, Packet, from_bytes
from ring.sim.scheduler import Scheduler

PORT = 7000
CLIENT_LATENCY_MS = (1, 3)
WRITE_BACK_MS = (500, 5000)  # how often the operating system writes a node's log back to disk


@dataclass(frozen=True, slots=True)
class Life:
    """What a (re)start of a node is like: which life it is, and whether its disk holds the
    ring of a cluster it served in (a node restarted without seeds needs one)."""

    generation: int
    remembers_ring: bool


def address_of(name: str) -> str:
    return f"{name}:{PORT}"


class Observer(Protocol):
    """What the world tells the history about."""

    def before_write(self, node: Node, req_id: int | None, op: str, args: dict[str, Any]) -> Any:
        """A put/del is about to be handled by ``node`` as its coordinator; returns a token."""

    def after_write(self, token: Any, node: Node) -> None: ...

    def committed(self, name: str) -> None:
        """``name`` committed its buffered writes (its group commit)."""

    def lost_uncommitted(self, name: str) -> None:
        """``name`` died with writes it had not committed: they never happened."""

    def reply_emitted(self, name: str, reply: m.Reply) -> None:
        """``name`` answered a client; called at once, before the reply travels."""

    def reply_delivered(self, reply: m.Reply) -> None: ...

    def reaped(self, name: str, key: bytes, raw: bytes, owners: tuple[str, ...]) -> None:
        """``name`` reaped its tombstone of ``key`` (``raw``); ``owners`` of the key's partition
        in its table."""


@dataclass(slots=True)
class Slot:
    """One machine: its disk survives its processes (``node``)."""

    name: str
    address: str
    storage: SimDisk
    node: Node | None = None
    generation: int = 0  # lives so far; a life ends with a crash or a stop
    incarnation: int = 0  # the next life starts above every incarnation used before
    offset_ms: int = 0  # clock skew
    crashed: set[int] = field(default_factory=set)  # generations that ended in a crash
    outbox: list[tuple[Any, Any]] = field(default_factory=list)  # (effect, cause) until flush
    flush_due: bool = False


class World:
    def __init__(
        self,
        names: list[str],
        make_config: Callable[[str, str, Life], NodeConfig],
        sched: Scheduler,
        rng: random.Random,
        counters: dict[str, int],
        trace: Any,
        observer: Observer,
        *,
        sync: bool = False,
        members: list[str] | None = None,
    ) -> None:
        self.sched = sched
        self.rng = rng
        self.counters = counters
        self.trace = trace
        self.observer = observer
        self.make_config = make_config
        self.sync = sync
        self.slots = {n: Slot(n, address_of(n), self._new_disk(n)) for n in names}
        self.names = list(names)
        # The nodes that belong to the cluster (the others are spares, not started yet, or
        # nodes that left or were removed for good: ``gone``).
        self.members: list[str] = list(members if members is not None else names)
        self.gone: list[str] = []
        self.admin: dict[int, Callable[[m.Reply], None]] = {}  # req_id -> who waits for it
        self._by_address = {s.address: s.name for s in self.slots.values()}
        self.network = Network(sched.after, rng, self._arrive, counters, trace)
        self._forwards: dict[tuple[str, int], int] = {}  # (origin, Forward.op_id) -> req_id
        self._next_req = 0

    # --- queries -------------------------------------------------------------------------------

    def now(self, name: str) -> int:
        return self.sched.now + self.slots[name].offset_ms

    def node(self, name: str) -> Node | None:
        return self.slots[name].node

    def up(self) -> list[str]:
        return [n for n in self.members if self.slots[n].node is not None]

    def down(self) -> list[str]:
        return [n for n in self.members if self.slots[n].node is None]

    def converged(self) -> bool:
        """Every member runs, serves, and sees every member up (and every node that is gone as
        left, or not at all), with the same settled table of all of them."""
        everyone = {n: "up" for n in self.members}
        epochs = set()
        for name in self.members:
            node = self.slots[name].node
            if node is None or not node.ready():
                return False
            seen = {x.name: x.state for x in node.membership.members()}
            for gone in self.gone:
                if seen.pop(gone, "left") != "left":
                    return False
            if seen != everyone:
                return False
            table = node.ring
            if table.members() != tuple(sorted(self.members)) or table.transfers_pending():
                return False
            epochs.add(table.epoch)
        return len(epochs) == 1

    def quiet(self) -> bool:
        """No request in progress anywhere and no hint left to hand off."""
        for name in self.members:  # a node that is gone keeps what its disk held
            slot = self.slots[name]
            if slot.node is not None and not slot.node.idle():
                return False
            if any(True for _ in slot.storage.committed().scan(HINT)):
                return False
        return True

    # --- lives ---------------------------------------------------------------------------------

    def start(self, name: str, *, wipe: bool = False) -> None:
        slot = self.slots[name]
        assert slot.node is None, f"{name} is already running"
        if wipe:
            slot.storage = self._new_disk(name)
        slot.generation += 1
        now = self.now(name)
        life = Life(slot.generation, slot.storage.get(RING_KEY) is not None)
        cfg = self.make_config(name, slot.address, life)
        node_rng = random.Random(self.rng.getrandbits(64))
        node = Node(cfg, slot.storage, now_ms=now, rng=node_rng, incarnation=slot.incarnation)
        slot.node = node
        reap = node.aae.delete

        def recorded(items: list[tuple[bytes, bytes]], node: Node = node) -> None:
            table = node.view.ring
            for skey, raw in items:
                owners = table.owners[table.partition_of(skey[1:])]
                self.observer.reaped(name, skey[1:], raw, owners)
            reap(items)

        node.aae.delete = recorded
        self._hold(slot, node.start(now), None)
        # Ticks start at a random phase, so nodes do not tick in lock step.
        self.sched.after(self.rng.randrange(1, cfg.tick_ms + 1), self._tick, name, slot.generation)
        self.sched.after(self.rng.randint(*WRITE_BACK_MS), self._write_back, name, slot.generation)

    def stop(self, name: str, *, graceful: bool, power_loss: bool = False) -> int:
        """End the node's life; returns how many committed batches a power loss took."""
        slot = self.slots[name]
        node = slot.node
        assert node is not None, f"{name} is not running"
        lost = 0
        if graceful:
            self._hold(slot, node.stop(self.now(name)), None)
            self._flush(name, slot.generation)
        else:
            slot.crashed.add(slot.generation)
            slot.outbox = []
            self.observer.lost_uncommitted(name)
            if power_loss:
                lost = slot.storage.power_loss(self.rng)
            else:
                slot.storage.crash()
        slot.incarnation = node.membership.incarnation + 1
        slot.node = None
        slot.flush_due = False
        return lost

    def _new_disk(self, name: str) -> SimDisk:
        disk = SimDisk(sync=self.sync)
        disk.on_commit = lambda: self.observer.committed(name)
        return disk

    def set_skew(self, name: str, offset_ms: int) -> None:
        self.slots[name].offset_ms = offset_ms

    # --- events into nodes ---------------------------------------------------------------------

    def _tick(self, name: str, generation: int) -> None:
        slot = self.slots[name]
        if slot.node is None or slot.generation != generation:
            return  # that life ended; its timer died with it
        self._handle(name, m.Tick())
        self.sched.after(slot.node.config.tick_ms, self._tick, name, generation)

    def _arrive(self, packet: Packet) -> None:
        slot = self.slots[packet.dst]
        if slot.node is None or (packet.tcp and slot.generation != packet.dst_gen):
            return
        src = self.slots[packet.src]
        if packet.src_gen in src.crashed and self.rng.random() < 0.5:
            return  # died in the sender's buffers
        msg = from_bytes(packet.payload)
        if packet.tcp:
            self._handle(packet.dst, m.PeerMessage(packet.src, msg))
        else:
            self._handle(packet.dst, m.Datagram(src.address, msg))

    def _handle(self, name: str, event: Any) -> None:
        slot = self.slots[name]
        node = slot.node
        assert node is not None
        token = self._observe_write(node, event)
        effects = node.handle(event, self.now(name))
        if token is not None:
            self.observer.after_write(token, node)
        self._hold(slot, effects, event)

    def _hold(self, slot: Slot, effects: list[Any], cause: Any) -> None:
        """Keep the effects until the node's flush (the end of its loop iteration)."""
        slot.outbox += [(e, cause) for e in effects]
        if slot.outbox and not slot.flush_due:
            slot.flush_due = True
            self.sched.after(self.rng.randint(0, 1), self._flush, slot.name, slot.generation)

    def _flush(self, name: str, generation: int) -> None:
        """Group commit, then the effects: no acknowledgement leaves before its write is in
        the log (``ringd``'s runtime keeps the same order)."""
        slot = self.slots[name]
        if slot.node is None or slot.generation != generation:
            return
        slot.flush_due = False
        slot.storage.commit()
        outbox, slot.outbox = slot.outbox, []
        for effect, cause in outbox:
            self._route(name, [effect], cause)

    def _write_back(self, name: str, generation: int) -> None:
        slot = self.slots[name]
        if slot.node is None or slot.generation != generation:
            return
        slot.storage.write_back()
        self.sched.after(self.rng.randint(*WRITE_BACK_MS), self._write_back, name, generation)

    def _observe_write(self, node: Node, event: Any) -> Any:
        if isinstance(event, m.ClientRequest) and event.op in ("put", "del"):
            req_id: int | None = event.req_id
            op, args = event.op, event.args
        elif isinstance(event, m.PeerMessage) and isinstance(event.msg, m.Forward):
            req_id = self._forwards.get((event.src, event.msg.op_id))
            op, args = event.msg.op, event.msg.args
        else:
            return None
        key = args.get("key") if isinstance(args, dict) else None
        if not isinstance(key, bytes):
            return None  # rejected
        if node.name not in node.preference_list(key):
            return None  # not a replica: it forwards the write (or refuses it)
        return self.observer.before_write(node, req_id, op, args)

    def _route(self, name: str, effects: list[Any], cause: Any) -> None:
        slot = self.slots[name]
        for e in effects:
            if isinstance(e, m.Send):
                dst = self.slots[e.dest]
                assert e.address == dst.address, f"{name} sends to {e.dest} at {e.address}"
                if dst.node is None:
                    self._count("refused")  # connection refused: nobody listens
                    continue
                if isinstance(e.msg, m.Forward):
                    # Which client request a forward carries (passed on again, it still does).
                    if isinstance(cause, m.ClientRequest):
                        self._forwards[(name, e.msg.op_id)] = cause.req_id
                    elif isinstance(cause, m.PeerMessage) and isinstance(cause.msg, m.Forward):
                        req = self._forwards.get((cause.src, cause.msg.op_id))
                        if req is not None:
                            self._forwards[(name, e.msg.op_id)] = req
                self.network.send(True, name, e.dest, e.msg, slot.generation, dst.generation)
            elif isinstance(e, m.SendDatagram):
                dest = self._by_address.get(e.address)
                if dest is not None:
                    self.network.send(False, name, dest, e.msg, slot.generation, 0)
            elif isinstance(e, m.Reply):
                self.observer.reply_emitted(name, e)
                wire = msgpack.packb([e.req_id, e.error, e.result], use_bin_type=True)
                self.sched.after(self._client_latency(), self._reply, name, slot.generation, wire)
            elif isinstance(e, m.Halt) and "left this cluster for good" in e.reason:
                # It was let go while it was down, and came back without the disk that knew.
                self.sched.after(0, self._retire, name, slot.generation)
            elif isinstance(e, m.Halt):
                raise AssertionError(f"{name} halted: {e.reason}")  # one config for all nodes
            elif isinstance(e, m.Retired):
                self.sched.after(0, self._retire, name, slot.generation)
            elif not isinstance(e, m.Log | m.Serving):
                raise TypeError(f"{name} returned an unknown effect {e!r}")

    def _retire(self, name: str, generation: int) -> None:
        """The node left the cluster (its data handed off): ringd exits; the machine stays off."""
        slot = self.slots[name]
        if slot.node is None or slot.generation != generation:
            return
        self._flush(name, generation)
        slot.node = None
        slot.flush_due = False
        self.set_gone(name)
        self._count("retired")

    def set_gone(self, name: str) -> None:
        if name in self.members:
            self.members.remove(name)
        if name not in self.gone:
            self.gone.append(name)

    # --- clients -------------------------------------------------------------------------------

    def new_req_id(self) -> int:
        self._next_req += 1
        return self._next_req

    def request(self, name: str, req_id: int, op: str, args: dict[str, Any]) -> None:
        """A client sends a request to ``name``; it is lost if that node dies before it lands."""
        wire = msgpack.packb([req_id, op, args], use_bin_type=True)
        slot = self.slots[name]
        if slot.node is None:
            return
        self.sched.after(self._client_latency(), self._request, name, slot.generation, wire)

    def _request(self, name: str, generation: int, wire: bytes) -> None:
        slot = self.slots[name]
        if slot.node is None or slot.generation != generation:
            return
        self.trace.update(wire)
        req_id, op, args = msgpack.unpackb(wire, raw=False, strict_map_key=False)
        self._handle(name, m.ClientRequest(req_id, op, args))

    def _reply(self, name: str, generation: int, wire: bytes) -> None:
        if generation in self.slots[name].crashed and self.rng.random() < 0.5:
            return
        self.trace.update(wire)
        req_id, error, result = msgpack.unpackb(wire, raw=False, strict_map_key=False)
        waiting = self.admin.pop(req_id, None)
        if waiting is not None:
            waiting(m.Reply(req_id, error, result))  # an operator's request (leave, remove)
        else:
            self.observer.reply_delivered(m.Reply(req_id, error, result))

    def _client_latency(self) -> int:
        return self.rng.randint(*CLIENT_LATENCY_MS)

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1
