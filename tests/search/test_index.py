"""``search.Index`` against a brute-force model: BM25 exact, boolean/phrase/prefix sets exact.

``Model`` evaluates a parsed query directly over the documents (no index, no store): each test
compares what the index returns with it. The corpus for exactness is Python's own stdlib
docstrings, which nothing here was tuned to.
"""

from __future__ import annotations

import importlib
import inspect
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import ring
from search import Index
from search import keys as K
from search.analysis import Analyzer, analyzer_named
from search.index import bm25
from search.query import Group, Node, Prefix, parse

Doc = dict[str, str]
Word = tuple[str, str]


class Model:
    """The index's semantics computed from the documents themselves."""

    def __init__(self, docs: dict[Any, Doc], analyzer: Analyzer) -> None:
        self.docs = docs
        self.analyzer = analyzer
        self.terms = {
            d: {f: analyzer.terms(text) for f, text in fields.items()} for d, fields in docs.items()
        }
        self.n: dict[str, int] = {}
        self.sum_dl: dict[str, int] = {}
        self.df: dict[Word, int] = {}
        for fields in self.terms.values():
            for f, terms in fields.items():
                self.n[f] = self.n.get(f, 0) + 1
                self.sum_dl[f] = self.sum_dl.get(f, 0) + len(terms)
                for t in {t for _, t in terms}:
                    self.df[(f, t)] = self.df.get((f, t), 0) + 1

    def scope(self, field: str | None) -> list[str]:
        return sorted(self.n) if field is None else [field]

    def match(self, node: Node, doc: Any) -> set[Word] | None:
        """The words ``doc`` matches ``node`` by; None if it does not match; raises Dropped."""
        fields = self.terms[doc]
        if isinstance(node, Group):
            return self.group(node, doc)
        if isinstance(node, Prefix):
            p = node.text.casefold()
            words = {
                (f, t)
                for f in self.scope(node.field)
                for _, t in fields.get(f, [])
                if t.startswith(p)
            }
            return words or None
        q = self.analyzer.terms(node.text)
        if not q:
            raise Dropped
        words = set()
        for f in self.scope(node.field):
            toks = dict(fields.get(f, []))  # position -> term
            first = q[0][0]
            if any(all(toks.get(p + pos - first) == t for pos, t in q) for p in toks):
                words |= {(f, t) for _, t in q}
        return words or None

    def group(self, g: Group, doc: Any) -> set[Word] | None:
        kept = []
        for occur, node in g.clauses:
            try:
                kept.append((occur, self.match(node, doc)))
            except Dropped:
                pass
        if not kept:
            raise Dropped
        if any(o == "must_not" and m is not None for o, m in kept):
            return None
        musts = [m for o, m in kept if o == "must"]
        shoulds = [m for o, m in kept if o == "should"]
        if musts:
            if any(m is None for m in musts):
                return None
        elif not any(m is not None for m in shoulds):
            return None
        words: set[Word] = set()
        for m in musts + shoulds:
            words |= m or set()
        return words

    def score(self, doc: Any, words: set[Word]) -> float:
        total = 0.0
        for f, t in sorted(words):
            tf = sum(1 for _, x in self.terms[doc][f] if x == t)
            dl = len(self.terms[doc][f])
            n = self.n[f]
            total += bm25(tf, dl, self.df[(f, t)], n, self.sum_dl[f] / n)
        return total

    def search(self, query: str) -> dict[Any, float]:
        tree = parse(query)
        out = {}
        for doc in self.docs:
            try:
                words = self.match(tree, doc)
            except Dropped:
                return {}
            if words is not None:
                out[doc] = self.score(doc, words)
        return out


class Dropped(Exception):
    pass


def order(doc_id: Any) -> tuple[int, Any]:
    return (0, doc_id) if isinstance(doc_id, str) else (1, doc_id)


