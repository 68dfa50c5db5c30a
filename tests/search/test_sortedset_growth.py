"""What the review found about growth and rounding, each as a regression test.

* Records do not grow with every writer id ever seen: writer ids are pooled per process, and
  ``repair`` folds per-writer increment marks and count marks into one base (review r4).
* ``incr`` adds in one double addition, as Redis: ``1e16 + 1 == 1e16`` (review r6).
"""

from __future__ import annotations

import threading

import pytest

import ring
from search.sortedset import ROOT, SortedSet


def sizes(store: ring.Store, zs: SortedSet) -> tuple[int, int]:
    root = store.get_versioned(zs.keys.node(*ROOT)).values
    member = store.get_versioned(zs.keys.member(b"hits")).values
    return len(root[0]), len(member[0])


def test_a_new_instance_per_call_reuses_writer_ids_and_repair_folds() -> None:
    with ring.open(backend="memory") as store:
        for i in range(300):
            zs = SortedSet(store, "board")  # e.g. one per request
            zs.incr("hits", 1)
            zs.add(f"user{i}", i)

        def worker(t: int) -> None:
            for i in range(50):
                SortedSet(store, "board").add(f"t{t}-{i}", i)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        zs = SortedSet(store, "board")
        root, member = sizes(store, zs)
        # before the pool: a mark per instance (the root held 48 KB at 2,000 instances)
        assert len({m.writer for m in zs._read_node(ROOT)[0].marks}) <= 5
        assert root < 3_000, root  # the old code: a mark for each of 300 ids
        assert zs._read(b"hits").rec.incs and len(zs._read(b"hits").rec.incs) <= 5
        report = zs.repair()
        assert report.records_fixed == report.nodes_fixed == 0, report
        assert report.records_folded >= 1 and report.nodes_folded >= 1, report
        root2, member2 = sizes(store, zs)
        print("root, member 'hits' bytes before repair", (root, member), "after", (root2, member2))
        assert root2 < root and member2 < 100 and member2 < member
        assert zs._read_node(ROOT)[0].marks == ()
        assert zs.score("hits") == 300.0 and len(zs) == 501
        assert zs.incr("hits", 1) == 301.0 and zs.rank("user299") == 499 and zs.rank("hits") == 500
        again = zs.repair()
        assert again.records_fixed == again.nodes_fixed == 0, again


def test_incr_is_one_double_addition_as_in_redis() -> None:
    with ring.open(backend="memory") as store:
        zs = SortedSet(store, "z")
        zs.add("m", 1e16)
        assert zs.incr("m", 1) == 1e16 and zs.incr("m", 1) == 1e16
        assert zs.score("m") == 1e16
        zs.add("n", 0.1)
        x = 0.1
        for _ in range(9):
            x += 0.1
            assert zs.incr("n", 0.1) == x
        assert zs.score("n") == x == 0.9999999999999999
        # another writer's increments on top: still one addition each, in order
        other = SortedSet(store, "z", writer=b"other-wr")
        assert other.incr("m", 3) == 1e16 + 4 and zs.incr("m", 1) == 1e16 + 4


def test_concurrent_increments_still_all_count() -> None:
    with ring.open(backend="memory") as store:
        a = SortedSet(store, "z", writer=b"writer-a")
        b = SortedSet(store, "z", writer=b"writer-b")
        a.add("m", 0.0)
        # b reads, a commits, b commits from the state it read: siblings
        view = b._read(b"m")
        a.incr("m", 2.0)
        with b._writer():
            from dataclasses import replace

            from search._zrecords import Inc, seen_digest

            rec = view.rec
            hts = b._tick(rec.newest_hts())
            inc = Inc(b"writer-b", rec.set_v, hts, 5.0, 5.0, seen_digest(rec.incs, b"writer-b"))
            b._commit(b"m", view, replace(rec, incs=(inc,)), hts)
        assert a.score("m") == b.score("m") == 7.0


def test_rejected_calls_do_not_grow_the_records() -> None:
    """A call refused for its arguments returns its writer id to the pool: the next good call
    writes as the same writer, so the root (read by every call) keeps its size (review 2)."""
    with ring.open(backend="memory") as store:
        zs = SortedSet(store, "z")
        for i in range(10):
            zs.add(f"m{i}", i)

        def root() -> int:
            return sum(len(v) for v in store.get_versioned(zs.keys.node(*ROOT)).values)

        before = root()
        for i in range(300):
            with pytest.raises(ring.InvalidInput):
                zs.add("m1", 1, nx=True, xx=True)
            with pytest.raises(ring.InvalidInput):
                zs.incr("m1", float("nan"))
            zs.add(f"m{i % 10}", i)
        assert root() <= before + 64
