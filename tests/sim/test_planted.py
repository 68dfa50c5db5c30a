"""The checker is not blind: bugs planted in the core through monkeypatching are caught.

Each planted bug must be reported within ``MAX_SEEDS`` seeds, and the command line must exit
non-zero with ``RINGKV_SIM_SEED=<n>`` and the replay command. The core is patched only here; a
patch is undone when the test ends.
"""

from __future__ import annotations

from typing import Any

import pytest

from ring.core import aae as aae_mod
from ring.core import handoff as handoff_mod
from ring.core import node as node_mod
from ring.core import record as rec
from ring.core.coordinator import Coordinator
from ring.core.layout import DATA, RUNNING_KEY
from ring.core.table import Draft, Table
from ring.sim import SimConfig, run_seed
from ring.sim.__main__ import main
from ring.sim.world import World
from ring.storage.memory import MemoryStorage

MAX_SEEDS = 50

# Every run joins, leaves or removes nodes (the drawn number of ring changes, at least 3), and
# the clients spread over more keys, so that a write that missed a replica is not soon covered
# by a later write of the same key.
RING_CHANGES = SimConfig(min_changes=3, keys=32)
# Clients spread over more keys: a key's tombstone often outlives the grace period (and is
# reaped) while the run's faults go on.
MANY_KEYS = SimConfig(keys=32)


def first_caught(config: SimConfig | None = None) -> tuple[int, set[str]]:
    """The first seed with a violation, and the kinds of violation it reported."""
    for seed in range(MAX_SEEDS):
        result = run_seed(seed, config)
        if result.violations:
            return seed, {v.kind for v in result.violations}
    pytest.fail(f"planted bug not caught in {MAX_SEEDS} seeds")


def test_ack_before_w_replicas_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A coordinator that answers the client as soon as it stored the write itself (W=1)."""
    original = Coordinator.progress_put

    def hasty(self: Any, op_id: int, op: Any, effects: list[Any], final: bool = False) -> None:
        op.w = 1
        original(self, op_id, op, effects, final)

    monkeypatch.setattr(Coordinator, "progress_put", hasty)
    _, kinds = first_caught()
    assert "ack-before-quorum" in kinds


def test_merge_that_keeps_only_the_newest_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Last-writer-wins instead of siblings: concurrent writes are silently dropped."""
    reconcile = rec.reconcile

    def newest_only(a: rec.Record, b: rec.Record) -> rec.Record:
        merged = reconcile(a, b)
        if not merged.siblings:
            return merged
        newest = max(merged.siblings, key=lambda s: (s.ts_ms, s.actor, s.counter))
        return rec.Record((newest,), merged.context)

    monkeypatch.setattr(rec, "reconcile", newest_only)
    _, kinds = first_caught()
    assert kinds & {"write-lost", "acknowledged-write-lost"}


def test_delete_without_a_tombstone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A delete removes the key from storage (on the coordinator and the replicas) instead of
    keeping a tombstone: stale replicas, hints and read repair bring the value back."""
    put = MemoryStorage.put

    def forgetful(self: MemoryStorage, key: bytes, value: bytes) -> None:
        if key.startswith(DATA) and rec.decode(value).is_deleted:
            self.write((), [key])
        else:
            put(self, key, value)

    monkeypatch.setattr(MemoryStorage, "put", forgetful)
    _, kinds = first_caught()
    assert kinds & {"ack-without-write", "deleted-value-came-back", "acknowledged-write-lost"}


def test_kv679_actor_without_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node whose actor is its bare name: after a lost disk it reuses its old counters."""
    monkeypatch.setattr(node_mod.Node, "_load_actor", lambda self: self.name)
    _, kinds = first_caught(SimConfig(kv679=True))
    assert "dot-reused" in kinds


def test_command_line_names_the_seed_and_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(node_mod.Node, "_load_actor", lambda self: self.name)
    seed, _ = first_caught(SimConfig(kv679=True))
    assert main(["--kv679", "--seeds", "1", "--seed-start", str(seed)]) == 1
    out = capsys.readouterr().out
    assert f"RINGKV_SIM_SEED={seed}:" in out
    assert f"replay: RINGKV_SIM_SEED={seed} python -m ring.sim --nodes 5 --n 3 --r 2 --w 2" in out
    assert "--kv679" in out and f"violations: 1 seed(s): [{seed}]" in out


