"""The checkers: what a run must satisfy, judged from its history and its final storage.

A **view** is a record of a key as someone saw it: the values (and, in storage, tombstones) it
holds plus its causal context — a ``get_versioned`` answer, or a replica's stored record. The
context is a version vector that summarises exactly the writes the record has seen (the dotted
version vector property, ``ring.core.record``), so for every write whose dot the context covers:

    the write is still in the view  <=>  no write the view has seen superseded it.

Both directions are checked against the history's ``Write``s (what was really written, and what
each write superseded by the documented semantics):

* *present but superseded* -> "superseded value came back" (or "siblings not concurrent" when the
  superseding write is a sibling too, "deleted value came back" when it is a delete);
* *absent and not superseded* -> "write lost" (tombstones only where they are visible: storage).

The checks (numbers of issue 4):

1. after the heal, every acknowledged write is covered by the final record's context, and then
   by the rule above it is present unless superseded; an acknowledged write that left no new
   version at its coordinator is reported at once (history), as is an acknowledgement before W
   nodes held the write durably;
2. every ``get_versioned`` answer of the run and every final record obeys the rule above;
   every value read (``get``, ``get_versioned``, ``scan``) was written by a coordinated put of
   that key, and a scan page is well formed;
3. after an acknowledged delete with a context, no value its ``get_versioned`` returned is in the
   final state (a check that does not use dots at all, next to the causal one of 2);
4. after the heal all replicas of a key (its preference list, from the nodes' common ring) hold
   equal records, and the final R=N read returns exactly their values;
5. the number of live siblings in any view is at most ``A + S + F``: A the distinct actors that
   made blind writes of the key so far, S the *stale* context writes of the key so far (whose
   context misses some write coordinated before them), F one if any context write was fresh.
   A blind write supersedes everything its coordinator has seen, and an actor's own record
   holds every write it made, so blind writes leave at most one sibling per actor (node epoch).
   A fresh context write supersedes every earlier write, so at most one fresh one is live, and
   only stale ones add more. Under blind writers alone the bound is the number of coordinators,
   however many writes they make (the DVV bound); with readers that write back what they read,
   it stays near the number of truly concurrent writers.

7. after the heal and the hinted handoff, before any read, every replica of a key holds every
   write acknowledged since the last lost disk (``check_replicated``);

6. without faults (``--no-faults``), strict quorums hold: a ``get_versioned`` sent after a
   write was acknowledged sees it (its context covers the write) whenever R + W > N. Under
   faults sloppy quorums rightly break this, so it is not checked there.

Soundness: nothing here fires on a correct run, given that at most W-1 disks are lost per run
(the nemesis' budget) and that contexts are never pruned (the simulator has far fewer than
``record.MAX_CONTEXT_ACTORS`` actors).
"""

from __future__ import annotations

from collections.abc import Iterable

from ring.core import aae
from ring.core import record as rec
from ring.core.layout import DATA
from ring.core.node import Node
from ring.core.vclock import covers
from ring.sim.history import History, Op, Violation, Write


def check_view(
    history: History,
    key: bytes,
    context: dict[str, int],
    present: list[Write],
    *,
    tombstones_visible: bool,
    upto_ms: int,
    where: str,
    since_ms: int | None = None,
) -> list[Violation]:
    """Check one view of ``key`` (see the module docstring); ``present`` are its siblings;
    ``since_ms``: when the view was asked for (reaps before it count)."""
    out: list[Violation] = []
    here = {id(w) for w in present}
    for w in present:
        if w.dot is None or not covers(context, *w.dot):
            out.append(
                Violation(
                    "bad-context", key, f"{where}: holds {w.describe()} outside its own context"
                )
            )
    for x in history.writes.get(key, ()):
        if x.dot is None or not covers(context, *x.dot):
            continue
        if history.reaped_covers(key, x.dot, since_ms):
            # A delete that had seen it was reaped: it is gone for good (a tombstone may come
            # back, from a replica the reap did not reach, until it is reaped again).
            if id(x) in here and x.value is not None:
                out.append(
                    Violation(
                        "reaped-value-came-back",
                        key,
                        f"{where}: {x.describe()} came back after a tombstone that had seen it "
                        "was reaped",
                    )
                )
            continue
        by = next((y for y in x.superseded_by if y.dot and covers(context, *y.dot)), None)
        if id(x) in here and by is not None:
            if id(by) in here:
                kind, what = "siblings-not-concurrent", "is a sibling of"
            elif by.value is None:
                kind, what = "deleted-value-came-back", "came back after"
            else:
                kind, what = "superseded-value-came-back", "came back after"
            out.append(
                Violation(
                    kind,
                    key,
                    f"{where}: {x.describe()} {what} {by.describe()}, which superseded it",
                )
            )
        elif id(x) not in here and by is None and (tombstones_visible or x.value is not None):
            out.append(
                Violation(
                    "write-lost",
                    key,
                    f"{where}: {x.describe()} is gone, though "
                    "the view has seen it and no write it has seen superseded it",
                )
            )
    live = [w for w in present if w.value is not None]
    if len(live) > 1:
        bound = _sibling_bound(history.writes.get(key, ()), upto_ms)
        if len(live) > bound:
            out.append(
                Violation(
                    "too-many-siblings",
                    key,
                    f"{where}: {len(live)} siblings, "
                    f"more than the bound {bound}: " + "; ".join(w.describe() for w in live),
                )
            )
    return out


