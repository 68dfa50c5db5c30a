"""Crashes at every write point, and writers racing on one document, leave an exact index.

``CrashingStore`` lets k writes through and raises on the next: the process died there. For
every k, readers (``get``, ``len``, ``search``) must already agree with one another — each
document is its old or its new version, and the index matches what ``get`` returns — and
after ``repair()`` the stored keys must be exactly those of a clean index.

``NestingStore`` runs a second writer's whole operation on the same document (or another
document of the same bucket) before the first writer's i-th store call, for every i: the
interleavings where one write happens inside the other. No repair is needed for exactness
then; afterwards the document has exactly one version.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ring
from search import Index
from search import keys as K
from tests.search.test_index import Doc, assert_clean, assert_index_is


class Crash(Exception):
    pass


class ProxyStore:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls = 0
        self.writes = 0

    def before(self, write: bool) -> None:
        self.calls += 1
        self.writes += write

    def get(self, key: Any) -> Any:
        self.before(False)
        return self.store.get(key)

    def get_versioned(self, key: Any) -> Any:
        self.before(False)
        return self.store.get_versioned(key)

    def put(self, key: Any, value: Any, context: Any = None) -> None:
        self.before(True)
        self.store.put(key, value, context=context)

    def delete(self, key: Any, context: Any = None) -> None:
        self.before(True)
        self.store.delete(key, context=context)

    def scan(self, *args: Any, **kwargs: Any) -> Iterator[tuple[bytes, bytes]]:
        self.before(False)
        return self.store.scan(*args, **kwargs)


class CrashingStore(ProxyStore):
    def __init__(self, store: Any, writes_allowed: int) -> None:
        super().__init__(store)
        self.allowed = writes_allowed

    def before(self, write: bool) -> None:
        if write and self.writes >= self.allowed:
            raise Crash
        super().before(write)


class CrashingBatchStore(CrashingStore):
    """The same with ``batch``: each batch is one write point (it applies atomically)."""

    def batch(self) -> Any:
        self.before(True)
        return self.store.batch()


class NestingStore(ProxyStore):
    def __init__(self, store: Any, at: int, other: Callable[[], object]) -> None:
        super().__init__(store)
        self.at = at
        self.other: Callable[[], object] | None = other

    def before(self, write: bool) -> None:
        if self.calls == self.at and self.other is not None:
            other, self.other = self.other, None
            other()
        super().before(write)


BASE: dict[Any, Doc] = {
    "a": {"body": "alpha beta gamma", "title": "first"},
    b"b": {"body": "beta beta delta"},
    "c": {"body": "gamma epsilon"},
}
QUERIES = ["alpha", "beta", "gamma delta", "+beta -alpha", "title:first", "ga*", '"beta gamma"']

Op = Callable[[Index], object]
OPS: dict[str, tuple[Op, dict[Any, Doc]]] = {
    "add new": (lambda ix: ix.add("n", "alpha zeta"), {"n": {"body": "alpha zeta"}}),
    "replace": (lambda ix: ix.add("a", "zeta beta"), {"a": {"body": "zeta beta"}}),
    "remove": (lambda ix: ix.remove("a"), {"a": None}),  # type: ignore[dict-item]
    "add_many": (
        lambda ix: ix.add_many([("a", "omega"), ("n", "alpha"), (b"b", {"t": "beta"})]),
        {"a": {"body": "omega"}, "n": {"body": "alpha"}, b"b": {"t": "beta"}},
    ),
}


def fresh(tmp_path: Path, name: str) -> ring.Store:
    store = ring.open(str(tmp_path / name))
    Index(store, "ix").add_many(BASE.items())
    return store


def current(index: Index, ids: list[Any]) -> dict[Any, Doc]:
    return {d: doc for d in ids if (doc := index.get(d)) is not None}


@pytest.mark.parametrize("batched", [False, True], ids=["puts", "batches"])
@pytest.mark.parametrize("name", OPS)
def test_crash_at_every_write_point(tmp_path: Path, name: str, batched: bool) -> None:
    op, after = OPS[name]
    ids = sorted({*BASE, *after}, key=lambda d: (isinstance(d, bytes), d))
    k = 0
    while True:
        store = fresh(tmp_path, f"{k}")
        proxy = (CrashingBatchStore if batched else CrashingStore)(store, k)
        try:
            op(Index(proxy, "ix"))
            finished = True
        except Crash:
            finished = False
        index = Index(store, "ix")
        docs = current(index, ids)
        for d in ids:  # each document is its old or its new version
            assert docs.get(d) in (BASE.get(d), after.get(d, BASE.get(d))), (k, d)
        if finished:
            assert docs == {d: v for d, v in {**BASE, **after}.items() if v is not None}
        assert_index_is(index, docs, QUERIES)  # readers are exact before any repair
        report = index.repair()
        if finished:
            assert report.intents == 0
        docs = current(index, ids)  # repair finishes an interrupted remove
        for d in ids:
            assert docs.get(d) in (BASE.get(d), after.get(d, BASE.get(d))), (k, d)
        assert_index_is(index, docs, QUERIES)
        assert_clean(index, docs)
        store.close()
        if finished:
            assert k > 2
            break
        k += 1


def same_bucket_as(doc_id: str) -> str:
    want = K.bucket_of(K.encode_doc(doc_id))
    return next(f"o{i}" for i in range(100000) if K.bucket_of(K.encode_doc(f"o{i}")) == want)


def test_a_second_writer_inside_the_first_at_every_point(tmp_path: Path) -> None:
    neighbour = same_bucket_as("a")
    seconds: dict[str, Callable[[Index], object]] = {
        "add same doc": lambda ix: ix.add("a", "second writer text"),
        "remove same doc": lambda ix: ix.remove("a"),
        "add neighbour": lambda ix: ix.add(neighbour, "neighbour alpha"),
    }
    firsts: dict[str, Callable[[Index], object]] = {
        "add": lambda ix: ix.add("a", "first writer alpha"),
        "remove": lambda ix: ix.remove("a"),
        "add_many": lambda ix: ix.add_many([("a", "first many"), ("c", "gamma again")]),
    }
    ids = ["a", b"b", "c", neighbour]
    n = 0
    for first_name, first in firsts.items():
        for second_name, second in seconds.items():
            at = 0
            while True:
                n += 1
                store = fresh(tmp_path, f"{n}")
                other = Index(store, "ix", writer=b"\x00\x00\x00\x02")
                proxy = NestingStore(store, at, lambda o=other, s=second: s(o))  # type: ignore[misc]
                first(Index(proxy, "ix", writer=b"\x00\x00\x00\x01"))
                index = Index(store, "ix")
                docs = current(index, ids)
                versions = [
                    k for k, _ in store.scan(prefix=index.keys.doc_prefix(K.encode_doc("a")))
                ]
                assert len(versions) <= 1, (first_name, second_name, at)
                assert list(store.scan(prefix=index.keys.intents)) == []
                assert_index_is(index, docs, [*QUERIES, "first second", "neighbour", "many"])
                index.repair()
                assert_clean(index, docs)
                store.close()
                if proxy.other is not None:  # the first finished before call `at`
                    break
                at += 1


class NestThenCrash(NestingStore):
    """A second writer's whole operation before call ``at``, then a crash after ``allowed``
    writes of the first."""

    def __init__(self, store: Any, at: int, other: Callable[[], object], allowed: int) -> None:
        super().__init__(store, at, other)
        self.allowed = allowed

    def before(self, write: bool) -> None:
        if write and self.writes >= self.allowed:
            raise Crash
        super().before(write)


def test_a_writer_that_races_another_then_crashes(tmp_path: Path) -> None:
    """The second writer deletes the first's version (record first) before the first has
    written its postings; the first then writes them and dies: ``repair`` finds them through
    the words its intent keeps (its record is gone), and readers are exact before that."""
    ids = ["a", b"b", "c"]
    n = 0
    for allowed in range(1, 12):
        at = 0
        while True:
            n += 1
            store = ring.open(backend="memory", name=f"r{n}")
            Index(store, "ix").add_many(BASE.items())
            other = Index(store, "ix", writer=b"\x00\x00\x00\x02")
            proxy = NestThenCrash(store, at, lambda o=other: o.add("a", "second text"), allowed)
            with contextlib.suppress(Crash):
                Index(proxy, "ix", writer=b"\x00\x00\x00\x01").add("a", "zulu yankee alpha")
            index = Index(store, "ix")
            docs = current(index, ids)
            assert_index_is(index, docs, [*QUERIES, "zulu", "second", "yankee"])
            index.repair()
            assert_clean(index, docs)
            if proxy.other is not None:
                break
            at += 1


def test_a_writer_inside_repair(tmp_path: Path) -> None:
    """A writer replaces the document whose interrupted add ``repair`` is finishing, at every
    point of the repair: nothing of the interrupted version is left."""
    ids = ["a", b"b", "c"]
    for crashed_after in (1, 2, 3):
        at = 0
        while True:
            store = ring.open(backend="memory", name=f"i{crashed_after}-{at}")
            Index(store, "ix").add_many(BASE.items())
            with contextlib.suppress(Crash):
                Index(CrashingStore(store, crashed_after), "ix").add("a", "zulu yankee")
            writer = Index(store, "ix", writer=b"\x00\x00\x00\x03")
            proxy = NestingStore(store, at, lambda w=writer: w.add("a", "new text"))
            Index(proxy, "ix").repair()
            index = Index(store, "ix")
            docs = current(index, ids)
            if proxy.other is None:  # the writer ran inside the repair
                assert docs["a"] == {"body": "new text"}
            assert_index_is(index, docs, [*QUERIES, "zulu", "new"])
            index.repair()
            assert_clean(index, docs)
            if proxy.other is not None:
                break
            at += 1
