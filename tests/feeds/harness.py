"""Test kit for feeds: store proxies that count or crash, and a deterministic cluster simulator.

``SimCluster`` keeps one embedded in-memory store per node. A ``NodeStore`` is the public
key-value API through one node only (N=1 per request, like W=R=1): writes through different
nodes are concurrent until :meth:`SimCluster.sync` copies records between nodes with
``merge_record`` — the same reconcile a replica runs — so real dotted-version-vector siblings
appear in headers and links, exactly as on a cluster where writers use different coordinators.

``Stepper`` runs writer functions in threads but lets only one of them make progress at a time:
each store call parks its thread until the seeded scheduler picks it again, and replication
steps run in between. The interleaving is a function of the seed, so a failure replays.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import ring
from ring.core import record as rec


class Crash(Exception):
    """Raised by :class:`CrashingStore` in place of a write: the process 'died' here."""


class CountingStore:
    """Counts the store operations made through it."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.counts: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def reset(self) -> None:
        self.counts = {}

    @property
    def reads(self) -> int:
        return sum(self.counts.get(n, 0) for n in ("get", "get_versioned", "scan"))

    @property
    def writes(self) -> int:
        return sum(self.counts.get(n, 0) for n in ("put", "delete"))

    @property
    def total(self) -> int:
        return self.reads + self.writes

    def get(self, key: Any) -> Any:
        self._count("get")
        return self.store.get(key)

    def get_versioned(self, key: Any) -> Any:
        self._count("get_versioned")
        return self.store.get_versioned(key)

    def put(self, key: Any, value: Any, context: Any = None) -> None:
        self._count("put")
        self.store.put(key, value, context=context)

    def delete(self, key: Any, context: Any = None) -> None:
        self._count("delete")
        self.store.delete(key, context=context)

    def scan(self, *args: Any, **kwargs: Any) -> Iterator[tuple[bytes, bytes]]:
        self._count("scan")
        return self.store.scan(*args, **kwargs)


class CrashingStore(CountingStore):
    """Lets ``writes_allowed`` writes through, then raises :class:`Crash` on the next one."""

    def __init__(self, store: Any, writes_allowed: int) -> None:
        super().__init__(store)
        self.writes_allowed = writes_allowed

    def _gate(self) -> None:
        if self.writes >= self.writes_allowed:
            raise Crash(f"crashed before write {self.writes + 1}")

    def put(self, key: Any, value: Any, context: Any = None) -> None:
        self._gate()
        super().put(key, value, context)

    def delete(self, key: Any, context: Any = None) -> None:
        self._gate()
        super().delete(key, context)


# --- the simulated cluster ---------------------------------------------------------------------


class SimCluster:
    def __init__(self, nodes: int) -> None:
        self.nodes = [ring.open(backend="memory", name=f"n{i}") for i in range(nodes)]

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def keys(self) -> list[bytes]:
        found: set[bytes] = set()
        for node in self.nodes:
            found.update(k for k, _ in node.scan_records())
        return sorted(found)

    def push(self, key: bytes, src: int, dst: int) -> None:
        """Replicate one key from node ``src`` to node ``dst``."""
        record = self.nodes[src].get_record(key)
        if not record.is_empty:
            self.nodes[dst].merge_record(key, record)

    def sync(self) -> None:
        """Full anti-entropy: every node ends with the join of every copy of every key."""
        for key in self.keys():
            merged = rec.reconcile_all(node.get_record(key) for node in self.nodes)
            for node in self.nodes:
                node.merge_record(key, merged)

    def gossip(self, rng: random.Random, pushes: int) -> None:
        """Some random one-way replication: a stale, partially replicated cluster."""
        keys = self.keys()
        for _ in range(pushes if keys else 0):
            src, dst = rng.sample(range(len(self.nodes)), 2)
            self.push(rng.choice(keys), src, dst)


