"""The nemesis: the faults of the safety phase, and their end.

Each seed draws a ``FaultPlan`` (so different seeds explore different regimes: a lossy network,
long partitions, a node flapping, skewed clocks...) and the nemesis plays it:

* network loss, duplication and delay spikes at the plan's levels (``network.NetworkFaults``);
* partitions that come and go, one at a time: a symmetric split of the nodes in two groups, a
  one-way split (one group cannot reach the other, the other way works), or one node cut off
  one way or both ways;
* crashes and graceful stops, each followed by a restart after a while. At most ``max_down``
  nodes are down at once — a minority, so a quorum of the cluster stays alive most of the time —
  and once in a while one more, so that quorums do get lost; and in some runs, once, every node
  at once, with one of them staying down until the faults end;
* lost disks (kv679): a restart with a wiped storage; and power losses: a crash that also
  loses the writes its disk had not written back (without ``sync``, acknowledged ones too). At
  most W-1 such losses per run, the number a write acknowledged by W nodes is guaranteed to
  survive (there is no anti-entropy to re-replicate it in between); with ``sync`` a power loss
  loses nothing acknowledged and costs nothing. The founder ``n1`` (docker-compose's node1) is
  among the nodes that lose their disk and restart with their usual settings;
* clock skew: each node's clock is off by up to ``skew_ms``, drawn again at some restarts;
* ring changes (``changes`` of them per run, a few seconds apart, while the other faults go on):
  a spare node **joins**; a member is asked to **leave** (``leave`` through any live node,
  retried until accepted; the node exits once it handed off its data); or a member is killed for
  good and **removed** (``remove``, retried until the cluster sees it down and accepts; it counts
  against the lost-disk budget, since its replicas are gone). A ring change never takes the
  cluster below N members.

``stop`` ends every fault: the network heals and becomes loss-free, and every node that is down
restarts (with its disk).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ring.sim.history import History
from ring.sim.network import NetworkFaults
from ring.sim.scheduler import Scheduler
from ring.sim.world import World


@dataclass(frozen=True, slots=True)
class FaultPlan:
    network: NetworkFaults
    partition_every_ms: int  # mean pause between partitions; 0: none
    crash_every_ms: int  # mean pause between crashes; 0: none
    max_down: int
    wipes: int  # lost-disk budget of the run
    skew_ms: int
    wipe_chance: float = 0.3  # chance that a restart loses the disk, while the budget lasts
    power_chance: float = 0.0  # chance that a crash is a power loss
    sync: bool = False  # the nodes fsync every batch of writes
    full_restart: bool = False  # once, every node crashes; all but one come back soon
    changes: int = 0  # ring changes (join, leave, remove) during the run

    @staticmethod
    def draw(
        rng: random.Random,
        nodes: int,
        w: int,
        *,
        faults: bool = True,
        kv679: bool = False,
        power: bool = False,
        changes: bool = True,
    ) -> FaultPlan:
        """The seed's plan. ``kv679``: crashes are frequent and the first W-1 restarts lose
        their disk; ``power``: crashes are frequent and the first W-1 are power losses."""
        if not faults:
            # Latency still varies (replicas receive a write at different times), but a ping's
            # round trip stays within SWIM's probe period, so no node is ever suspected and
            # quorums stay strict.
            net = NetworkFaults(latency_max_ms=rng.choice((2, 10, 40)))
            sync = rng.random() < 0.25
            return FaultPlan(
                net, 0, 0, 0, 0, 0, sync=sync, changes=rng.choice((0, 1, 2)) if changes else 0
            )
        net = NetworkFaults(
            loss=rng.choice((0.0, 0.01, 0.03, 0.08)),
            duplicate=rng.choice((0.0, 0.02, 0.05)),
            spike=rng.choice((0.0, 0.01, 0.04)),
            spike_max_ms=1500,
            latency_min_ms=1,
            latency_max_ms=rng.choice((2, 5, 20)),
        )
        return FaultPlan(
            network=net,
            partition_every_ms=rng.choice((0, 400, 1200)),
            crash_every_ms=300 if kv679 or power else rng.choice((0, 300, 900)),
            max_down=max(0, (nodes - 1) // 2),
            wipes=(w - 1) if kv679 or power or rng.random() < 0.5 else 0,
            skew_ms=rng.choice((0, 30, 2000, 20_000)),
            wipe_chance=1.0 if kv679 else 0.0 if power else 0.3,
            power_chance=1.0 if power else 0.0 if kv679 else rng.choice((0.0, 0.2, 0.5)),
            sync=False if power else rng.random() < 0.25,
            full_restart=rng.random() < 0.15,
            changes=rng.choice((0, 1, 2, 3)) if changes else 0,
        )


class Nemesis:
    def __init__(
        self,
        world: World,
        sched: Scheduler,
        rng: random.Random,
        history: History,
        plan: FaultPlan,
        counters: dict[str, int],
        *,
        n: int = 3,
        spares: list[str] | None = None,
        long_down_ms: int = 0,
    ) -> None:
        # Some crashes keep the node down this long (to twice as long): longer than the
        # tombstone grace period and a few anti-entropy rounds, so that deletes it missed could
        # be reaped while it is away.
        self.long_down_ms = long_down_ms
        self.world = world
        self.sched = sched
        self.rng = rng
        self.history = history
        self.plan = plan
        self.counters = counters
        self.active = False
        self.wipes_left = plan.wipes
        self._partition = 0  # id of the partition in force, 0: none
        self.n = n
        self.spares = list(spares or [])
        self.changes_left = plan.changes
        self.lost: set[str] = set()  # killed for good (being removed): never restarted
        self.leaving: set[str] = set()  # asked to leave
        self.requests: set[tuple[str, str]] = set()  # leave/remove requests not accepted yet

    def skew_clocks(self) -> None:
        """Before the nodes boot: give each its clock offset."""
        if self.plan.skew_ms:
            for name in self.world.names:
                self._skew(name)

    def start(self) -> None:
        self.active = True
        self.world.network.faults = self.plan.network
        if self.plan.partition_every_ms:
            self.sched.after(self._pause(self.plan.partition_every_ms), self._partition_now)
        if self.plan.crash_every_ms:
            self.sched.after(self._pause(self.plan.crash_every_ms), self._crash_now)
        if self.plan.full_restart:
            self.sched.after(self.rng.randint(200, 3000), self._restart_all)
        if self.changes_left:
            self.sched.after(self.rng.randint(100, 2000), self._change_now)

    def stop(self) -> None:
        """The end of the safety phase: heal everything and restart every node that is down."""
        self.active = False
        self._partition = 0
        self.world.network.heal()
        self.world.network.faults = NetworkFaults()
        self.world.network.new_epoch()
        for name in self.world.down():
            if name not in self.lost:
                self.world.start(name)
                self._count("restart")

    # --- partitions ----------------------------------------------------------------------------

    def _partition_now(self) -> None:
        if not self.active:
            return
        names = list(self.world.members)
        self.rng.shuffle(names)
        if self.rng.random() < 0.3:
            side, rest = names[:1], names[1:]  # one node cut off
        else:
            cut = self.rng.randint(1, len(names) - 1)
            side, rest = names[:cut], names[cut:]
        one_way = self.rng.random() < 0.4
        for a in side:
            for b in rest:
                self.world.network.block(a, b)
                if not one_way:
                    self.world.network.block(b, a)
        self._count("partition_one_way" if one_way else "partition")
        self._partition += 1
        self.sched.after(self.rng.randint(100, 1500), self._heal, self._partition)

    def _heal(self, partition: int) -> None:
        if not self.active or partition != self._partition:
            return
        self.world.network.heal()
        self.sched.after(self._pause(self.plan.partition_every_ms), self._partition_now)

    # --- crashes, stops, lost disks ------------------------------------------------------------

    def _crash_now(self) -> None:
        if not self.active:
            return
        self.sched.after(self._pause(self.plan.crash_every_ms), self._crash_now)
        up, down = self.world.up(), self.world.down()
        limit = self.plan.max_down + (1 if self.rng.random() < 0.1 else 0)
        if len(down) >= limit or len(up) <= 1:
            return
        name = self.rng.choice(up)
        graceful = self.rng.random() < 0.2
        power = not graceful and self.rng.random() < self.plan.power_chance
        if power and not self.plan.sync:
            if self.wipes_left <= 0:
                power = False  # the budget of losses is spent: a plain crash
            else:
                self.wipes_left -= 1
                self.history.last_wipe_ms = self.sched.now
        lost = self.world.stop(name, graceful=graceful, power_loss=power)
        self._count("stop" if graceful else "power_loss" if power else "crash")
        if lost:
            self._count("batches_lost")
        if self.long_down_ms and self.rng.random() < 0.15:
            self._count("long_outage")
            self.sched.after(
                self.rng.randint(self.long_down_ms, 2 * self.long_down_ms), self._restart, name
            )
            return
        self.sched.after(self.rng.randint(50, 2000), self._restart, name)

    def _restart_all(self) -> None:
        """The whole cluster goes down at once (a power cut of the rack, a bad deploy); all
        but one node come back after a while, the last only when the faults end — the others
        must serve without it (they remember it: it stays in their ring, down)."""
        if not self.active:
            return
        names = self.world.up()
        for name in names:
            self.world.stop(name, graceful=False)
        self._count("full_restart")
        for name in names[:-1]:
            self.sched.after(self.rng.randint(50, 2000), self._restart, name)

    def _restart(self, name: str) -> None:
        if not self.active or self.world.node(name) is not None:
            return
        if name in self.lost or name not in self.world.members:
            return  # removed, or gone
        wipe = self.wipes_left > 0 and self.rng.random() < self.plan.wipe_chance
        if wipe:
            self.wipes_left -= 1
            self.history.last_wipe_ms = self.sched.now
            self._count("wipe")
        if self.plan.skew_ms and self.rng.random() < 0.3:
            self._skew(name)
        self.world.start(name, wipe=wipe)
        self._count("restart")

    # --- ring changes --------------------------------------------------------------------------

    def _change_now(self) -> None:
        if not self.active or self.changes_left <= 0:
            return
        self.changes_left -= 1
        self.sched.after(self.rng.randint(1000, 4000), self._change_now)
        members = [x for x in self.world.members if x not in self.lost | self.leaving]
        kinds = ["join"] if self.spares else []
        if len(members) > self.n:
            kinds.append("leave")
            if self.wipes_left > 0:
                kinds.append("remove")
        if not kinds:
            return
        kind = self.rng.choice(kinds)
        self._count(kind)
        if kind == "join":
            spare = self.spares.pop(0)
            self.world.members.append(spare)
            self.world.start(spare)
        elif kind == "leave":
            name = self.rng.choice(members)
            self.leaving.add(name)
            self._admin("leave", name)
        else:
            name = self.rng.choice(members)
            self.wipes_left -= 1
            self.history.last_wipe_ms = self.sched.now
            self.lost.add(name)
            if self.world.node(name) is not None:
                self.world.stop(name, graceful=False)
            self.sched.after(self.rng.randint(600, 1500), self._admin, "remove", name)

    def _admin(self, op: str, name: str, attempt: int = 0) -> None:
        """An operator's ``ringctl leave|remove NAME`` through a live node, retried (also after
        the faults ended) until the cluster accepts it."""
        if name in self.world.gone or attempt > 200:
            self.requests.discard((op, name))
            return
        self.requests.add((op, name))
        vias = [x for x in self.world.up() if x != name]
        if not vias:
            self.sched.after(300, self._admin, op, name, attempt + 1)
            return
        req_id = self.world.new_req_id()
        done: list[bool] = []

        def answered(reply: Any) -> None:
            done.append(True)
            # A node removed before it joined (the cluster never heard of it) is out too.
            never = op == "remove" and "is not a member of the ring" in str(reply.result)
            if reply.error is None or "already" in str(reply.result) or never:
                self.requests.discard((op, name))
                if op == "remove":
                    self.world.set_gone(name)
                return
            self.sched.after(300, self._admin, op, name, attempt + 1)

        def timed_out() -> None:
            if not done:
                self.world.admin.pop(req_id, None)
                self._admin(op, name, attempt + 1)

        self.world.admin[req_id] = answered
        self.world.request(self.rng.choice(vias), req_id, op, {"name": name})
        self.sched.after(2500, timed_out)

    # --- helpers -------------------------------------------------------------------------------

    def _skew(self, name: str) -> None:
        offset = self.rng.randint(-self.plan.skew_ms, self.plan.skew_ms)
        self.world.set_skew(name, offset)
        self._count("skew")

    def _pause(self, mean_ms: int) -> int:
        return max(1, int(self.rng.expovariate(1.0 / mean_ms)))

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1