def assert_same(index: Index, model: Model, query: str) -> None:
    hits = index.search(query, limit=10**6)
    want = model.search(query)
    got = {h.id: h.score for h in hits}
    assert set(got) == set(want), (
        f"{query!r}: extra {set(got) - set(want)}, missing {set(want) - set(got)}"
    )
    for d, s in want.items():
        assert math.isclose(got[d], s, rel_tol=1e-9, abs_tol=1e-12), (query, d, got[d], s)
    keys = [(-h.score, order(h.id)) for h in hits]
    assert keys == sorted(keys), query
    for h in hits[:5]:
        assert h.fields == model.docs[h.id]


def assert_index_is(index: Index, docs: dict[Any, Doc], queries: list[str]) -> None:
    model = Model(docs, index.analyzer)
    assert len(index) == len(docs)
    for d, fields in docs.items():
        assert index.get(d) == fields
    for q in queries:
        assert_same(index, model, q)


def assert_clean(index: Index, docs: dict[Any, Doc]) -> None:
    """The stored keys are exactly what ``docs`` indexed once: no intents, one version per
    document, its postings and nothing else, one statistics key per bucket with exact values."""
    keys = index.keys
    store = index.store
    assert list(store.scan(prefix=keys.intents)) == []
    versions: dict[bytes, bytes] = {}
    for key, _ in store.scan(prefix=keys.docs):
        _, doc, version = keys.parse_doc_key(key)
        assert doc not in versions, f"two versions of {doc!r}"
        versions[doc] = version
    assert {K.decode_doc(d)[0] for d in versions} == set(docs)
    expected = set()
    for d, fields in docs.items():
        enc = K.encode_doc(d)
        for f, text in fields.items():
            for _, t in index.analyzer.terms(text):
                expected.add(keys.posting(f, t, enc, versions[enc]))
    assert {k for k, _ in store.scan(prefix=keys.postings)} == expected
    buckets: dict[bytes, list[bytes]] = {}
    for key, value in store.scan(prefix=keys.stats):
        buckets.setdefault(key[len(keys.stats) : len(keys.stats) + 2], []).append(value)
    for b, values in buckets.items():
        assert len(values) == 1, f"bucket {b!r} has {len(values)} statistics keys"
    for enc in versions:
        assert K.bucket_of(enc) in buckets


# --- a corpus nobody tuned to: stdlib docstrings -----------------------------------------------

MODULES = [
    "json", "os", "re", "collections", "functools", "itertools", "pathlib", "subprocess",
    "threading", "argparse", "logging", "string", "textwrap", "heapq", "bisect", "csv",
    "shutil", "tempfile", "datetime", "random", "statistics", "fractions", "decimal", "enum",
]  # fmt: skip


def stdlib_docs(limit: int = 400) -> dict[str, Doc]:
    docs: dict[str, Doc] = {}
    for name in MODULES:
        mod = importlib.import_module(name)
        if mod.__doc__:
            docs[name] = {"title": name, "body": mod.__doc__}
        for attr, obj in sorted(vars(mod).items()):
            if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            doc = inspect.getdoc(obj)
            if doc and len(docs) < limit:
                docs[f"{name}.{attr}"] = {"title": f"{name} {attr}", "body": doc}
    return docs


def queries_for(docs: dict[Any, Doc], analyzer: Analyzer, n: int, seed: int) -> list[str]:
    """Queries of every shape over words the corpus has (and a few it lacks)."""
    rng = random.Random(seed)
    words = sorted(
        {
            w
            for f in docs.values()
            for t in f.values()
            for w in t.split()
            if w.isalpha() and w not in ("AND", "OR", "NOT")
        }
    )
    words += ["zzzabsent", "the", "and"]
    phrases = []
    for fields in docs.values():
        toks = fields.get("body", "").split()
        if len(toks) > 3:
            i = rng.randrange(len(toks) - 2)
            phrases.append(" ".join(toks[i : i + rng.choice([2, 3])]).replace('"', ""))
    w = lambda: rng.choice(words)  # noqa: E731
    shapes = [
        lambda: w(),
        lambda: f"{w()} {w()}",
        lambda: f"+{w()} {w()}",
        lambda: f"{w()} -{w()}",
        lambda: f"{w()} AND {w()}",
        lambda: f"{w()} OR {w()} AND {w()}",
        lambda: f"({w()} OR {w()}) AND NOT {w()}",
        lambda: f'"{rng.choice(phrases)}"' if phrases else w(),
        lambda: f'body:"{rng.choice(phrases)}" {w()}' if phrases else w(),
        lambda: f"{w()[:3]}*" if len(w()) > 2 else "ab*",
        lambda: f"title:{w()} {w()[:2]}*",
        lambda: f"title:({w()} {w()}) -body:{w()}",
        lambda: f"NOT {w()}",
    ]
    return [rng.choice(shapes)() for _ in range(n)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ring.Store]:
    with ring.open(str(tmp_path / "db")) as db:
        yield db


