"""In-flight operations of a node and the pure helpers that turn replies into answers.

Each operation a node coordinates (a get, a put, a forwarded write, a scan, a hint delivery)
is a plain mutable record kept by ``ring.core.node.Node`` until it completes or its deadline
passes. Nothing here does IO or keeps time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ring.core import record as rec
from ring.core.structs import struct


@struct
class Origin:
    """Who waits for an answer: a client request of this node (``peer is None``) or a node that
    forwarded a write here (answered with a ``ForwardReply`` carrying its ``req_id``)."""

    req_id: int
    peer: str | None = None


@dataclass(slots=True)
class GetOp:
    origin: Origin | None  # None: a repair read nobody waits for
    key: bytes
    r: int
    versioned: bool
    asked: tuple[str, ...]
    epoch: int = 0  # the table it was routed on: its read repair is routed on it too
    replies: dict[str, bytes | None] = field(default_factory=dict)  # encoded, checked
    bad: set[str] = field(default_factory=set)  # replicas whose record does not decode
    answered: bool = False


@dataclass(slots=True)
class PutOp:
    origin: Origin
    key: bytes
    w: int
    record: bytes  # the encoded record, as stored
    primaries: tuple[str, ...]  # the other members of the write list (owners and pending)
    # The lists that each need W acknowledgements: the owners, and the pending owners while the
    # partition moves (``ring.core.table``).
    groups: tuple[tuple[str, ...], ...] = ()
    fallbacks: dict[str, str] = field(default_factory=dict)  # fallback node -> primary it covers
    acked: set[str] = field(default_factory=set)  # nodes (primaries or fallbacks) that stored it
    expected: set[str] = field(default_factory=set)  # nodes the record was sent to
    # Primaries the coordinator keeps a hint for: those it could not send to, and (written when
    # the client was answered) those that had not stored the write by then.
    hinted: set[str] = field(default_factory=set)
    provisional: set[str] = field(default_factory=set)  # hints to drop if the ack still comes
    answered: bool = False
    deadline_ms: int = 0  # when the request times out (a retry on a newer table keeps it)
    epoch: int = 0  # the table it is routed on (its hints are too)


@dataclass(slots=True)
class ForwardOp:
    origin: Origin
    dest: str


@dataclass(slots=True)
class ScanOp:
    origin: Origin
    args: tuple[bytes | None, bytes | None, bool, int]
    asked: tuple[str, ...]
    replies: dict[str, tuple[list[Any], bool]] = field(default_factory=dict)  # (flat, more)


@dataclass(slots=True)
class HintOp:
    skey: bytes
    encoded: bytes
    target: str
    key: bytes


Op = GetOp | PutOp | ForwardOp | ScanOp | HintOp


def get_result(replies: dict[str, bytes | None], versioned: bool) -> Any:
    """The answer to a get from the replicas' encoded records: the resolved value, or
    ``[values, context, resolved]`` for ``getv``."""
    raws = set(replies.values())
    if len(raws) == 1 and not versioned:
        # The usual case: the replicas agree, so the answer is the stored resolved value.
        raw = raws.pop()
        return None if raw is None else rec.decode_resolved(raw)
    merged = rec.reconcile_all(rec.decode(r) for r in raws if r is not None)
    if not versioned:
        return rec.resolve(merged)
    values = [s.value for s in merged.live]
    ctx = rec.encode_context(merged.context) if merged.context else b""
    return [values, ctx, rec.resolve(merged)]


def merge_scan(
    replies: list[tuple[list[Any], bool]], reverse: bool, limit: int, max_bytes: int
) -> tuple[list[Any], int]:
    """Merge the nodes' scan pages (``(flat [key, encoded, ...], more)``) into ``[items, bound]``,
    and count the records skipped because they do not decode.

    A node whose page was cut (``more``) may hold more keys past its last one, so the answer
    stops at the nearest such last key (``bound``); the client continues after it. The answer
    also stops once its values reach ``max_bytes`` (after at least one item), with ``bound`` its
    last key. ``bound`` is None when every node returned all it had and nothing was cut. A
    record that does not decode is skipped: the other replicas of its key answer for it.
    """
    merged: dict[bytes, rec.Record] = {}
    bound: bytes | None = None
    corrupt = 0
    for flat, more in replies:
        keys = flat[0::2]
        if more and keys:
            last = keys[-1]
            if bound is None or (last > bound if reverse else last < bound):
                bound = last
        for k, raw in zip(keys, flat[1::2]):
            try:
                r = rec.decode(raw)
            except ValueError:
                corrupt += 1
                continue
            merged[k] = rec.reconcile(merged[k], r) if k in merged else r
    out: list[Any] = []
    size = 0
    for k in sorted(merged, reverse=reverse):
        if bound is not None and (k < bound if reverse else k > bound):
            break
        value = rec.resolve(merged[k])
        if value is None:
            continue
        if out and size + len(k) + len(value) > max_bytes:
            bound = out[-2]  # complete up to the last key kept
            break
        out += (k, value)
        size += len(k) + len(value)
    return [out, bound], corrupt