def _sibling_bound(writes: Iterable[Write], upto_ms: int) -> int:
    """``A + S + F`` (check 5): A the actors of blind writes, S the *stale* context writes
    (their context misses a write coordinated before them), F one if some context write was
    fresh. Writes are in coordination order."""
    actors: set[str] = set()
    stale = 0
    fresh = 0
    earlier: list[tuple[str, int]] = []
    for w in writes:
        if w.dot is None or w.at_ms > upto_ms:
            continue
        if w.blind:
            actors.add(w.actor)
        elif any(not covers(w.seen, *dot) for dot in earlier):
            stale += 1
        else:
            fresh = 1
        earlier.append(w.dot)
    return len(actors) + stale + fresh


def check_reads(history: History) -> list[Violation]:
    """Checks 2 and 5 on every successful read of the run."""
    out: list[Violation] = []
    for op in history.ops.values():
        if op.outcome == "ok" and op.kind == "scan":
            out += _check_scan(history, op)
        if op.outcome != "ok" or op.kind not in ("get", "getv"):
            continue
        where = f"{'final ' if op.final else ''}{op.kind} op {op.id} via {op.node} at t={op.end_ms}"
        values = [op.result] if op.kind == "get" else list(op.result[0])
        writes: list[Write] = []
        for v in values:
            if v is None:
                continue
            w = _write_of_value(history, v)
            if w is None:
                out.append(
                    Violation(
                        "unknown-value",
                        op.key,
                        f"{where} returned {v!r}, which no coordinator ever wrote for this key",
                    )
                )
            elif w.key != op.key:
                out.append(
                    Violation(
                        "wrong-key",
                        op.key,
                        f"{where} returned {w.describe()}, a value of key {w.key!r}",
                    )
                )
            else:
                writes.append(w)
        if op.kind == "get":
            continue
        if len({id(w) for w in writes}) != len(writes):
            out.append(Violation("duplicate-sibling", op.key, f"{where} returned {values!r}"))
        ctx = op.result[1]
        context = rec.decode_context(ctx) if ctx else {}
        assert op.end_ms is not None
        out += check_view(
            history,
            op.key,
            context,
            writes,
            tombstones_visible=False,
            upto_ms=op.end_ms,
            where=where,
            since_ms=op.start_ms,
        )
    return out


def _check_scan(history: History, op: Op) -> list[Violation]:
    """A scan page: keys in order, unique, in range and none past the returned bound; each
    value written by a put of that key. (A page may hold more or fewer than ``limit`` items:
    every node returns up to ``limit`` records, tombstones included; ``net.clientops``.)"""
    assert op.scan is not None
    start, stop, reverse, _ = op.scan
    items, bound = op.result
    keys, values = items[0::2], items[1::2]
    where = f"scan op {op.id} via {op.node} {op.scan!r} at t={op.end_ms} returned {items!r}"
    out: list[Violation] = []
    ordered = sorted(set(keys), reverse=reverse)
    if keys != ordered:
        out.append(Violation("bad-scan", None, f"{where}: keys not unique and in order"))
    for k in keys:
        if (start is not None and k < start) or (stop is not None and k >= stop):
            out.append(Violation("bad-scan", k, f"{where}: key outside the range"))
        if bound is not None and (k < bound if reverse else k > bound):
            out.append(Violation("bad-scan", k, f"{where}: key past the bound {bound!r}"))
    for k, v in zip(keys, values):
        w = _write_of_value(history, v)
        if w is None or w.key != k:
            out.append(Violation("unknown-value", k, f"{where}: {v!r} was never written to {k!r}"))
    return out


