"""One simulated run, from a seed: boot, safety phase, liveness phase, checks.

1. **Boot**: every node starts (seeds: every address) and gossip must bring them all up in each
   other's view, with one common ring, within ``boot_ms``.
2. **Safety**: the clients issue ``ops`` operations while the nemesis injects the seed's faults.
3. **Liveness**: faults end (heal, loss-free network, every node restarted). Within
   ``converge_ms`` of virtual time the cluster must converge: every node up in every view,
   no request in progress, every hint handed off. Then, before any read, every replica must
   hold every acknowledged write (check 7: hinted handoff alone brings it there); then an R=N
   ``get_versioned`` of every key (whose read repair equalises the replicas) must succeed, and
   the replicas must settle.
4. **Checks** (``ring.sim.checkers``) on the history and on every replica's stored records.

Everything derives from ``random.Random(seed)``; the same seed gives the same run, whose
``trace_hash`` digests every delivered message and every client outcome.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ring.core import record as rec
from ring.core.layout import DATA
from ring.core.membership import MembershipConfig
from ring.core.node import NodeConfig
from ring.sim import checkers
from ring.sim.history import History, Op, Violation
from ring.sim.nemesis import FaultPlan, Nemesis
from ring.sim.network import new_trace
from ring.sim.scheduler import Scheduler
from ring.sim.workload import Workload, WorkloadConfig
from ring.sim.world import Life, World, address_of

START_MS = 1_000_000
STEP_MS = 50


@dataclass(frozen=True, slots=True)
class SimConfig:
    nodes: int = 5
    n: int = 3
    r: int = 2
    w: int = 2
    ops: int = 200
    clients: int = 4
    keys: int = 4
    faults: bool = True
    kv679: bool = False  # every restart loses its disk, up to W-1 per run
    power: bool = False  # every crash is a power loss (without sync), up to W-1 per run
    blind: bool = False  # writers never pass a context (the sibling bound is then #actors)
    sync: bool | None = None  # nodes fsync every batch; None: drawn per seed
    spares: int = 1  # nodes that may join during the run
    changes: bool = True  # the nemesis joins, leaves and removes nodes (how many: per seed)
    min_changes: int = 0  # at least this many ring changes per run (the drawn number, if more)
    boot_ms: int = 10_000
    converge_ms: int = 30_000
    aae_interval_ms: int = 1_000  # anti-entropy: each partition compared this often
    # Tombstones are reaped once every replica holds them and this long after the delete: longer
    # than a record can travel in the simulated network (spikes of 1.5 s, request timeouts, held
    # requests), so that no late message carries back a value a reaped delete had superseded.
    tombstone_grace_ms: int = 5_000

    def node_config(self, name: str, address: str, life: Life, *, sync: bool = False) -> NodeConfig:
        """The cluster's node configuration; timers are shorter than the defaults so that a few
        virtual seconds see failures detected, hints handed off and nodes rejoining.

        The layout is docker-compose's: ``n1`` founds the cluster (``new_cluster``) with the
        others as its seeds, so a wiped ``n1`` restarted with the same settings must rejoin, not
        found a second cluster; every other node has the rest as seeds — except that ``n2``
        restarts *without* seeds (it finds its cluster through the ring it remembers) when its
        disk holds one (a node that holds no cluster and has no seeds is refused, and the
        operator gives it some)."""
        others = tuple(address_of(f"n{i}") for i in range(1, self.nodes + 1) if f"n{i}" != name)
        seedless = name == "n2" and life.generation > 1 and life.remembers_ring
        return NodeConfig(
            name=name,
            address=address,
            seeds=() if seedless else others,
            new_cluster=name == "n1",
            sync=sync,
            n=self.n,
            r=self.r,
            w=self.w,
            partitions=64,
            handoff_rate_mb_s=1000.0,
            aae_interval_ms=self.aae_interval_ms,
            tombstone_grace_ms=self.tombstone_grace_ms,
            aae_rebuild_ms=30_000,
            request_timeout_ms=1000,
            tick_ms=20,
            hint_retry_ms=200,
            membership=MembershipConfig(
                probe_interval_ms=100,
                ack_timeout_ms=40,
                suspect_timeout_ms=500,
                sync_interval_ms=2000,
                join_retry_ms=300,
            ),
        )

    def command(self) -> str:
        """The options that reproduce a run of this configuration from the command line."""
        return (
            f"python -m ring.sim --nodes {self.nodes} --n {self.n} --r {self.r} --w {self.w} "
            f"--ops {self.ops}"
            + ("" if self.keys == 4 else f" --keys {self.keys}")
            + ("" if self.faults else " --no-faults")
            + (" --kv679" if self.kv679 else "")
            + (" --power" if self.power else "")
            + (" --blind" if self.blind else "")
            + ("" if self.sync is None else " --sync" if self.sync else " --no-sync")
            + ("" if self.changes else " --no-changes")
            + (f" --min-changes {self.min_changes}" if self.changes and self.min_changes else "")
            + ("" if self.spares == 1 else f" --spares {self.spares}")
        )


@dataclass(slots=True)
class RunResult:
    seed: int
    ops: int
    acked: int
    counters: dict[str, int]
    violations: list[Violation]
    trace_hash: str
    virtual_ms: int
    events: int
    history: History | None = field(default=None, repr=False)


def run_seed(seed: int, config: SimConfig | None = None) -> RunResult:
    cfg = config or SimConfig()
    rng = random.Random(seed)
    sched = Scheduler(START_MS)
    trace = new_trace()
    counters: dict[str, int] = {}
    members = [f"n{i}" for i in range(1, cfg.nodes + 1)]
    spares = [f"n{i}" for i in range(cfg.nodes + 1, cfg.nodes + cfg.spares + 1)]
    world: World
    history = History(
        lambda: sched.now, lambda: [(n, s.storage.committed()) for n, s in world.slots.items()]
    )
    history.trace = trace
    # The nodes that run or may run again (one that left or was removed never does).
    history.live = lambda: [(n, s.storage) for n, s in world.slots.items() if n not in world.gone]
    plan = FaultPlan.draw(
        rng,
        cfg.nodes,
        cfg.w,
        faults=cfg.faults,
        kv679=cfg.kv679,
        power=cfg.power,
        changes=cfg.changes and bool(spares or cfg.nodes > cfg.n),
    )
    if cfg.sync is not None:
        plan = dataclasses.replace(plan, sync=cfg.sync)
    if cfg.changes and cfg.min_changes > plan.changes and (spares or cfg.nodes > cfg.n):
        # After the draw: the seed's other faults (and every draw after) stay the same.
        plan = dataclasses.replace(plan, changes=cfg.min_changes)
    sync = plan.sync

    def make_config(name: str, address: str, life: Life) -> NodeConfig:
        return cfg.node_config(name, address, life, sync=sync)

    world = World(
        members + spares, make_config, sched, rng, counters, trace, history, sync=sync,
        members=members,
    )  # fmt: skip
    nemesis = Nemesis(
        world, sched, rng, history, plan, counters, n=cfg.n, spares=spares,
        long_down_ms=cfg.tombstone_grace_ms + 3 * cfg.aae_interval_ms,
    )  # fmt: skip
    wl_cfg = WorkloadConfig(
        clients=cfg.clients, keys=cfg.keys, ops=cfg.ops, use_context=0.0 if cfg.blind else 0.6
    )
    workload = Workload(world, sched, rng, history, wl_cfg, n=cfg.n, w=cfg.w)
    violations: list[Violation] = []

    # 1. boot
    nemesis.skew_clocks()
    for name in members:
        world.start(name)
    if not _run_until(sched, world.converged, cfg.boot_ms):
        violations.append(Violation("liveness", None, f"boot: {_why_not(world)}"))

    # 2. safety
    if not violations:
        nemesis.start()
        workload.start()
        _run_until(sched, lambda: workload.done, 600_000)
        workload.stop()

    # 3. liveness
    final_reads: dict[bytes, Op] = {}
    replicas: dict[bytes, dict[str, rec.Record]] = {}
    if not violations:
        nemesis.stop()
        deadline = sched.now + cfg.converge_ms
        # The operator's leave/remove requests still retried count as work not done.
        settled = lambda: (  # noqa: E731
            not nemesis.requests and world.network.drained() and world.converged() and world.quiet()
        )
        ok = _run_until(sched, settled, cfg.converge_ms)
        if ok:  # before any read repairs anything
            violations += checkers.check_replicated(history, _replicas(world, workload.keys))
            # Anti-entropy alone (still no read) makes every replica of a key equal, and brings
            # back what lost disks held.
            agree = lambda: world.quiet() and _replicas_agree(world, workload.keys)  # noqa: E731
            if _run_until(sched, agree, max(0, deadline - sched.now)):
                violations += checkers.check_replicated(
                    history, _replicas(world, workload.keys), since_wipe=False
                )
            else:
                violations.append(
                    Violation(
                        "replicas-differ",
                        None,
                        "anti-entropy did not make the replicas equal before the deadline: "
                        + _differing(world, workload.keys),
                    )
                )
        ok = ok and _final_reads(sched, workload, final_reads, deadline)
        # Read repair is fire-and-forget: let it land, then the cluster must be quiet again.
        sched.run_until(sched.now + 200)
        ok = ok and _run_until(sched, world.quiet, max(0, deadline - sched.now))
        if ok:
            violations += checkers.check_placement(
                final_reads, _holders(world, workload.keys), cfg.n
            )
            violations += checkers.check_trees(
                (name, node) for name in world.members if (node := world.node(name)) is not None
            )
        if not ok:
            violations.append(
                Violation(
                    "liveness",
                    None,
                    f"not converged {cfg.converge_ms} ms after the "
                    f"heal: {_why_not(world, final_reads)}",
                )
            )
        else:
            replicas = _replicas(world, workload.keys)
            violations += _reap_phase(sched, world, workload.keys, cfg)

    # 4. checks
    violations += history.violations
    violations += checkers.check_reads(history)
    if replicas:
        violations += checkers.check_final(history, replicas, final_reads, sched.now)
    if not cfg.faults:
        violations += checkers.check_read_your_writes(history, cfg.n, cfg.r, cfg.w)
    for key in sorted(replicas):
        for name, r in sorted(replicas[key].items()):
            trace.update(f"{key!r}{name}{r!r}".encode())
    ops = [op for op in history.ops.values() if not op.final]
    return RunResult(
        seed=seed,
        ops=len(ops),
        acked=sum(1 for op in ops if op.acked),
        counters=counters,
        violations=violations,
        trace_hash=trace.hexdigest(),
        virtual_ms=sched.now - START_MS,
        events=sched.events,
        history=history,
    )


def _run_until(sched: Scheduler, cond: Callable[[], bool], limit_ms: int) -> bool:
    """Run in steps until ``cond()`` holds, for at most ``limit_ms``; returns whether it held."""
    end = sched.now + limit_ms
    while not cond():
        if sched.now >= end:
            return False
        sched.run_until(min(end, sched.now + STEP_MS))
    return True


def _final_reads(
    sched: Scheduler, workload: Workload, out: dict[bytes, Op], deadline_ms: int
) -> bool:
    """An R=N ``get_versioned`` of every key, retried until it succeeds or the deadline."""
    todo = list(workload.keys)
    while todo:
        ops = [workload.final_read(k) for k in todo]
        answered = lambda ops=ops: all(op.outcome != "pending" for op in ops)  # noqa: E731
        _run_until(sched, answered, max(0, deadline_ms - sched.now))
        for op in ops:
            out[op.key] = op
        todo = [op.key for op in ops if op.outcome != "ok"]
        if todo and sched.now >= deadline_ms:
            return False
    return True


def _replicas(world: World, keys: list[bytes]) -> dict[bytes, dict[str, rec.Record]]:
    out: dict[bytes, dict[str, rec.Record]] = {}
    for key in keys:
        by_node: dict[str, rec.Record] = {}
        for name in world.members:
            node = world.node(name)
            assert node is not None
            if name in node.preference_list(key):
                raw = node.storage.get(DATA + key)
                by_node[name] = rec.EMPTY if raw is None else rec.decode(raw)
        out[key] = by_node
    return out


def _reap_phase(
    sched: Scheduler, world: World, keys: list[bytes], cfg: SimConfig
) -> list[Violation]:
    """5. With every node up and quiet, every tombstone is reaped within the grace period and a
    few anti-entropy rounds, and nothing else changes: live records stay as they were, and no
    deleted key comes back."""
    before = _replicas(world, keys)
    deleted = [k for k, by in before.items() if all(r.is_deleted for r in by.values())]

    def reaped() -> bool:
        return world.quiet() and not any(
            world.slots[n].storage.get(DATA + k) is not None for n in world.members for k in deleted
        )

    limit = cfg.tombstone_grace_ms + 10 * cfg.aae_interval_ms
    if not _run_until(sched, reaped, limit):
        left = [
            f"{k!r} on {n}"
            for k in deleted
            for n in world.members
            if world.slots[n].storage.get(DATA + k) is not None
        ]
        return [
            Violation(
                "liveness",
                None,
                f"tombstones not reaped {limit} ms after the heal: {', '.join(left[:6])}",
            )
        ]
    out = []
    after = _replicas(world, keys)
    for key in sorted(keys):
        if key in deleted:
            continue
        if after[key] != before[key]:
            out.append(
                Violation("reaping-changed-data", key, f"{before[key]!r} became {after[key]!r}")
            )
    return out


def _replicas_agree(world: World, keys: list[bytes]) -> bool:
    """Every key's owners hold the same bytes (or all none)."""
    return not _differing(world, keys)