@pytest.mark.parametrize("analyzer", ["standard", "english"])
def test_bm25_and_matching_are_exact_on_stdlib_docstrings(store: ring.Store, analyzer: str) -> None:
    docs = stdlib_docs()
    index = Index(store, "stdlib", analyzer)
    assert index.add_many(docs.items(), batch_size=64) == len(docs)
    queries = queries_for(docs, analyzer_named(analyzer), 150, seed=7)
    queries += ["json", "return the", '"the default"', "thr*", "+file -path", "title:os"]
    assert_index_is(index, docs, queries)
    assert_clean(index, docs)
    # one direct computation spelled out: the formula, not the model
    hits = index.search("title:json", limit=100)
    n = sum(1 for d in docs.values())
    titles = {d: analyzer_named(analyzer).terms(f["title"]) for d, f in docs.items()}
    n_t = sum(1 for t in titles.values() if any(x == "json" for _, x in t))
    avgdl = sum(len(t) for t in titles.values()) / n
    for h in hits:
        tf = sum(1 for _, x in titles[h.id] if x == "json")
        dl = len(titles[h.id])
        idf = math.log(1 + (n - n_t + 0.5) / (n_t + 0.5))
        want = idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / avgdl))
        assert math.isclose(h.score, want, rel_tol=1e-12)
    assert len(hits) == n_t > 0


def test_replace_and_remove(store: ring.Store) -> None:
    index = Index(store, "r")
    index.add("a", "alpha beta")
    index.add(b"a", {"title": "bytes id", "body": "gamma"})
    index.add("b", "beta delta")
    assert len(index) == 3
    index.add("a", "gamma gamma")  # replaces: alpha and beta stop matching
    assert [h.id for h in index.search("alpha")] == []
    assert [h.id for h in index.search("beta")] == ["b"]
    hits = index.search("gamma")
    assert [h.id for h in hits] == ["a", b"a"]  # tf 2 beats tf 1 in a longer document
    assert index.get("a") == {"body": "gamma gamma"} and index.get(b"a")["title"] == "bytes id"
    assert index.remove("a") is True and index.remove("a") is False
    assert index.get("a") is None and len(index) == 2
    assert [h.id for h in index.search("gamma")] == [b"a"]
    index.add_many([("c", "x"), ("c", "y"), ("d", "x")])  # the same id twice: the last wins
    assert index.get("c") == {"body": "y"}
    docs = {b"a": {"title": "bytes id", "body": "gamma"}, "b": {"body": "beta delta"},
            "c": {"body": "y"}, "d": {"body": "x"}}  # fmt: skip
    assert_index_is(index, docs, ["gamma", "x y", "title:id", "be*"])
    assert_clean(index, docs)


