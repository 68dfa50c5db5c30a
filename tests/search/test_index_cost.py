"""The store calls of ``Index`` operations are the ones its docstring's cost table gives, and
what a search scans does not grow with the writes ever made (no tombstone per write under
``T`` or ``W``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ring
from search import Index
from search import keys as K
from tests.search.test_index_crash import same_bucket_as


class Counting:
    """A store that counts calls by kind (``batch`` only when ``batched``)."""

    def __init__(self, store: Any, batched: bool) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()
        if batched:
            self.batch = self._batch

    def get(self, key: Any) -> Any:
        self.calls["get"] += 1
        return self.store.get(key)

    def get_versioned(self, key: Any) -> Any:
        self.calls["read"] += 1
        return self.store.get_versioned(key)

    def put(self, key: Any, value: Any, context: Any = None) -> None:
        self.calls["write"] += 1
        self.store.put(key, value, context=context)

    def delete(self, key: Any, context: Any = None) -> None:
        self.calls["write"] += 1
        self.store.delete(key, context=context)

    def scan(self, *args: Any, **kwargs: Any) -> Iterator[tuple[bytes, bytes]]:
        self.calls["scan"] += 1
        return self.store.scan(*args, **kwargs)

    def _batch(self) -> Any:
        self.calls["write"] += 1
        return self.store.batch()

    def take(self) -> Counter[str]:
        out, self.calls = self.calls, Counter()
        return out


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ring.Store]:
    with ring.open(str(tmp_path / "db")) as db:
        yield db


def pairs(ix: Index, text: str) -> int:
    return len({t for _, t in ix.analyzer.terms(text)})


@pytest.mark.parametrize("batched", [False, True], ids=["puts", "batches"])
def test_add_remove_search_costs(store: ring.Store, batched: bool) -> None:
    proxy = Counting(store, batched)
    ix = Index(proxy, "ix")
    proxy.take()
    first, second = "alpha beta gamma", "delta alpha epsilon zeta"
    u, u2 = pairs(ix, first), pairs(ix, second)

    ix.add("a", first)  # a new document, the first of its bucket: + a scan (recompute)
    got = proxy.take()
    if batched:
        assert got == {"scan": 3, "read": 4, "write": 4}
    else:
        assert sum(got.values()) == u + 10 + 1

    neighbour = same_bucket_as("a")
    ix.add(neighbour, first)  # a new document
    got = proxy.take()
    if batched:
        assert got == {"scan": 2, "read": 4, "write": 4}
    else:
        assert sum(got.values()) == u + 10

    ix.add("a", second)  # replaces one with u pairs
    got = proxy.take()
    if batched:
        assert got == {"scan": 2, "read": u + 5, "write": 5}
    else:
        assert sum(got.values()) == u2 + 2 * u + 12

    # A hit is checked against its document's versions: one scan, which reads its fields.
    assert len(ix.search("zeta")) == 1 and proxy.take() == {"scan": 4}
    assert len(ix) == 2 and proxy.take() == {"scan": 2}
    assert ix.get("a") and proxy.take() == {"scan": 1}

    assert ix.remove("a")
    got = proxy.take()
    if not batched:
        assert sum(got.values()) == 2 * u2 + 10


def test_add_many_costs(store: ring.Store) -> None:
    proxy = Counting(store, batched=False)
    ix = Index(proxy, "ix")
    proxy.take()
    docs = [(f"d{i}", f"word{i} common") for i in range(20)]
    ix.add_many(docs)
    got = proxy.take()
    buckets = len({K.bucket_of(K.encode_doc(d)) for d, _ in docs})
    u = 2  # new documents: k(3 + u) + 4 + 3 per bucket, and a bucket's first write scans it
    assert sum(got.values()) == 20 * (3 + u) + 4 + 3 * buckets + buckets


def test_what_a_search_scans_does_not_grow_with_writes(store: ring.Store) -> None:
    ix = Index(store, "ix")
    for round_ in range(30):
        ix.add_many((f"d{i}", f"text {round_} {i}") for i in range(40))
        ix.add(f"d{round_}", "replaced once more")
        ix.remove(f"d{round_ + 1}")
    stats = list(store.scan_records(ix.keys.stats))  # tombstones included
    intents = list(store.scan_records(ix.keys.intents))
    assert len(stats) <= 256
    assert len(intents) <= 2  # one writer id at a time here (an id per operation at work)
    assert list(store.scan(prefix=ix.keys.intents)) == []
    assert len(ix) == 39  # every round adds all 40 again, then removes one


class CountingMulti(Counting):
    """A store with the multi-key calls of the cluster clients and no ``batch``."""

    def get_versioned_many(self, keys: Any) -> Any:
        self.calls["read"] += 1
        return self.store.get_versioned_many(keys)

    def put_many(self, items: Any) -> None:
        self.calls["write"] += 1
        self.store.put_many(items)


def test_round_trips_with_multi_key_calls(store: ring.Store) -> None:
    """As on ``ring.connect``: a phase's reads before deletes are one call and its puts
    without a context one more, so an add does not make a call per posting."""
    proxy = CountingMulti(store, batched=False)
    ix = Index(proxy, "ix")
    ix.add("seed", "x")  # the bucket statistics of "a" may need a first recompute: not counted
    neighbour = same_bucket_as("a")
    ix.add(neighbour, "first")
    proxy.take()
    first = "alpha beta gamma delta epsilon zeta eta theta"
    ix.add("a", first)
    assert sum(proxy.take().values()) == 11  # a new document, whatever its u
    ix.add("a", "iota kappa")
    u_old = pairs(ix, first)
    assert sum(proxy.take().values()) == u_old + 13  # the old postings' deletes: one each