def _write_of_value(history: History, value: bytes) -> Write | None:
    op = history.op_of_value.get(value)
    if op is None:
        return None
    w = history.write_of.get(op.id)
    return w if w is not None and w.dot is not None else None


def check_final(
    history: History,
    replicas: dict[bytes, dict[str, rec.Record]],
    final_reads: dict[bytes, Op],
    now_ms: int,
) -> list[Violation]:
    """Checks 1, 3 and 4 (and 2, 5 on the final records) once the cluster has converged.
    ``replicas`` maps each key to the record each node of its preference list stores."""
    out: list[Violation] = []
    final: dict[bytes, rec.Record] = {}
    for key, by_node in sorted(replicas.items()):
        records = list(by_node.values())
        merged = rec.reconcile_all(records)
        final[key] = merged
        # A tombstone on one replica and nothing on another are the same state: reaping (or a
        # tombstone copied back after one replica reaped it, to be reaped again).
        shown = [rec.EMPTY if r.is_deleted else r for r in records]
        if any(r != shown[0] for r in shown):
            detail = "; ".join(f"{n}: {_show(r)}" for n, r in sorted(by_node.items()))
            out.append(Violation("replicas-differ", key, f"after the heal: {detail}"))
        present = []
        for s in merged.siblings:
            w = history.by_dot.get((key, s.actor, s.counter))
            if w is None:
                out.append(
                    Violation(
                        "unknown-sibling",
                        key,
                        f"final record holds {s!r}, which no coordinator wrote",
                    )
                )
            else:
                present.append(w)
        out += check_view(
            history,
            key,
            merged.context,
            present,
            tombstones_visible=True,
            upto_ms=now_ms,
            where="final record",
        )
        op = final_reads.get(key)
        if op is not None and op.outcome == "ok":
            got = sorted(op.result[0])
            want = sorted(s.value for s in merged.live if s.value is not None)
            if got != want:
                out.append(
                    Violation(
                        "final-read-differs",
                        key,
                        f"the R=N read returned {got!r} but the replicas hold {want!r}",
                    )
                )
    for op in sorted(history.ops.values(), key=lambda o: o.id):
        if not op.acked:
            continue
        merged = final.get(op.key, rec.EMPTY)
        w = history.write_of.get(op.id)
        if w is None or w.dot is None:
            continue  # reported when it was acknowledged
        if not covers(merged.context, *w.dot) and not history.reaped_covers(op.key, w.dot):
            out.append(
                Violation(
                    "acknowledged-write-lost",
                    op.key,
                    f"{w.describe()} was acknowledged, but the final record has no trace of it",
                )
            )
        if op.kind == "del" and op.context is not None:
            live = {s.value for s in merged.live}
            back = sorted(v for v in op.read_values if v in live)
            if back:
                out.append(
                    Violation(
                        "deleted-value-came-back",
                        op.key,
                        f"{back!r} survived "
                        f"{w.describe()}, which was given the context of a read "
                        f"that returned {list(op.read_values)!r}",
                    )
                )
    return out


def check_replicated(
    history: History, replicas: dict[bytes, dict[str, rec.Record]], *, since_wipe: bool = True
) -> list[Violation]:
    """Check 7, after the heal and the hinted handoff and *before* any read could repair: every
    replica of a key holds every write of it acknowledged since the last lost disk. A write is
    acknowledged after W replicas stored it, and every other replica then has a hint kept for
    it (by a fallback, or by the coordinator before it answered), so handoff alone must bring
    it everywhere; reads and their repair must not be needed.

    With ``since_wipe=False`` (after anti-entropy has run, still before any read) every
    acknowledged write counts, those before a lost disk too: anti-entropy copies them back from
    the replicas that kept them."""
    out: list[Violation] = []
    how = "after hinted handoff" if since_wipe else "after anti-entropy"
    for op in sorted(history.ops.values(), key=lambda o: o.id):
        if not op.acked or (since_wipe and op.start_ms <= history.last_wipe_ms):
            continue
        w = history.write_of.get(op.id)
        if w is None or w.dot is None:
            continue
        for name, record in sorted(replicas.get(op.key, {}).items()):
            if not covers(record.context, *w.dot) and not history.reaped_covers(op.key, w.dot):
                out.append(
                    Violation(
                        "acknowledged-write-not-replicated",
                        op.key,
                        f"{how}, {name}, a replica of the key, lacks {w.describe()}",
                    )
                )
    return out


