"""Threads on one embedded store: one shared ``Index`` (a writer per thread) and a second
``Index`` instance, adding, replacing and removing overlapping documents at once. Afterwards,
with no repair, every document has one version, and the index is exactly what ``get`` says."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import ring
from search import Index
from search import keys as K
from tests.search.test_index import Doc, assert_clean, assert_index_is

WORDS = ["red", "green", "blue", "cyan", "magenta", "yellow", "black", "white"]


def test_threads_on_one_store(tmp_path: Path) -> None:
    with ring.open(str(tmp_path / "db")) as store:
        shared = Index(store, "t")
        written: dict[Any, list[Doc]] = {}
        lock = threading.Lock()
        errors: list[BaseException] = []
        barrier = threading.Barrier(5)

        def work(seed: int) -> None:
            rng = random.Random(seed)
            index = shared if seed % 2 else Index(store, "t")
            try:
                barrier.wait()
                for _ in range(60):
                    d: Any = rng.choice(["a", "b", "c", b"a", f"own{seed}-{rng.randrange(5)}"])
                    r = rng.random()
                    if r < 0.2:
                        index.remove(d)
                    elif r < 0.4:
                        items = [(d, " ".join(rng.choices(WORDS, k=3))), ("c", rng.choice(WORDS))]
                        with lock:
                            written.setdefault(d, []).append({"body": items[0][1]})
                            written.setdefault("c", []).append({"body": items[1][1]})
                        index.add_many(items)
                    else:
                        text = " ".join(rng.choices(WORDS, k=rng.randrange(1, 6)))
                        with lock:
                            written.setdefault(d, []).append({"body": text})
                        index.add(d, text)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        docs = {d: doc for d in written if (doc := shared.get(d)) is not None}
        for d, doc in docs.items():
            assert doc in written[d]
            prefix = shared.keys.doc_prefix(K.encode_doc(d))
            assert len(list(store.scan(prefix=prefix))) == 1
        queries = [*WORDS, "red green", "+blue -red", '"red green"', "ma*", "NOT red"]
        assert_index_is(shared, docs, queries)
        shared.repair()
        assert_clean(shared, docs)
        assert_index_is(shared, docs, queries)
