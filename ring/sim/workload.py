"""Simulated clients: concurrent get / get_versioned / put / delete / scan over a few keys.

Each client runs one operation at a time against a random running node (any node coordinates
any request), waits for the answer, thinks a little, and goes on. The key space is small so that
clients collide and siblings appear. Rules that keep the history checkable:

* every put value is unique in the run (``b"c<client>-<n>"``), so a value names its operation;
* a put or delete carries, with some probability, the context of the client's last
  ``get_versioned`` of that key (possibly stale: that is allowed and makes siblings), and
  records which values that read returned;
* an answer that never comes (the node died, the request was lost) makes the outcome
  ``unknown`` after ``timeout_ms``: neither acknowledged nor failed;
* per-request quorums are sometimes raised (``w`` up to N, ``r`` anywhere in 1..N), never
  lowered below the cluster's ``w``: the wipe budget of the nemesis (W-1 lost disks per run)
  relies on it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ring.sim.history import History, Op
from ring.sim.scheduler import Scheduler
from ring.sim.world import World

FINAL_CLIENT = -1  # the liveness phase's reader


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    clients: int = 4
    keys: int = 4
    ops: int = 300  # operations issued in the safety phase, over all clients
    think_ms: int = 25  # pause between two operations of one client, uniform in 0..think_ms
    timeout_ms: int = 3000  # a client gives up waiting after this long
    use_context: float = 0.6  # chance a write uses the client's last context for the key
    read_back: float = 0.3  # chance a client reads its acknowledged write back at once
    # weights of get, getv, put, del, scan
    mix: tuple[float, float, float, float, float] = (1.0, 3.0, 4.0, 1.5, 0.3)


@dataclass(slots=True)
class Client:
    id: int
    writes: int = 0
    last_read: dict[bytes, tuple[tuple[bytes, ...], bytes]] = field(default_factory=dict)


class Workload:
    def __init__(
        self,
        world: World,
        sched: Scheduler,
        rng: random.Random,
        history: History,
        config: WorkloadConfig,
        *,
        n: int,
        w: int,
    ) -> None:
        self.world = world
        self.sched = sched
        self.rng = rng
        self.history = history
        self.config = config
        self.n = n
        self.w = w
        self.keys = [b"k%d" % i for i in range(config.keys)]
        self.clients = [Client(i) for i in range(config.clients)]
        self.issued = 0
        self.pending = 0
        self.issuing = False
        history.on_outcome = self._on_outcome

    # --- the safety-phase clients --------------------------------------------------------------

    def start(self) -> None:
        self.issuing = True
        for c in self.clients:
            self.sched.after(self.rng.randint(1, self.config.think_ms + 1), self._next, c)

    def stop(self) -> None:
        self.issuing = False

    @property
    def done(self) -> bool:
        """Every operation was issued and has an outcome."""
        return self.issued >= self.config.ops and self.pending == 0

    def _next(self, c: Client, read_back: bytes | None = None) -> None:
        """Issue the client's next operation: a random one, or a ``get_versioned`` of
        ``read_back``, the key it just wrote."""
        if not self.issuing or self.issued >= self.config.ops:
            return
        up = self.world.up()
        if not up:
            self.sched.after(50, self._next, c)
            return
        node = self.rng.choice(up)
        if read_back is not None:
            key, kind = read_back, "getv"
        else:
            key = self.rng.choice(self.keys)
            kind = self.rng.choices(("get", "getv", "put", "del", "scan"), self.config.mix)[0]
        op = Op(self.world.new_req_id(), c.id, kind, key, node, self.sched.now)
        args: dict[str, Any] = {"key": key}
        if kind == "scan":
            op.key = b""
            start = self.rng.choice([None, *self.keys])
            stop = self.rng.choice([None, *self.keys])
            op.scan = (start, stop, self.rng.random() < 0.3, self.rng.randint(1, 3))
            args = dict(zip(("start", "stop", "reverse", "limit"), op.scan, strict=True))
        elif kind in ("get", "getv"):
            if self.rng.random() < 0.2:
                args["r"] = self.rng.randint(1, self.n)
            op.r = args.get("r", 0)
        else:
            if kind == "put":
                c.writes += 1
                op.value = args["value"] = b"c%d-%d" % (c.id, c.writes)
            seen = c.last_read.get(key)
            if seen is not None and self.rng.random() < self.config.use_context:
                op.read_values, op.context = seen
                args["context"] = op.context
            op.w = self.w
            if self.rng.random() < 0.15:
                op.w = args["w"] = self.rng.randint(self.w, self.n)
        self.issued += 1
        self._send(op, args)

    def _send(self, op: Op, args: dict[str, Any]) -> None:
        self.pending += 1
        self.history.add_op(op)
        self.world.request(op.node, op.id, op.kind, args)
        self.sched.after(self.config.timeout_ms, self._timeout, op)

    def _timeout(self, op: Op) -> None:
        self.history.finish(op, "unknown")

    def _on_outcome(self, op: Op) -> None:
        self.pending -= 1
        if op.client == FINAL_CLIENT:
            return
        c = self.clients[op.client]
        if op.kind == "getv" and op.outcome == "ok":
            values, ctx, _ = op.result
            c.last_read[op.key] = (tuple(values), ctx)
        if op.acked and self.rng.random() < self.config.read_back:
            self.sched.after(0, self._next, c, op.key)
        else:
            self.sched.after(self.rng.randint(0, self.config.think_ms), self._next, c)

    # --- the liveness-phase reader -------------------------------------------------------------

    def final_read(self, key: bytes) -> Op:
        """``get_versioned`` with R=N through a random node: it sees every replica and its read
        repair makes them all equal."""
        op = Op(self.world.new_req_id(), FINAL_CLIENT, "getv", key, "", self.sched.now, final=True)
        op.node = self.rng.choice(self.world.up())
        op.r = self.n
        self._send(op, {"key": key, "r": self.n})
        return op
