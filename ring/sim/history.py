"""The history of a run: client operations and the writes the cluster really made.

Two records are kept.

* ``Op``: what a client asked and what it was told: ``ok`` (acknowledged), ``error`` (the store
  said it failed — a failed write may still have happened), or ``unknown`` (no answer: the
  coordinator died or the client gave up). Put values are unique per run (``b"c3-17"``), so a
  value names the operation that wrote it.
* ``Write``: each time a node coordinates a put or delete, the world lets us look at its storage
  just before and just after (we own the world). That gives the write's **dot** — the
  coordinator's actor and the counter it took — and what it **supersedes**, by the documented
  semantics: with a context from ``get_versioned``, exactly the dots that context covers; without
  one (a blind write), everything the coordinator's own record had seen. ``seen`` is that clock,
  taken from the request (context) or from the coordinator's record before the write (blind) —
  never from the write's result, so a coordinator that supersedes the wrong things is caught.

Invariants: one write per operation (the network never duplicates a ``Forward``); no two writes
of a key share a dot (a reused dot is the kv679 bug, reported as a violation); ``superseded_by``
lists, for each write, every later write of the same key whose ``seen`` covers its dot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ring.core import messages as m
from ring.core import record as rec
from ring.core.layout import DATA, HINT, Storage, split_hint_key
from ring.core.node import Node
from ring.core.vclock import covers


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    key: bytes | None
    message: str

    def __str__(self) -> str:
        where = "" if self.key is None else f" on key {self.key!r}"
        return f"{self.kind}{where}: {self.message}"


@dataclass(slots=True)
class Op:
    id: int  # the request id, unique in the run
    client: int
    kind: str  # get | getv | put | del | scan (``key`` is then b"")
    key: bytes
    node: str  # the node the client sent it to
    start_ms: int
    value: bytes | None = None  # put
    context: bytes | None = None  # put/del with the context of an earlier getv
    read_values: tuple[bytes, ...] = ()  # the values that getv returned
    w: int = 0  # put/del: the write quorum asked for
    r: int = 0  # get/getv: the read quorum asked for
    scan: tuple[bytes | None, bytes | None, bool, int] | None = None  # start, stop, reverse, limit
    final: bool = False  # a read of the liveness phase
    end_ms: int | None = None
    outcome: str = "pending"  # pending | ok | error | unknown
    error: str | None = None
    result: Any = None

    @property
    def acked(self) -> bool:
        return self.outcome == "ok" and self.kind in ("put", "del")


@dataclass(slots=True, eq=False)
class Write:
    op: Op | None
    key: bytes
    value: bytes | None  # None: a tombstone (delete)
    node: str
    actor: str
    dot: tuple[str, int] | None  # None: the coordinator stored nothing new
    seen: dict[str, int]
    blind: bool
    at_ms: int
    # The replicas the key had in the coordinator's table: a default W is capped by them (a
    # cluster smaller than N, such as one still forming, stores each key on every member).
    replicas: int = 0
    superseded_by: list[Write] = field(default_factory=list)

    def describe(self) -> str:
        what = "delete" if self.value is None else repr(self.value)
        dot = "no dot" if self.dot is None else f"dot {self.dot[0]}:{self.dot[1]}"
        op = self.op
        how = "blind" if self.blind else "with context"
        if op is None:
            return f"{what} ({how}, coordinated by {self.node}, {dot})"
        return (
            f"{what} (op {op.id} of client {op.client}, {how}, via {op.node}, coordinated by "
            f"{self.node} at t={self.at_ms}, {dot}, outcome {op.outcome})"
        )


@dataclass(slots=True)
class _Pending:
    op: Op | None
    key: bytes
    value: bytes | None
    seen: dict[str, int]
    blind: bool
    before: int  # the coordinator's own counter before the write
    replicas: int  # owners of the key in the coordinator's table


def load_record(storage: Storage, key: bytes) -> rec.Record:
    raw = storage.get(DATA + key)
    return rec.EMPTY if raw is None else rec.decode(raw)


class History:
    """Collects ops and writes; implements the world's ``Observer``."""

    def __init__(
        self, now: Callable[[], int], storages: Callable[[], Iterable[tuple[str, Storage]]]
    ) -> None:
        self._now = now
        self._storages = storages
        self.ops: dict[int, Op] = {}
        self.writes: dict[bytes, list[Write]] = {}
        self.write_of: dict[int, Write] = {}  # op id -> write
        self.by_dot: dict[tuple[bytes, str, int], Write] = {}
        self.op_of_value: dict[bytes, Op] = {}
        self.violations: list[Violation] = []
        self.last_wipe_ms = -1
        # Tombstones anti-entropy reaped, per key (every reaping node's copy): the writes their
        # contexts cover were deleted, and must never be seen again.
        self.graveyard: dict[bytes, list[tuple[int, rec.Record]]] = {}
        # Every node's storage as the node sees it (writes not yet committed included).
        self.live: Callable[[], Iterable[tuple[str, Storage]]] = lambda: ()
        # Writes a coordinator made since its last group commit: a crash before the commit
        # takes them back (they never left the node), so their dots were never used.
        self._tentative: dict[str, list[Write]] = {}
        self.on_outcome: Callable[[Op], None] = lambda op: None
        self.trace: Any = None

    def reaped(self, name: str, key: bytes, raw: bytes, owners: tuple[str, ...]) -> None:
        """``name`` reaped its tombstone of ``key``. When the key's first owner reaps, every
        other owner must hold the tombstone on disk (or a record that has seen it), and no
        member may keep a hint of a value it deleted: else a replica that missed the delete,
        or a late hint, could bring the value back."""
        tomb = rec.decode(raw)
        self.graveyard.setdefault(key, []).append((self._now(), tomb))
        if not owners or owners[0] != name:
            return
        for node, storage in self._storages():
            held = storage.get(DATA + key)
            if node in owners[1:]:  # on disk
                got = rec.EMPTY if held is None else rec.decode(held)
                if any(got.context.get(a, 0) < c for a, c in tomb.context.items()):
                    self.violation(
                        "reaped-too-early",
                        key,
                        f"{name} reaped {key!r} while {node}, an owner, held {got!r}",
                    )
        for node, storage in self.live():  # hints it has handed off are gone
            for skey, hinted in storage.scan(HINT):
                if split_hint_key(skey)[1] == key and any(
                    covers(tomb.context, s.actor, s.counter) for s in rec.decode(hinted).live
                ):
                    self.violation(
                        "reaped-too-early",
                        key,
                        f"{name} reaped {key!r} while {node} kept a hint of a value it deleted",
                    )

    def reaped_covers(
        self, key: bytes, dot: tuple[str, int] | None, before_ms: int | None = None
    ) -> bool:
        """Whether a tombstone of ``key`` reaped (before ``before_ms``) had seen the write of
        ``dot``: that write was deleted for good."""
        if dot is None:
            return False
        return any(
            covers(g.context, *dot)
            for t, g in self.graveyard.get(key, ())
            if before_ms is None or t < before_ms
        )

    # --- recording ops -------------------------------------------------------------------------

    def add_op(self, op: Op) -> None:
        self.ops[op.id] = op
        if op.kind == "put" and op.value is not None:
            assert op.value not in self.op_of_value, "put values must be unique"
            self.op_of_value[op.value] = op

    def finish(self, op: Op, outcome: str, error: str | None = None, result: Any = None) -> None:
        if op.outcome != "pending":
            return
        op.outcome, op.error, op.result, op.end_ms = outcome, error, result, self._now()
        if self.trace is not None:
            self.trace.update(f"{op.id}:{outcome}:{error}:{result!r}".encode())
        self.on_outcome(op)

    def violation(self, kind: str, key: bytes | None, message: str) -> None:
        self.violations.append(Violation(kind, key, message))

    # --- Observer: coordination ----------------------------------------------------------------

    def before_write(self, node: Node, req_id: int | None, op: str, args: dict[str, Any]) -> Any:
        key = args["key"]
        pre = load_record(node.storage, key)
        ctx = args.get("context")
        if ctx is None:
            seen, blind = dict(pre.context), True
        elif isinstance(ctx, bytes):
            try:
                seen, blind = (rec.decode_context(ctx) if ctx else {}), False
            except ValueError:
                return None  # the node rejects it
        else:
            return None
        value = args.get("value") if op == "put" else None
        client_op = self.ops.get(req_id) if req_id is not None else None
        before = pre.context.get(node.actor, 0)
        return _Pending(client_op, key, value, seen, blind, before, len(node.preference_list(key)))

    def after_write(self, token: Any, node: Node) -> None:
        p: _Pending = token
        post = load_record(node.storage, p.key)
        counter = post.context.get(node.actor, 0)
        dot = (node.actor, counter) if counter > p.before else None
        w = Write(
            p.op, p.key, p.value, node.name, node.actor, dot, p.seen, p.blind, self._now(),
            p.replicas,
        )  # fmt: skip
        if p.op is not None:
            if p.op.id in self.write_of:
                self.violation("double-write", p.key, f"one request, two writes: {w.describe()}")
            self.write_of[p.op.id] = w
        if dot is None:
            return  # nothing stored (a rejected request, or a bug the checkers report if acked)
        mine = [s for s in post.siblings if s.dot == dot]
        if not mine or mine[0].value != p.value:
            self.violation(
                "bad-write", p.key, f"the coordinator's record lacks the new write {w.describe()}"
            )
        self._tentative.setdefault(node.name, []).append(w)
        ident = (p.key, *dot)
        if ident in self.by_dot:
            old = self.by_dot[ident]
            self.violation(
                "dot-reused",
                p.key,
                f"{w.describe()} reuses the dot of {old.describe()} (kv679: a node that lost its "
                "data must take a new actor epoch)",
            )
        self.by_dot[ident] = w
        same_key = self.writes.setdefault(p.key, [])
        for x in same_key:
            if x.dot is not None and covers(w.seen, *x.dot):
                x.superseded_by.append(w)
        same_key.append(w)

    # --- Observer: commits and crashes -------------------------------------------------------

    def committed(self, name: str) -> None:
        """``name``'s buffered writes reached its log: its writes so far happened."""
        self._tentative.pop(name, None)

    def lost_uncommitted(self, name: str) -> None:
        """``name`` died before committing: the writes it coordinated since never happened."""
        for w in self._tentative.pop(name, []):
            assert w.dot is not None
            if self.by_dot.get((w.key, *w.dot)) is w:
                del self.by_dot[(w.key, *w.dot)]
            same_key = self.writes.get(w.key, [])
            if w in same_key:
                same_key.remove(w)
            for x in same_key:
                if w in x.superseded_by:
                    x.superseded_by.remove(w)
            if w.op is not None and self.write_of.get(w.op.id) is w:
                del self.write_of[w.op.id]

    # --- Observer: replies ---------------------------------------------------------------------

    def reply_emitted(self, name: str, reply: m.Reply) -> None:
        op = self.ops.get(reply.req_id)
        if op is None or reply.error is not None or op.kind not in ("put", "del"):
            return
        if self.last_wipe_ms >= op.start_ms:
            return  # a disk was lost meanwhile: copies may legitimately be gone
        w = self.write_of.get(op.id)
        if w is None or w.dot is None:
            self.violation(
                "ack-without-write",
                op.key,
                f"{name} acknowledged op {op.id} ({op.kind} {op.value!r} of client {op.client}) "
                "but no coordinator stored a new version of the key",
            )
            return
        holders = self.holders(w)
        if len(holders) < min(op.w, w.replicas or op.w):
            self.violation(
                "ack-before-quorum",
                op.key,
                f"{name} acknowledged {w.describe()} with W={op.w} when only "
                f"{len(holders)} node(s) held it durably: {', '.join(holders) or 'none'}",
            )

    def holders(self, w: Write) -> list[str]:
        """The nodes whose storage holds ``w`` (its dot is covered by their record of the key, or
        by a hint they keep for another node)."""
        assert w.dot is not None
        out = []
        for name, storage in self._storages():
            if covers(load_record(storage, w.key).context, *w.dot):
                out.append(name)
                continue
            for skey, raw in storage.scan(HINT):
                if split_hint_key(skey)[1] == w.key and covers(rec.decode(raw).context, *w.dot):
                    out.append(name)
                    break
        return out

    def reply_delivered(self, reply: m.Reply) -> None:
        op = self.ops.get(reply.req_id)
        if op is None:
            return
        if reply.error is None:
            self.finish(op, "ok", None, reply.result)
        else:
            self.finish(op, "error", reply.error, reply.result)