def test_unclean_restart_that_keeps_its_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node that keeps its actor after a power loss (it ignores the missing clean-stop mark):
    the writes the loss took come back as new writes with the same dots (kv679, partial loss)."""
    load_actor = node_mod.Node._load_actor

    def careless(self: Any) -> str:
        self.storage.write((), [RUNNING_KEY], sync=True)
        return load_actor(self)

    monkeypatch.setattr(node_mod.Node, "_load_actor", careless)
    _, kinds = first_caught(SimConfig(power=True, w=3))
    assert "dot-reused" in kinds


def test_coordinator_that_keeps_no_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    """A coordinator that keeps no hint for the replicas that did not store a write (down, or
    not acknowledged by the time the client was answered): they never get it by handoff."""
    monkeypatch.setattr(Coordinator, "_store_hint", lambda self, target, key, record, epoch: None)
    _, kinds = first_caught()
    assert "acknowledged-write-not-replicated" in kinds


def test_acknowledgement_sent_before_the_group_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell that sends a node's effects as soon as the core returns them, and commits the
    writes later: an acknowledgement leaves while the write is only in memory."""

    def hasty(self: World, slot: Any, effects: list[Any], cause: Any) -> None:
        for effect in effects:
            self._route(slot.name, [effect], cause)
        if not slot.flush_due:
            slot.flush_due = True
            self.sched.after(self.rng.randint(0, 1), self._flush, slot.name, slot.generation)

    monkeypatch.setattr(World, "_hold", hasty)
    _, kinds = first_caught()
    assert "ack-before-quorum" in kinds


def test_blind_write_that_supersedes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A put without a context that keeps every sibling: siblings pile up with every write."""
    write = rec.write

    def hoarding(
        local: rec.Record, actor: str, value: Any, ts: int, context: Any = None, floor: int = 0
    ) -> Any:
        return write(local, actor, value, ts, {} if context is None else context, floor)

    def hoarding_encoded(
        raw: bytes | None, actor: str, value: bytes, ts: int, floor: int = 0
    ) -> bytes:
        local = rec.EMPTY if raw is None else rec.decode(raw)
        return rec.encode(hoarding(local, actor, value, ts, None, floor))

    monkeypatch.setattr(rec, "write", hoarding)
    monkeypatch.setattr(rec, "blind_write_encoded", hoarding_encoded)  # the put fast path
    _, kinds = first_caught(SimConfig(blind=True))
    assert "too-many-siblings" in kinds
    # The bound is tight with context writers too (stale context writes only add to it).
    _, kinds = first_caught()
    assert "too-many-siblings" in kinds


def test_read_that_answers_after_one_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    """A coordinator that answers a read after the first replica, whatever R: without faults,
    R + W > N no longer guarantees that a read sees the last acknowledged write."""
    original = Coordinator.progress_get

    def hasty(self: Any, op_id: int, op: Any, effects: list[Any], final: bool = False) -> None:
        op.r = 1
        original(self, op_id, op, effects, final)

    monkeypatch.setattr(Coordinator, "progress_get", hasty)
    _, kinds = first_caught(SimConfig(faults=False))
    assert "stale-quorum-read" in kinds


def clean_without_the_patch(monkeypatch: pytest.MonkeyPatch, seed: int, config: SimConfig) -> None:
    """The seeds scanned up to ``seed`` hold no violation once the patch is undone: what was
    caught is the planted bug, not one of the unpatched code."""
    monkeypatch.undo()
    for s in range(seed + 1):
        result = run_seed(s, config)
        assert not result.violations, f"seed {s} unpatched: {result.violations[0]}"


def test_ownership_moved_before_the_transfer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A claimant that counts every receiver as done at once: a partition switches to its new
    owners before they copied it, and the old ones delete their copy."""
    maybe_switch = Draft._maybe_switch

    def hasty(self: Draft, p: int) -> None:
        pend = self.pending.get(p)
        if pend is not None:
            receivers = {x for x in pend if x not in self.owners[p]}
            self.done[p] = self.done.get(p, frozenset()) | receivers
        maybe_switch(self, p)

    monkeypatch.setattr(Draft, "_maybe_switch", hasty)
    seed, kinds = first_caught(RING_CHANGES)
    assert "acknowledged-write-not-replicated" in kinds
    clean_without_the_patch(monkeypatch, seed, RING_CHANGES)


def test_old_copy_deleted_before_the_new_replicas_have_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A departing owner that deletes its copy as soon as the move is planned (a cleanup that
    checks the list the partition moves to instead of the one that holds it now): the
    receivers copy from a source that no longer has the records."""
    to_clean = Table.to_clean

    def eager(self: Table, name: str) -> set[int]:
        moving_away = {
            p for p, pend in self.pending.items() if name in self.owners[p] and name not in pend
        }
        return to_clean(self, name) | moving_away

    class Target:
        """The table as the patched cleanup sees it: a partition's holders are its target."""

        def __init__(self, table: Table) -> None:
            self.table = table

        def __getattr__(self, attr: str) -> Any:
            return getattr(self.table, attr)

        def write_list(self, p: int) -> tuple[str, ...]:
            return self.table.pending.get(p, self.table.owners[p])

    clean = handoff_mod.Handoff._clean

    def early(self: handoff_mod.Handoff, table: Table, effects: list[Any]) -> None:
        clean(self, Target(table), effects)  # type: ignore[arg-type]

    monkeypatch.setattr(Table, "to_clean", eager)
    monkeypatch.setattr(handoff_mod.Handoff, "_clean", early)
    seed, kinds = first_caught(RING_CHANGES)
    # The copies go before the receivers have them: writes are missing from replicas, or gone.
    assert kinds & {"acknowledged-write-not-replicated", "acknowledged-write-lost"}
    clean_without_the_patch(monkeypatch, seed, RING_CHANGES)


