"""Node cores to fuzz (``tests.unit.corecluster``: pure cores wired in memory), and a record of
every exception a core's isolation caught.

``scenario()`` runs a cluster through what a real one does — writes with siblings, deletes,
reads, scans, a fourth node joining (tables, handoff pages, transfer reports), anti-entropy
exchanges and tombstone reaping — and keeps snapshots: a copy of the whole cluster taken just
before some node was handed a peer message or a gossip datagram, with that event. A fuzzer
restores a snapshot and hands the node a *mutated* event instead, so mutations meet the state
in which the real message mattered (a live operation for its ``op_id``, a transfer in flight for
a handoff page, an exchange for anti-entropy roots...).

``Node.handle`` never lets an exception out: the piece of work that raised is rolled back and
counted (``Node._failed``). So "the node did not crash" is not enough; the fuzzers look at what
was caught. A malformed peer message may be refused by a check of the core (a ``ValueError``
raised on purpose, see ``strategies.raised_on_purpose``); anything else — a TypeError, a
KeyError, an unpacking ``ValueError``, a RecursionError — is a bug. A client request must never
get that far: it is validated first and answered with an error kind.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

from ring.core import messages as m
from ring.core import record as rec
from ring.core.layout import DATA
from ring.core.node import Node
from ring.core.validate import RequestError
from ring.storage import MemoryStorage
from tests.fuzz.strategies import ROOT, raised_on_purpose
from tests.unit.corecluster import Cluster

KEYS = [b"k%d" % i for i in range(24)]
PER_KIND = 12  # snapshots kept per (event kind, message type)


@dataclass
class Snapshot:
    cluster: Cluster  # as it was just before ``dest`` handled ``event``
    dest: str
    event: Any  # a PeerMessage or a Datagram

    def restore(self) -> Cluster:
        return copy.deepcopy(self.cluster)


class _Nowhere:
    """Where messages to a node the cluster does not have go (a fuzzed message may name one)."""

    def handle(self, event: Any, now_ms: int) -> list[m.Effect]:
        return []


class _Nodes(dict[str, Any]):
    def __missing__(self, name: str) -> Any:
        return _Nowhere()


@functools.cache
def scenario() -> tuple[Snapshot, ...]:
    c = _cluster(["a", "b", "c"])
    c.cfg.update(aae_interval_ms=1_000, tombstone_grace_ms=1_000)
    for name in c.names:  # restart with the anti-entropy settings
        c.start(name, incarnation=1)
    c.settle()
    kept: dict[tuple[type, type], list[Snapshot]] = {}
    seen: dict[tuple[type, type], int] = {}
    original = Node.handle

    def handle(node: Node, event: Any, now_ms: int) -> list[m.Effect]:
        if type(event) in (m.PeerMessage, m.Datagram):
            kind = (type(event), type(event.msg))
            n = seen[kind] = seen.get(kind, 0) + 1
            shots = kept.setdefault(kind, [])
            if (len(shots) < PER_KIND and n & (n - 1) == 0) or len(shots) < 3:  # 1, 2, 4, 8...
                shots.append(Snapshot(copy.deepcopy(c), node.name, event))
        return original(node, event, now_ms)

    with mock.patch.object(Node, "handle", handle):
        for i, key in enumerate(KEYS):
            assert c.request("abc"[i % 3], "put", key=key, value=b"v%d" % i).error is None
        ctx = c.request("a", "getv", key=KEYS[5]).result[1]
        for via in ("a", "b"):  # two writes from one context: siblings
            assert c.request(via, "put", key=KEYS[5], value=via.encode(), context=ctx).error is None
        for key in KEYS[:4]:
            assert c.request("b", "del", key=key).error is None
        assert c.request("c", "get", key=KEYS[5]).error is None
        assert c.request("a", "scan", limit=7).error is None
        c.names.append("d")
        c.storage["d"] = MemoryStorage()
        c.start("d")
        c.run(3_000)
        assert c.request("d", "getv", key=KEYS[6]).error is None
        for key in KEYS[8:14]:  # through a node that may not hold them: forwarded
            c.request("d", "put", key=key, value=b"d")
        # Two replicas that differ without a write: anti-entropy pushes.
        odd = rec.encode(rec.write(rec.EMPTY, "x@1", b"odd", 1))
        c.storage["c"].put(DATA + b"odd", odd)
        c.nodes["c"].aae.trees.update(b"odd", None, odd)
        c.run(3_000)
        c.crash("c")  # indirect probes, suspicion, hints
        for key in KEYS[14:18]:
            c.request("a", "put", key=key, value=b"while c was down")
        c.run(3_000)
        c.start("c", incarnation=2)
        c.run(3_000)
        c.queue += [("d", e) for e in c.nodes["d"].stop(c.now)]  # a clean stop: Leave
        c.run(2_000)
    return tuple(s for shots in kept.values() for s in shots)


def fresh_cluster() -> Cluster:
    """A copy of a settled cluster a, b, c holding ``KEYS`` (some deleted), with N=2: a
    request reaches a node that holds its key or one that forwards it."""
    return copy.deepcopy(_settled())


def _cluster(names: list[str], **quorum: int) -> Cluster:
    c = Cluster(names, **quorum)
    c.nodes = _Nodes(c.nodes)
    return c


@functools.cache
def _settled() -> Cluster:
    c = _cluster(["a", "b", "c"], n=2, r=1, w=2)
    c.settle()
    for i, key in enumerate(KEYS):
        assert c.request("a", "put", key=key, value=b"v%d" % i).error is None
    for key in KEYS[:3]:
        assert c.request("b", "del", key=key).error is None
    c.run(200)
    return c


@contextlib.contextmanager
def caught() -> Iterator[list[BaseException]]:
    """Every exception any node core's isolation catches inside the block."""
    seen: list[BaseException] = []
    original = Node._failed

    def record(self: Node, exc: Exception, *args: Any) -> Any:
        seen.append(exc)
        return original(self, exc, *args)

    with mock.patch.object(Node, "_failed", record):
        yield seen


# Bugs the fuzzers find in code outside the fuzzing work's remit, while they are reported: (file,
# function, exception type) of the innermost frame, each with a strict xfail test in
# ``test_known.py`` that starts failing once it is fixed (then the entry goes). Empty: the two
# found so far (membership.parse_record, common.settings_mismatch) are fixed.
KNOWN: set[tuple[str, str, type[BaseException]]] = set()


def known(exc: BaseException) -> bool:
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    where = code.co_filename.replace(str(ROOT) + "/", "")
    return any(where == f and code.co_name == fn and isinstance(exc, t) for f, fn, t in KNOWN)


def unexpected(errors: list[BaseException]) -> list[BaseException]:
    """The caught exceptions that are neither a refusal on purpose nor a known bug."""
    return [e for e in errors if not refused_on_purpose(e) and not known(e)]


def refused_on_purpose(exc: BaseException) -> bool:
    """A check of the core refused a malformed message: a ``ValueError`` (or a ``RequestError``
    of ``ring.core.validate``) raised on purpose by the project's code."""
    return isinstance(exc, ValueError | RequestError) and raised_on_purpose(exc)


def describe(errors: list[BaseException]) -> str:
    return "\n".join("".join(traceback.format_exception(e)) for e in errors)


def deliver(c: Cluster, name: str, event: Any, ms: int = 200) -> None:
    """Feed ``event`` to ``name``, deliver what follows, and let the cluster run a little."""
    c.handle(name, event)
    c.run(ms)
