"""kv679 with real processes: a node whose data directory is wiped comes back with a fresh actor
epoch, so its new writes never reuse a dot of its old life and no acknowledged write disappears.

The scenario (Riak's kv679 "lost writes after a node lost its data"):

1. A three-node cluster (N=3 R=2 W=2). Keys are written with W=3 (every replica acknowledged):
   group ``once`` once through ``c``, group ``thrice`` three times through ``c`` (so ``c``'s old
   actor has counter 1 and 3 in their clocks), groups ``reread`` and ``others`` through ``a``.
2. ``c`` is killed with SIGKILL, its data directory removed (``rm -rf``), and it is started
   again empty, with the same name on the same port.
3. As soon as ``c`` serves: blind puts to ``once`` and ``thrice`` through ``c``, which holds
   nothing of these keys, so its writes are concurrent with the old values; then quorum reads
   (R=2) through ``c`` alone of ``reread`` and ``others`` return every acknowledged value —
   never "not found", although ``c``'s own copy is empty.
4. More writes: ``reread`` through ``c`` (after step 3 repaired ``c``), ``others`` through
   ``a`` and ``b``.
5. After the heal, R=3 reads through every node: ``once`` and ``thrice`` hold *both* the old and
   the new value as siblings — with a reused actor, the new write (dot ``c:1``) would either
   replace the old value with the same dot (``once``) or be dropped as already seen by the
   old clock ``c:3`` (``thrice``), after it was acknowledged. ``reread`` holds the new value,
   ``others`` exactly the newest. The clocks name two different actors of ``c``, the new one
   counting from 1 again, and the new one is what ``c``'s storage now holds as its actor.

The same scenario run with a ``ringd`` patched to reuse its actor across the wipe must fail
these checks (the test is not blind).
"""

from __future__ import annotations

import functools
import shutil
import sys
import time
from pathlib import Path

import pytest

import ring
import ring.client
from ring import Versioned
from ring.core import record as rec
from ring.core.layout import ACTOR_KEY
from ring.storage import RocksStorage
from tests.integration.harness import Cluster, History, Read, Write, wait_until

pytestmark = pytest.mark.integration

NAMES = ("a", "b", "c")
GROUP = 6  # keys per group

# ringd with the kv679 bug planted: the actor is the bare node name, the same after a wipe.
REUSED_ACTOR = [
    sys.executable,
    "-c",
    "import sys\n"
    "import ring.core.node as node\n"
    "node.Node._load_actor = lambda self: self.name\n"
    "from ring.cli.ringd import main\n"
    "sys.exit(main(sys.argv[1:]))\n",
]


def keys(group: str) -> list[bytes]:
    return [f"{group}-{i}".encode() for i in range(GROUP)]


class Recorder:
    """Writes through one node, recorded in a History (for the generic checker)."""

    def __init__(self, cluster: Cluster, history: History) -> None:
        self.cluster = cluster
        self.history = history
        self.attempts: dict[bytes, int] = {}

    def put(self, via: str, key: bytes, value: bytes, w: int | None = None) -> None:
        start = time.monotonic()
        with self.cluster.client(via) as c:
            c.put(key, value, w=w)
        self.history.add(Write("put", key, value, start, time.monotonic(), True, False, False))

    def put_acked(self, via: str, key: bytes, value: bytes) -> bytes:
        """Put until one attempt is acknowledged (a fresh value per attempt: a failed one may
        still have been stored); return the acknowledged value."""
        for attempt in range(10):
            self.attempts[key] = attempt + 1
            v = value + b"#%d" % attempt
            start = time.monotonic()
            try:
                with self.cluster.client(via) as c:
                    c.put(key, v)
            except ring.Unavailable:  # a peer's acknowledgement did not come back in time
                self.history.add(Write("put", key, v, start, time.monotonic(), False, False, False))
                continue
            self.history.add(Write("put", key, v, start, time.monotonic(), True, False, False))
            return v
        raise AssertionError(f"no put of {key!r} through {via} was acknowledged in 10 tries")


def quorum_read(client: ring.client.Client, key: bytes) -> tuple[Versioned]:
    """An R=2 read wrapped in a tuple, so that wait_until retries a quorum error but takes
    "not found" (an empty answer) as an answer."""
    return (client.get_versioned(key, r=2),)


def actors(context: bytes) -> dict[str, int]:
    return rec.decode_context(context) if context else {}