class NodeStore:
    """The public KV API through one node; ``before`` runs before every call (the stepper).
    With ``read_ahead`` it also offers ``scan_versioned``, as the embedded store does, so feed
    walks read entries ahead through it."""

    def __init__(
        self, node: Any, before: Callable[[], None] | None = None, read_ahead: bool = False
    ) -> None:
        self.node = node
        self.before = before or (lambda: None)
        self.max_siblings = 0
        if read_ahead:
            self.scan_versioned = self._scan_versioned

    def _scan_versioned(self, *args: Any, **kwargs: Any) -> Iterator[tuple[bytes, Any]]:
        self.before()
        pairs = list(self.node.scan_versioned(*args, **kwargs))  # within this thread's turn
        for key, v in pairs:
            self.read_done(key, v)
        return iter(pairs)

    def read_done(self, key: bytes, v: Any) -> None:
        """A read of ``key`` returned ``v``."""
        self.max_siblings = max(self.max_siblings, len(v.values))

    def get(self, key: Any) -> Any:
        self.before()
        return self.node.get(key)

    def get_versioned(self, key: Any) -> Any:
        self.before()
        v = self.node.get_versioned(key)
        self.read_done(key, v)
        return v

    def put(self, key: Any, value: Any, context: Any = None) -> None:
        self.before()
        self.node.put(key, value, context=context)

    def delete(self, key: Any, context: Any = None) -> None:
        self.before()
        self.node.delete(key, context=context)

    def scan(self, *args: Any, **kwargs: Any) -> Iterator[tuple[bytes, bytes]]:
        self.before()
        # Materialise: a lazy scan would run outside this thread's turn.
        return iter(list(self.node.scan(*args, **kwargs)))


class Stepper:
    """Runs tasks one store call at a time in a seeded order (see the module docstring)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._parked = threading.Semaphore(0)
        self._go: list[threading.Semaphore] = []
        self._done: list[bool] = []
        self._errors: list[BaseException] = []
        self._local = threading.local()

    def hook(self) -> None:
        """Called before every store call of a task: hand control back and wait for a turn."""
        me = getattr(self._local, "task", None)
        if me is None:
            return
        self._parked.release()
        self._go[me].acquire()

    def run(self, tasks: list[Callable[[], None]], between: Callable[[], None]) -> None:
        """Run ``tasks`` to completion; ``between`` runs (with every task parked) between
        steps."""
        threads = []
        for i, task in enumerate(tasks):
            self._go.append(threading.Semaphore(0))
            self._done.append(False)
            threads.append(threading.Thread(target=self._main, args=(i, task), daemon=True))
        for t in threads:
            t.start()
        active = list(range(len(tasks)))
        while active:
            between()
            i = self.rng.choice(active)
            self._go[i].release()
            if not self._parked.acquire(timeout=30):
                raise RuntimeError("a stepped task neither parked nor finished in 30 s")
            if self._done[i]:
                active.remove(i)
        for t in threads:
            t.join(timeout=30)
        if self._errors:
            raise self._errors[0]

    def _main(self, i: int, task: Callable[[], None]) -> None:
        self._go[i].acquire()
        self._local.task = i
        try:
            task()
        except BaseException as exc:  # reported by run() in the main thread
            self._errors.append(exc)
        finally:
            self._local.task = None
            self._done[i] = True
            self._parked.release()


def mixed_writes(
    f: Any,
    feed: str,
    writer: int,
    ops: int,
    rng: random.Random,
    added: dict[bytes, tuple[int, str, int]],
    removed: set[bytes],
    lock: threading.Lock,
) -> None:
    """One concurrent writer's share of a mixed load: adds, appends, removes of anyone's entries
    and walks, recording what it added (``added[id] = (writer, kind, seq)``) and removed."""
    for seq in range(ops):
        r = rng.random()
        if r < 0.4:
            entry_id, kind = f.add(feed, f"{writer}:{seq}"), "add"
        elif r < 0.7:
            entry_id, kind = f.append(feed, f"{writer}:{seq}"), "append"
        elif r < 0.9:
            with lock:
                pool = sorted(added)
            victim = rng.choice(pool) if pool else None
            if victim and f.remove(feed, victim):
                with lock:
                    removed.add(victim)
            continue
        else:
            got = [e.id for e in f.entries(feed, reverse=rng.random() < 0.5)]
            assert len(set(got)) == len(got)
            continue
        with lock:
            added[entry_id] = (writer, kind, seq)