def _differing(world: World, keys: list[bytes]) -> str:
    out = []
    for key in keys:
        held: dict[str, bytes | None] = {}
        for name in world.members:
            node = world.node(name)
            if node is None:
                return f"{name} is down"
            if name in node.preference_list(key):
                held[name] = node.storage.get(DATA + key)
        if len(set(held.values())) > 1:
            out.append(f"{key!r} on {sorted(n for n, v in held.items() if v is not None)}")
    return ", ".join(out)


def _holders(world: World, keys: list[bytes]) -> dict[bytes, tuple[set[str], set[str]]]:
    """For each key: the members whose disk holds a record of it, and its owners."""
    out: dict[bytes, tuple[set[str], set[str]]] = {}
    for key in keys:
        held: set[str] = set()
        owners: set[str] = set()
        for name in world.members:
            node = world.node(name)
            assert node is not None
            owners = set(node.preference_list(key))
            if world.slots[name].storage.committed().get(DATA + key) is not None:
                held.add(name)
        out[key] = (held, owners)
    return out


def _why_not(world: World, final_reads: dict[bytes, Op] | None = None) -> str:
    parts = []
    for name in world.members:
        node = world.node(name)
        if node is None:
            parts.append(f"{name} is down")
            continue
        view = {x.name: x.state for x in node.membership.members()}
        wrong = {n: s for n, s in view.items() if s != ("left" if n in world.gone else "up")}
        missing = [n for n in world.members if n not in view]
        table = node.table
        if table is None:
            parts.append(f"{name} has no table")
        else:
            if table.members() != tuple(sorted(world.members)):
                parts.append(f"{name}'s table names {table.members()}")
            if table.transfers_pending():
                parts.append(
                    f"{name}'s table (epoch {table.epoch}) has {table.transfers_pending()} "
                    f"transfers pending ({len(table.pending)} moving, done "
                    f"{sum(len(d) for d in table.done.values())}, {len(table.cleanup)} to clean)"
                )
        if wrong:
            parts.append(f"{name} sees {wrong}")
        if missing:
            parts.append(f"{name} does not know {missing}")
        if not node.idle():
            parts.append(f"{name} has requests in progress")
    if not world.network.drained():
        parts.append("packets sent before the heal are still in flight")
    hints = sum(1 for n in world.members for _ in world.slots[n].storage.committed().scan(b"h"))
    if hints:
        parts.append(f"{hints} hints not handed off")
    for key, op in sorted((final_reads or {}).items()):
        if op.outcome != "ok":
            parts.append(f"final read of {key!r}: {op.outcome} {op.error} {op.result}")
    return "; ".join(parts) or "(converged at the last moment)"