def run_scenario(root: Path, command: list[str] | None = None) -> list[str]:
    """Run the scenario; return the kv679 problems found (the cluster's own health is
    asserted on the way)."""
    problems: list[str] = []
    history = History()
    cluster = Cluster(root, command=command)
    rw = Recorder(cluster, history)
    try:
        cluster.start(*NAMES)
        cluster.heal()
        old: dict[bytes, bytes] = {}
        for key in keys("once"):
            old[key] = key + b"=old"
            rw.put("c", key, old[key], w=3)
        for key in keys("thrice"):
            for n in range(3):
                old[key] = key + b"=old%d" % n
                rw.put("c", key, old[key], w=3)
        for key in keys("reread") + keys("others"):
            old[key] = key + b"=old"
            rw.put("a", key, old[key], w=3)
        with cluster.client("a") as c:
            old_actor = {k: actors(c.get_versioned(k, r=3).context) for k in keys("once")}
        old_c = {a for clock in old_actor.values() for a in clock}
        assert len(old_c) == 1, f"the old writes through c name one actor, not {old_c}"
        (old_c_actor,) = old_c

        # --- wipe c ---------------------------------------------------------------------------
        cluster.kill9("c")
        shutil.rmtree(root / "c")
        cluster.restart("c")
        wait_until(lambda: cluster.serving("c"), 20, "the wiped c to serve")

        # At once (before anything can bring these keys back to c), blind puts through c.
        new: dict[bytes, bytes] = {}
        for key in keys("once") + keys("thrice"):
            new[key] = rw.put_acked("c", key, key + b"=new-via-c")

        # Quorum reads through the wiped node at once: never "not found".
        with cluster.client("c") as c:
            for key in keys("reread") + keys("others"):
                start = time.monotonic()
                # A quorum error (a peer not answering yet) is retried; a wrong answer is not.
                got = wait_until(functools.partial(quorum_read, c, key), 20, f"R=2 of {key!r}")
                values = frozenset(got[0].values)
                history.add(Read(key, values, start, time.monotonic(), "R=2 via wiped c"))
                if old[key] not in values:
                    problems.append(
                        f"R=2 through the wiped c returned {sorted(values)} for {key!r}, not the "
                        f"acknowledged {old[key]!r}"
                    )

        cluster.heal()
        for key in keys("reread"):
            new[key] = key + b"=new-via-c"
            rw.put("c", key, new[key])
        for i, key in enumerate(keys("others")):
            via = "ab"[i % 2]
            new[key] = key + f"=new-via-{via}".encode()
            rw.put(via, key, new[key])

        # --- after the heal: every replica, through every node --------------------------------
        cluster.heal()
        final: dict[bytes, dict[str, frozenset[bytes]]] = {}
        clocks: dict[bytes, dict[str, int]] = {}
        for via in NAMES:
            with cluster.client(via) as c:
                for key in old:
                    start = time.monotonic()
                    v = c.get_versioned(key, r=3)
                    history.add(Read(key, frozenset(v.values), start, time.monotonic(), via))
                    final.setdefault(key, {})[via] = frozenset(v.values)
                    clocks[key] = actors(v.context)
        for key, seen in final.items():
            if len(set(seen.values())) != 1:
                problems.append(f"R=3 reads of {key!r} disagree between nodes: {seen}")
        got = {key: seen["a"] for key, seen in final.items()}
        for key in keys("once") + keys("thrice"):
            if got[key] != {old[key], new[key]}:
                problems.append(
                    f"{key!r}: expected the old and the new value as siblings, got "
                    f"{sorted(got[key])} (old {old[key]!r} acked with W=3 before the wipe, new "
                    f"{new[key]!r} acked through the wiped c)"
                )
        for key in keys("reread"):
            if new[key] not in got[key] or not got[key] <= {old[key], new[key]}:
                problems.append(
                    f"{key!r}: expected {new[key]!r} (maybe with {old[key]!r}), got "
                    f"{sorted(got[key])}"
                )
        for key in keys("others"):
            if got[key] != {new[key]}:
                problems.append(f"{key!r}: expected exactly {new[key]!r}, got {sorted(got[key])}")
        verdict = history.check()
        problems += verdict.violations

        # A fresh actor for c: its clocks name the old and the new actor, the new one from 1.
        new_c_actor = None
        for key in keys("once") + keys("thrice"):
            c_actors = {a: n for a, n in clocks[key].items() if a.partition("@")[0] == "c"}
            fresh = {a: n for a, n in c_actors.items() if a != old_c_actor}
            # one dot per attempt (a failed attempt may have been stored)
            if len(fresh) != 1 or list(fresh.values()) != [rw.attempts[key]]:
                problems.append(
                    f"{key!r}: the clock {clocks[key]} has no fresh actor of c at counter "
                    f"{rw.attempts[key]} beside the old one {old_c_actor!r}"
                )
            else:
                new_c_actor = next(iter(fresh))
        for name in NAMES:
            assert cluster.stop(name) == 0, cluster.log(name)
        storage = RocksStorage(str(root / "c"))
        try:
            stored = storage.get(ACTOR_KEY)
        finally:
            storage.close()
        if stored is None or stored.decode() == old_c_actor or stored.decode() != new_c_actor:
            problems.append(
                f"c's stored actor is {stored!r}; before the wipe it was {old_c_actor!r}, the "
                f"clocks show {new_c_actor!r}"
            )
        return problems
    finally:
        cluster.close()


def test_a_wiped_node_rejoins_with_a_fresh_actor_and_loses_nothing(tmp_path: Path) -> None:
    problems = run_scenario(tmp_path)
    assert not problems, "\n".join(problems)


def test_the_kv679_checks_catch_a_reused_actor(tmp_path: Path) -> None:
    problems = run_scenario(tmp_path, command=REUSED_ACTOR)
    text = "\n".join(problems)
    # The old value with the same dot is replaced ...
    assert any(p.startswith("b'once-") and "siblings" in p for p in problems), text
    # ... and the new, acknowledged write is dropped as already seen.
    assert any(p.startswith("b'thrice-") and "siblings" in p for p in problems), text
    assert any("stored actor" in p for p in problems), text