def test_request_served_on_a_stale_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replicas that serve requests routed on an older table (writes to the old owners only,
    read repairs and hints to a member that already deleted its copy): a replica that acts on
    every request, whatever epoch it was routed on (and does not hold one routed on a newer
    table either)."""

    def serve_all(self: Any, src: str, msg: Any, now_ms: int, effects: list[Any]) -> bool:
        return True

    monkeypatch.setattr(node_mod.Node, "_routed_here", serve_all)
    seed, kinds = first_caught(RING_CHANGES)
    assert kinds & {"acknowledged-write-not-replicated", "misplaced"}
    clean_without_the_patch(monkeypatch, seed, RING_CHANGES)


# --- anti-entropy and reaping ----------------------------------------------------------------


def test_reaping_while_a_replica_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reaper asks only the members that are up, takes a down owner's say for given and
    does not wait for the hints kept for it: a replica that missed the delete brings the value
    back when it returns."""

    def up_ones(members: list[str], alive: Any) -> list[str]:
        return [q for q in members if alive(q)]

    original = aae_mod.AntiEntropy.__init__

    def no_hints(self: Any, *args: Any, **kw: Any) -> None:
        original(self, *args, **kw)
        self.hinted = lambda key: False

    monkeypatch.setattr(aae_mod.AntiEntropy, "_to_ask", staticmethod(up_ones))
    monkeypatch.setattr(aae_mod.AntiEntropy, "__init__", no_hints)
    _, kinds = first_caught(MANY_KEYS)
    assert kinds & {"reaped-too-early", "reaped-value-came-back", "deleted-value-came-back"}, kinds


def test_an_exchange_that_overwrites_instead_of_merging(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records pulled or pushed by anti-entropy replace the stored one instead of being merged:
    concurrent siblings and newer writes are lost."""
    original = aae_mod.AntiEntropy.__init__

    def overwriting(self: Any, name: str, storage: Any, **kw: Any) -> None:
        original(self, name, storage, **kw)

        def put(skey: bytes, raw: bytes, effects: list[Any]) -> bool:
            old = storage.get(skey)
            if old == raw:
                return False
            storage.put(skey, raw)
            self.trees.update(skey[1:], old, raw)
            return True

        self.merge = put

    monkeypatch.setattr(aae_mod.AntiEntropy, "__init__", overwriting)
    _, kinds = first_caught()
    assert kinds & {"write-lost", "acknowledged-write-lost", "acknowledged-write-not-replicated"}


def test_a_tree_not_updated_by_handoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records copied by a partition transfer are stored without updating the anti-entropy
    tree: the tree no longer describes the disk."""
    original = handoff_mod.Handoff.__init__

    def forgetful(self: Any, name: str, storage: Any, **kw: Any) -> None:
        merge = kw["merge"]

        def silent(skey: bytes, raw: bytes, effects: list[Any]) -> bool:
            replica = merge.__self__
            saved, replica.on_change = replica.on_change, lambda *a: None
            try:
                return bool(merge(skey, raw, effects))
            finally:
                replica.on_change = saved

        kw["merge"] = silent
        original(self, name, storage, **kw)

    monkeypatch.setattr(handoff_mod.Handoff, "__init__", forgetful)
    _, kinds = first_caught(RING_CHANGES)
    assert "aae-tree-stale" in kinds or "replicas-differ" in kinds, kinds


def test_a_tree_not_updated_by_read_repair(monkeypatch: pytest.MonkeyPatch) -> None:
    """The coordinator's own copy repaired by a read is stored without updating its tree."""
    original = Coordinator._read_repair

    def forgetful(self: Any, op: Any, effects: list[Any]) -> None:
        saved, self.replica.on_change = self.replica.on_change, lambda *a: None
        try:
            original(self, op, effects)
        finally:
            self.replica.on_change = saved

    monkeypatch.setattr(Coordinator, "_read_repair", forgetful)
    _, kinds = first_caught()
    assert "aae-tree-stale" in kinds or "replicas-differ" in kinds, kinds