def _show(r: rec.Record) -> str:
    sibs = ", ".join(f"{s.actor}:{s.counter}={s.value!r}" for s in r.siblings)
    return f"[{sibs}] ctx {dict(sorted(r.context.items()))}"


def check_read_your_writes(history: History, n: int, r: int, w: int) -> list[Violation]:
    """Check 6, for fault-free runs: R + W > N reads see every write acknowledged before they
    were sent (``r``, ``w``: the cluster's defaults, used where a request did not set its own)."""
    out: list[Violation] = []
    acked = sorted((op for op in history.ops.values() if op.acked), key=lambda op: op.id)
    for g in history.ops.values():
        if g.kind != "getv" or g.outcome != "ok":
            continue
        ctx = g.result[1]
        context = rec.decode_context(ctx) if ctx else {}
        for x in acked:
            if x.key != g.key or x.end_ms is None or x.end_ms >= g.start_ms:
                continue
            if (g.r or r) + (x.w or w) <= n:
                continue
            wx = history.write_of.get(x.id)
            if (
                wx is not None
                and wx.dot is not None
                and not covers(context, *wx.dot)
                and not history.reaped_covers(g.key, wx.dot, g.start_ms)
            ):
                out.append(
                    Violation(
                        "stale-quorum-read",
                        g.key,
                        f"getv op {g.id} (R={g.r or r}) "
                        f"sent at t={g.start_ms} missed {wx.describe()}, "
                        f"acknowledged at t={x.end_ms} with W={x.w or w}",
                    )
                )
    return out


def check_placement(
    final_reads: dict[bytes, Op], holders: dict[bytes, tuple[set[str], set[str]]], n: int
) -> list[Violation]:
    """After the heal, every live key is on exactly its owners' disks — N of them (fewer only
    when the cluster has fewer members): transfers copied it to every new owner, and every old
    holder deleted its copy. A deleted key (its tombstone) is on no other disk."""
    out: list[Violation] = []
    for key, (held, owners) in sorted(holders.items()):
        op = final_reads.get(key)
        live = op is not None and op.outcome == "ok" and isinstance(op.result, list)
        deleted = not live or not op.result[0]  # type: ignore[union-attr]
        # A deleted key's tombstone may be reaped already, but is never kept off its owners.
        wrong = bool(held - owners) if deleted else held != owners
        if wrong or len(owners) > n:
            out.append(
                Violation(
                    "misplaced",
                    key,
                    f"{key!r} is on the disks of {sorted(held)}; its owners are {sorted(owners)}",
                )
            )
    return out


def check_trees(nodes: Iterable[tuple[str, Node]]) -> list[Violation]:
    """Every running node's anti-entropy tree equals one built afresh from its storage: no path
    that changes a record forgets to update the tree."""
    out: list[Violation] = []
    for name, node in nodes:
        trees = node.aae.trees
        cur = trees.current
        if cur is None:
            continue
        fresh = [[0] * aae.SEGMENTS for _ in range(trees.partitions)]
        tombs: list[set[bytes]] = [set() for _ in range(trees.partitions)]
        for skey, raw in node.storage.scan(DATA):
            p, s = aae.place(skey[1:], trees.partitions)
            fresh[p][s] ^= aae.record_hash(skey[1:], raw)
            if aae.tombstone_ts(raw) is not None:
                tombs[p].add(skey[1:])
        wrong = [
            p
            for p in range(trees.partitions)
            if list(cur.segs[p]) != fresh[p]
            or cur.roots[p] != _xor(fresh[p])
            or set(cur.tombs[p]) != tombs[p]
        ]
        if wrong:
            out.append(
                Violation(
                    "aae-tree-stale",
                    None,
                    f"{name}'s anti-entropy tree differs from its storage in partition(s) "
                    f"{wrong[:10]}",
                )
            )
    return out


def _xor(values: list[int]) -> int:
    out = 0
    for v in values:
        out ^= v
    return out