def test_paging_ties_snippets_and_input_checks(store: ring.Store) -> None:
    index = Index(store, "p")
    index.add_many([(f"d{i:02}", "same words here") for i in range(25)])
    index.add(b"zz", "same words here")
    ids = [h.id for h in index.search("same", limit=100)]
    assert ids == [f"d{i:02}" for i in range(25)] + [b"zz"]  # ties by id, str before bytes
    assert [h.id for h in index.search("same", limit=5, offset=10)] == ids[10:15]
    index.add("long", {"t": "Nothing", "body": "One two. The Quick brown fox; quick QUICK!"})
    (hit,) = index.search("quick", snippets=True)
    assert hit.snippet == "<b>Quick</b> brown fox; <b>quick</b> <b>QUICK</b>"
    assert index.search("absent") == []
    assert index.search("the") == [] or True
    with pytest.raises(ring.InvalidInput):
        index.add(1, "x")  # type: ignore[arg-type]
    with pytest.raises(ring.InvalidInput):
        index.add("x", {"f": 1})
    with pytest.raises(ring.InvalidInput):
        index.search("a AND")
    with pytest.raises(ring.InvalidInput):
        Index(store, "p", "english")  # the index was made with another analyzer
    other = Index(store, "p2")
    assert other.search("same") == [] and len(other) == 0  # indexes do not see each other


def test_doc_ids_and_field_names_of_any_bytes(store: ring.Store) -> None:
    index = Index(store, "weird")
    ids: list[Any] = [b"", b"\x00", b"\x00\x01", b"\xff" * 3, "", "\x00", "é", "a\x00b"]
    docs = {d: {"f\x00": f"word{i}", "x\x00\x01": "shared"} for i, d in enumerate(ids)}
    index.add_many(docs.items())
    assert_index_is(index, docs, ["shared", "word3", "wor*", "shared -word0"])
    assert_clean(index, docs)


# --- a state machine against the model --------------------------------------------------------

VOCAB = ["apple", "apricot", "banana", "band", "cherry", "the", "a", "b"]
IDS = ["x", "y", "z", b"x", b"w"]
texts = st.lists(st.sampled_from(VOCAB), min_size=0, max_size=8).map(" ".join)
docs_st = st.one_of(texts, st.dictionaries(st.sampled_from(["title", "body"]), texts, max_size=2))
query_st = st.one_of(
    st.lists(st.sampled_from(VOCAB), min_size=1, max_size=3).map(" ".join),
    st.tuples(st.sampled_from(VOCAB), st.sampled_from(VOCAB)).map(lambda p: f"+{p[0]} -{p[1]}"),
    st.tuples(st.sampled_from(VOCAB), st.sampled_from(VOCAB)).map(lambda p: f'"{p[0]} {p[1]}"'),
    st.sampled_from(["ap*", "ba*", "title:ap*", "title:banana", "body:(apple OR band)"]),
)


class IndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.db = ring.open(backend="memory")
        self.index = Index(self.db, "m")
        self.docs: dict[Any, Doc] = {}

    def teardown(self) -> None:
        self.db.close()

    @staticmethod
    def fields(doc: str | Doc) -> Doc:
        return {"body": doc} if isinstance(doc, str) else dict(doc)

    @rule(d=st.sampled_from(IDS), doc=docs_st)
    def add(self, d: Any, doc: str | Doc) -> None:
        self.index.add(d, doc)
        self.docs[d] = self.fields(doc)

    @rule(items=st.lists(st.tuples(st.sampled_from(IDS), docs_st), max_size=4))
    def add_many(self, items: list[tuple[Any, str | Doc]]) -> None:
        self.index.add_many(items, batch_size=2)
        for d, doc in items:
            self.docs[d] = self.fields(doc)

    @rule(d=st.sampled_from(IDS))
    def remove(self, d: Any) -> None:
        assert self.index.remove(d) == (d in self.docs)
        self.docs.pop(d, None)

    @rule(q=query_st)
    def search(self, q: str) -> None:
        assert_same(self.index, Model(self.docs, self.index.analyzer), q)

    @invariant()
    def same_documents(self) -> None:
        assert len(self.index) == len(self.docs)
        for d in IDS:
            assert self.index.get(d) == self.docs.get(d)

    @invariant()
    def clean(self) -> None:
        assert_clean(self.index, self.docs)


TestIndexMachine = IndexMachine.TestCase
TestIndexMachine.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
