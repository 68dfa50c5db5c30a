"""search.Index and search.SortedSet beside whoosh, tantivy and redis, measured in one run.

    python benchmarks/search.py [--quick] [--json] [--docs 10000] [--cluster-docs 2000]
                                [--members 10000] [--reps 5] [--no-cluster] [--ringd CMD]

The corpus is what the machine has, shuffled with a fixed seed: man pages under
``/usr/share/man/man*`` (gunzipped, roff markup stripped crudely; the title is the NAME line),
docstrings of the standard library (modules, classes, functions; ``inspect.getdoc``, gathered in
a child process so the imports stay out of this one) and documentation files under
``/usr/share/doc`` (READMEs, ``.txt``, ``.md``). Each document has two fields, ``title`` and
``body`` (cut at 32,000 characters); every engine stores both and indexes both with positions.

Indexing (docs/s), the same documents in the same order, batches of ``BATCH`` documents:

* **ringkv embedded** - ``search.Index(ring.open(tmp))``, ``add_many(..., batch_size=BATCH)``;
* **ringkv cluster** - the same on ``ring.connect`` to three local ``ringd`` (N=3 R=2 W=2,
  started as ``benchmarks/cluster.py`` does and stopped by PID), on the first
  ``--cluster-docs`` documents;
* **whoosh 2.7.4** - one writer and ``commit`` per batch (the durability of an ``add_many``
  batch), and once more with one writer and one commit for everything (whoosh at its best);
* **tantivy** - one indexing thread (``num_threads=1``), a commit per batch.

All use the same tokenization: runs of word characters, lower-cased, no stop words, no stemming
(ringkv's ``standard`` analyzer; whoosh ``RegexTokenizer(r"\\w+") | LowercaseFilter()``;
tantivy's ``default`` tokenizer).

Queries: a mix drawn from the corpus's own terms (a fixed seed): single words (rare, medium and
frequent), three words OR'ed, ``+a -b``, a two-word phrase, a prefix ``pre*``; each translated
to each engine's syntax (tantivy has no prefix syntax: a ``regex_query`` per field, OR'ed). A
query is parsed and its 10 best hits fetched with their stored fields. One untimed pass, then
``--reps`` timed passes; p50 and p99 over every timed query. "top-10 overlap" is the mean share
of ringkv's ten best ids the other engine also returns (scoring differs in details: a sanity
check of the translation, not a figure to optimize).

Sorted sets: ``--members`` ``SortedSet.add`` with random scores, then random ``rank`` and
``range(s, s + 9)`` calls, one at a time, beside redis-server's ZADD/ZRANK/ZRANGE ... WITHSCORES
through the ``redis`` package, one command at a time (no pipelining), on a redis-server this
script starts without persistence on a free port and stops by PID. Skipped with a note when
redis-server or the package is missing; so are whoosh and tantivy (``pip install -e '.[bench]'``).

The machine may be shared and noisy: compare the ratios, which come from the same run.

Goals (issue 11): embedded indexing >= 1.0x whoosh's docs/s (both batched); query p50 <=
whoosh's.

``--quick``: 600 documents, 200 on the cluster, 1,000 members, 2 timed passes (a smoke run).
``--json``: one JSON object instead of the table.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import math
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# The repository first: this file is itself named search.py.
sys.path[:0] = [str(HERE.parent)]

import ring  # noqa: E402
from search import Index, SortedSet  # noqa: E402

sys.path.insert(1, str(HERE))
from _procs import Child, ChildFailed, free_port, spawn, stop_all, wait_ready  # noqa: E402

BATCH = 256
LIMIT = 10
MAX_CHARS = 32_000
SEED = 11
REDIS_READY = re.compile(r"Ready to accept connections")

Doc = tuple[str, dict[str, str]]


# --- the corpus ----------------------------------------------------------------------------------

ROFF_COMMENT = re.compile(r"^[.']\s*\\\"")
ROFF_REQUEST = re.compile(r"^[.'][ \t]*[A-Za-z][A-Za-z0-9]?[A-Za-z0-9]?\b[ \t]*")
ROFF_NOISE = re.compile(r"^[.'\\}{\s]*$")  # "..", ".}", "\\}" and the like
ROFF_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes
    (re.compile(r"\\s[+-]?\d+"), ""),  # size changes
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),  # strings
    (re.compile(r"\\\((..)"), " "),  # special characters
    (re.compile(r"\\\[[^\]]*\]"), " "),
    (re.compile(r"\\[-e]"), "-"),
    (re.compile(r"\\[&|^%:]"), ""),
    (re.compile(r"\\(.)"), r"\1"),
]


def strip_roff(text: str) -> tuple[str, str]:
    """Crude: comments dropped, requests reduced to their arguments, escapes removed. Returns
    ``(name line, text)``."""
    out: list[str] = []
    name, in_name, in_macro = "", False, False
    for line in text.splitlines():
        if in_macro:  # a macro definition, up to ".."
            in_macro = not line.startswith("..")
            continue
        if ROFF_COMMENT.match(line) or ROFF_NOISE.match(line):
            continue
        request = ROFF_REQUEST.match(line)
        if request:
            macro = line[: request.end()].strip(".' \t")
            line = line[request.end() :]
            if macro in ("SH", "Sh"):
                in_name = line.strip().strip('"').upper() == "NAME"
                if in_name:
                    continue
            elif macro in ("de", "de1", "am"):
                in_macro = True
                continue
            elif macro in ("TH", "Dd", "Dt", "Os", "so", "ds", "nr", "tr", "if", "ie", "el"):
                continue
        for pattern, repl in ROFF_ESCAPES:
            line = pattern.sub(repl, line)
        line = line.replace('"', " ").strip()
        if not line:
            continue
        if in_name and not name:
            name = line
        out.append(line)
    return name, "\n".join(out)


def read_man(path: Path) -> Doc | None:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    name, body = strip_roff(raw.decode("utf-8", errors="replace"))
    stem = path.name.removesuffix(".gz")
    page, _, section = stem.rpartition(".")
    return f"man:{stem}", {"title": name or f"{page}({section})", "body": body}


def read_docfile(path: Path) -> Doc | None:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    if b"\0" in raw[:4096]:
        return None
    rel = path.relative_to("/usr/share/doc")
    return f"doc:{rel}", {
        "title": f"{rel.parts[0]} {path.name}",
        "body": raw.decode(errors="replace"),
    }


SKIP_MODULES = {"antigravity", "this", "idlelib", "test", "tkinter", "turtle", "turtledemo"}
SKIP_MODULES |= {"lib2to3", "ensurepip", "pydoc_data", "xxsubtype", "xxlimited"}
SKIP_MODULES |= {"encodings"}  # a hundred codec modules with the same docstring


def stdlib_docstrings() -> Iterator[tuple[str, str, str]]:
    """``(qualified name, title, docstring)`` of public stdlib modules (one level of packages),
    their classes, functions and methods (run in a child process: ``--stdlib-docs``)."""
    import importlib
    import inspect
    import pkgutil

    names: list[str] = []
    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in SKIP_MODULES:
            continue
        names.append(top)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                module = importlib.import_module(top)
        except BaseException:
            continue
        for sub in pkgutil.iter_modules(getattr(module, "__path__", []) or []):
            if not sub.name.startswith("_") and sub.name not in ("test", "tests"):
                names.append(f"{top}.{sub.name}")
    seen: set[int] = set()
    for name in names:
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except BaseException:
            continue
        objects: list[tuple[str, Any]] = [(name, module)]
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if inspect.isclass(obj):
                objects.append((f"{name}.{attr}", obj))
                for meth, fn in sorted(vars(obj).items()):
                    if not meth.startswith("_") and inspect.isfunction(fn):
                        objects.append((f"{name}.{attr}.{meth}", fn))
            elif inspect.isfunction(obj):
                objects.append((f"{name}.{attr}", obj))
        for qualified, obj in objects:
            doc = inspect.getdoc(obj)
            if not doc or id(doc) in seen or len(doc) < 80:
                continue
            seen.add(id(doc))
            try:
                signature = str(inspect.signature(obj)) if callable(obj) else ""
            except (TypeError, ValueError):
                signature = ""
            yield qualified, f"{qualified}{signature}", doc


def gather_stdlib() -> list[Doc]:
    proc = subprocess.run(
        [sys.executable, __file__, "--stdlib-docs"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    docs = []
    for line in proc.stdout.splitlines():
        name, title, body = json.loads(line)
        docs.append((f"py:{name}", {"title": title, "body": body}))
    return docs


def corpus(n: int) -> tuple[list[Doc], Counter[str]]:
    """``n`` documents (fewer if the machine has fewer), and how many came from each source."""
    candidates: list[tuple[str, Any]] = []
    man = Path("/usr/share/man")
    if man.is_dir():
        candidates += [("man", p) for p in sorted(man.glob("man*/*")) if p.is_file()]
    doc = Path("/usr/share/doc")
    if doc.is_dir():
        wanted = re.compile(r"^(README.*|.*\.(txt|md|rst))(\.gz)?$", re.IGNORECASE)
        candidates += [
            ("doc", p) for p in sorted(doc.rglob("*")) if wanted.match(p.name) and p.is_file()
        ]
    candidates += [("py", d) for d in gather_stdlib()]
    random.Random(SEED).shuffle(candidates)
    docs: list[Doc] = []
    sources: Counter[str] = Counter()
    families: Counter[str] = Counter()
    ids: set[str] = set()
    for source, item in candidates:
        if len(docs) >= n:
            break
        if source == "man":
            # gcloud alone ships ~16k pages here: no family of man pages is more than a tenth.
            family = re.split(r"[_.-]", item.name, maxsplit=1)[0]
            if families[family] >= max(20, n // 10):
                continue
            families[family] += 1
        got = read_man(item) if source == "man" else read_docfile(item) if source == "doc" else item
        if got is None or len(got[1]["body"]) < 200 or got[0] in ids:
            continue
        got[1]["body"] = got[1]["body"][:MAX_CHARS]
        ids.add(got[0])
        docs.append(got)
        sources[source] += 1
    return docs, sources


# --- the query mix -------------------------------------------------------------------------------

WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Query:
    kind: str  # word, or, must-not, phrase, prefix
    words: tuple[str, ...]

    def ringkv(self) -> str:
        w = self.words
        if self.kind == "must-not":
            return f"+{w[0]} -{w[1]}"
        if self.kind == "phrase":
            return f'"{" ".join(w)}"'
        if self.kind == "prefix":
            return f"{w[0]}*"
        return " ".join(w)

    whoosh = ringkv  # with whoosh's PlusMinusPlugin the syntax is the same


def query_mix(docs: list[Doc]) -> list[Query]:
    rng = random.Random(SEED)
    df: Counter[str] = Counter()
    for _, fields in docs:
        df.update({t for text in fields.values() for t in WORD.findall(text.casefold())})
    n = len(docs)
    usable = sorted(t for t in df if t.isascii() and t.isalpha() and 3 <= len(t) <= 20)

    def band(lo: float, hi: float) -> list[str]:
        return [t for t in usable if lo <= df[t] / n <= hi and df[t] >= 2]

    rare, medium, frequent = band(0, 0.002), band(0.005, 0.05), band(0.05, 0.3)
    rare = rare or medium

    def pick(pool: list[str], k: int) -> list[str]:
        return rng.sample(pool, min(k, len(pool)))

    queries = [Query("word", (w,)) for w in pick(rare, 2) + pick(medium, 3) + pick(frequent, 3)]
    for _ in range(6):
        queries.append(Query("or", tuple(pick(medium, 2) + pick(frequent, 1))))
    for _ in range(6):
        queries.append(Query("must-not", (*pick(frequent, 1), *pick(medium, 1))))
    phrases = 0
    while phrases < 6:
        _, fields = rng.choice(docs)
        words = WORD.findall(fields["body"].casefold())
        if len(words) < 10:
            continue
        i = rng.randrange(len(words) - 1)
        pair = words[i : i + 2]
        if all(w.isascii() and w.isalpha() and len(w) >= 3 for w in pair):
            queries.append(Query("phrase", tuple(pair)))
            phrases += 1
    for w in pick(medium, 6):
        queries.append(Query("prefix", (w[: max(3, min(4, len(w) - 1))],)))
    return queries


# --- engines -------------------------------------------------------------------------------------


def batches(docs: list[Doc], size: int = BATCH) -> Iterator[list[Doc]]:
    for i in range(0, len(docs), size):
        yield docs[i : i + size]


@dataclass
class Result:
    engine: str
    docs: int = 0
    index_s: float = math.nan
    latencies_ms: list[float] = field(default_factory=list)
    hits: dict[Query, list[str]] = field(default_factory=dict)
    note: str = ""

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.index_s if self.index_s else math.nan

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies_ms)
        if not xs:
            return math.nan
        return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


class Engine:
    name = ""

    def index(self, docs: list[Doc]) -> None:
        raise NotImplementedError

    def search(self, q: Query) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Ringkv(Engine):
    def __init__(self, name: str, store: Any, close: Callable[[], None]) -> None:
        self.name, self.store, self._close = name, store, close
        self.ix = Index(store, "bench")

    def index(self, docs: list[Doc]) -> None:
        self.ix.add_many(docs, batch_size=BATCH)

    def search(self, q: Query) -> list[str]:
        return [str(h.id) for h in self.ix.search(q.ringkv(), limit=LIMIT) if h.fields is not None]

    def close(self) -> None:
        self._close()


class Whoosh(Engine):
    def __init__(self, work: Path, one_commit: bool) -> None:
        from whoosh import fields, index
        from whoosh.analysis import LowercaseFilter, RegexTokenizer
        from whoosh.qparser import MultifieldParser, OrGroup, PlusMinusPlugin

        self.name = "whoosh, one commit" if one_commit else "whoosh"
        self.one_commit = one_commit
        analyzer = RegexTokenizer(r"\w+") | LowercaseFilter()
        schema = fields.Schema(
            id=fields.ID(stored=True),
            title=fields.TEXT(stored=True, analyzer=analyzer),
            body=fields.TEXT(stored=True, analyzer=analyzer),
        )
        work.mkdir(parents=True, exist_ok=True)
        self.ix = index.create_in(str(work), schema)
        self.parser = MultifieldParser(["title", "body"], schema, group=OrGroup)
        self.parser.add_plugin(PlusMinusPlugin())
        self.searcher: Any = None

    def index(self, docs: list[Doc]) -> None:
        for chunk in [docs] if self.one_commit else batches(docs):
            w = self.ix.writer()
            for doc_id, f in chunk:
                w.add_document(id=doc_id, title=f["title"], body=f["body"])
            w.commit()

    def search(self, q: Query) -> list[str]:
        if self.searcher is None:
            self.searcher = self.ix.searcher()
        hits = self.searcher.search(self.parser.parse(q.whoosh()), limit=LIMIT)
        return [h.fields()["id"] for h in hits]

    def close(self) -> None:
        if self.searcher is not None:
            self.searcher.close()
        self.ix.close()


class Tantivy(Engine):
    name = "tantivy"

    def __init__(self, work: Path) -> None:
        import tantivy

        self.t = tantivy
        sb = tantivy.SchemaBuilder()
        sb.add_text_field("id", stored=True, tokenizer_name="raw")
        sb.add_text_field("title", stored=True)
        sb.add_text_field("body", stored=True)
        self.schema = sb.build()
        work.mkdir(parents=True, exist_ok=True)
        self.ix = tantivy.Index(self.schema, path=str(work))
        self.searcher: Any = None

    def index(self, docs: list[Doc]) -> None:
        writer = self.ix.writer(heap_size=64_000_000, num_threads=1)
        for chunk in batches(docs):
            for doc_id, f in chunk:
                writer.add_document(self.t.Document(id=doc_id, title=f["title"], body=f["body"]))
            writer.commit()
        writer.wait_merging_threads()
        self.ix.reload()

    def query(self, q: Query) -> Any:
        if q.kind != "prefix":
            return self.ix.parse_query(q.ringkv(), ["title", "body"])
        t = self.t
        regex = re.escape(q.words[0]) + ".*"
        return t.Query.boolean_query(
            [
                (t.Occur.Should, t.Query.regex_query(self.schema, f, regex))
                for f in ("title", "body")
            ]
        )

    def search(self, q: Query) -> list[str]:
        if self.searcher is None:
            self.searcher = self.ix.searcher()
        result = self.searcher.search(self.query(q), LIMIT)
        return [self.searcher.doc(addr)["id"][0] for _, addr in result.hits]


def run_engine(engine: Engine, docs: list[Doc], queries: list[Query], reps: int) -> Result:
    result = Result(engine.name, len(docs))
    t0 = time.perf_counter()
    engine.index(docs)
    result.index_s = time.perf_counter() - t0
    for q in queries:  # warm-up: caches, files, the searcher
        result.hits[q] = engine.search(q)
    for _ in range(reps):
        for q in queries:
            t0 = time.perf_counter()
            engine.search(q)
            result.latencies_ms.append((time.perf_counter() - t0) * 1e3)
    return result


def guarded(name: str, make: Callable[[], Engine], *args: Any) -> Result:
    """``run_engine`` on ``make()``; a missing package or a failure becomes a note."""
    try:
        engine = make()
    except ImportError as e:
        return Result(
            name, note=f"skipped: {e.name or e} not installed (pip install -e '.[bench]')"
        )
    try:
        return run_engine(engine, *args)
    except Exception as e:
        return Result(name, note=f"failed: {type(e).__name__}: {e}")
    finally:
        engine.close()


def overlap(a: Result, b: Result) -> float:
    shares = [len(set(b.hits.get(q, [])) & set(ids)) / len(ids) for q, ids in a.hits.items() if ids]
    return statistics.mean(shares) if shares else math.nan


# --- sorted sets ---------------------------------------------------------------------------------


@dataclass
class ZResult:
    system: str
    rates: dict[str, float] = field(default_factory=dict)  # op -> ops/s
    note: str = ""


def z_workload(n: int) -> tuple[list[tuple[str, float]], list[str], list[int]]:
    rng = random.Random(SEED)
    members = [(f"member:{i:07d}", rng.uniform(0, 1e6)) for i in range(n)]
    probes = [rng.choice(members)[0] for _ in range(min(n, 2000))]
    starts = [rng.randrange(max(1, n - 10)) for _ in range(min(n, 2000))]
    return members, probes, starts


def timed(fn: Callable[[], int]) -> float:
    t0 = time.perf_counter()
    count = fn()
    return count / (time.perf_counter() - t0)


def bench_sortedset(system: str, store: Any, n: int) -> ZResult:
    members, probes, starts = z_workload(n)
    zs = SortedSet(store, "bench")
    out = ZResult(system)

    def adds() -> int:
        for m, s in members:
            zs.add(m, s)
        return len(members)

    def ranks() -> int:
        for m in probes:
            zs.rank(m)
        return len(probes)

    def ranges() -> int:
        for s in starts:
            zs.range(s, s + 9)
        return len(starts)

    out.rates = {"add": timed(adds), "rank": timed(ranks), "range": timed(ranges)}
    return out


def bench_redis(n: int, work: Path) -> ZResult:
    server = shutil.which("redis-server")
    try:
        import redis
    except ImportError:
        return ZResult("redis", note="skipped: the redis package is not installed")
    if server is None:
        return ZResult("redis", note="skipped: redis-server is not installed")
    members, probes, starts = z_workload(n)
    port = free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--daemonize", "no", "--dir", str(work)]
    children = [spawn("redis-server", argv, work)]
    try:
        wait_ready(children[0], REDIS_READY)
        r = redis.Redis(host="127.0.0.1", port=port)
        out = ZResult("redis")

        def adds() -> int:
            for m, s in members:
                r.zadd("bench", {m: s})
            return len(members)

        def ranks() -> int:
            for m in probes:
                r.zrank("bench", m)
            return len(probes)

        def ranges() -> int:
            for s in starts:
                r.zrange("bench", s, s + 9, withscores=True)
            return len(starts)

        out.rates = {"add": timed(adds), "rank": timed(ranks), "range": timed(ranges)}
        r.close()
        return out
    except (ChildFailed, OSError) as e:
        return ZResult("redis", note=f"failed: {e}")
    finally:
        stop_all(children)


# --- the cluster ---------------------------------------------------------------------------------


@contextlib.contextmanager
def local_cluster(ringd: str | None, work: Path) -> Iterator[str]:
    """Three ringd as benchmarks/cluster.py starts them; their addresses; stopped by PID."""
    from cluster import ringd_command, start_ringd, wait_members_up

    children: list[Child] = []
    try:
        nodes = start_ringd(ringd_command(ringd), work, children)
        wait_members_up(nodes)
        yield ",".join(n.address for n in nodes)
    finally:
        stop_all(children)


# --- the report ----------------------------------------------------------------------------------


def fmt(x: float, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def report(
    results: list[Result], zresults: list[ZResult], info: dict[str, Any]
) -> tuple[str, list[str]]:
    by = {r.engine: r for r in results}
    base = by.get("whoosh")
    emb = by.get("ringkv embedded")
    lines = [
        f"corpus: {info['docs']} documents ({info['sources']}), {info['mb']:.1f} MB of text, "
        f"{info['cluster_docs']} on the cluster; {info['queries']} queries x {info['reps']} "
        f"timed passes, top {LIMIT} with stored fields",
        "",
    ]
    head = f"{'engine':<22}{'docs':>7}{'docs/s':>9}{'vs whoosh':>11}{'p50 ms':>9}{'p99 ms':>9}"
    head += f"{'p50 vs whoosh':>15}{'with hits':>11}{'top-10 overlap':>16}"
    lines += [head, "-" * len(head)]
    for r in results:
        if r.note:
            lines.append(f"{r.engine:<22}{r.note}")
            continue
        with_hits = sum(1 for ids in r.hits.values() if ids)
        has_base = base is not None and not base.note
        vs_docs = ratio(r.docs_per_s, base.docs_per_s) if has_base else math.nan
        vs_p50 = ratio(r.pct(0.5), base.pct(0.5)) if has_base else math.nan
        same = emb is not None and not emb.note and emb.docs == r.docs
        agree = overlap(emb, r) if same else math.nan
        lines.append(
            f"{r.engine:<22}{r.docs:>7}{r.docs_per_s:>9,.0f}"
            f"{fmt(vs_docs, '.2f'):>10}x"
            f"{r.pct(0.5):>9.2f}{r.pct(0.99):>9.2f}"
            f"{fmt(vs_p50, '.2f'):>14}x"
            f"{with_hits:>7}/{len(r.hits):<3}"
            f"{fmt(agree, '.2f'):>16}"
        )
    kinds = sorted({q.kind for r in results for q in r.hits})
    if emb and not emb.note:
        lines += ["", "query p50 ms by kind:  " + "  ".join(f"{k:>9}" for k in kinds)]
        for r in results:
            if r.note:
                continue
            per = []
            n = len(r.hits)
            for k in kinds:
                idx = [i for i, q in enumerate(r.hits) if q.kind == k]
                xs = [
                    r.latencies_ms[p * n + i] for p in range(len(r.latencies_ms) // n) for i in idx
                ]
                per.append(statistics.median(xs) if xs else math.nan)
            lines.append(f"  {r.engine:<20}" + "  ".join(f"{fmt(x, '9.2f')}" for x in per))
    if zresults:
        zby = {z.system: z for z in zresults}
        red = zby.get("redis")
        lines += [
            "",
            f"{'sorted set':<22}{'add/s':>10}{'rank/s':>10}{'range/s':>10}"
            f"{'add':>9}{'rank':>8}{'range':>8}  (vs redis)",
        ]
        for z in zresults:
            if z.note:
                lines.append(f"{z.system:<22}{z.note}")
                continue
            row = f"{z.system:<22}" + "".join(
                f"{z.rates[o]:>10,.0f}" for o in ("add", "rank", "range")
            )
            if red and not red.note and z is not red:
                row += "".join(
                    f"{ratio(z.rates[o], red.rates[o]):>8.2f}x" for o in ("add", "rank", "range")
                )
            lines.append(row)
    goals: list[str] = []
    if emb and not emb.note and base and not base.note:
        share = ratio(emb.docs_per_s, base.docs_per_s)
        verdict = "met" if share >= 1.0 else "NOT met"
        goals.append(
            f"embedded indexing >= 1.0x whoosh's docs/s (both batched, {BATCH} per batch): "
            f"{share:.2f}x - {verdict}"
        )
        one = by.get("whoosh, one commit")
        if one and not one.note:
            goals.append(
                "  (vs whoosh with one commit for all: "
                f"{ratio(emb.docs_per_s, one.docs_per_s):.2f}x)"
            )
        p50, wp50 = emb.pct(0.5), base.pct(0.5)
        verdict = "met" if p50 <= wp50 else "NOT met"
        goals.append(f"embedded query p50 <= whoosh's: {p50:.2f} ms vs {wp50:.2f} ms - {verdict}")
    return "\n".join(lines), goals


def as_json(
    results: list[Result], zresults: list[ZResult], info: dict[str, Any], goals: list[str]
) -> dict[str, Any]:
    return {
        **info,
        "engines": {
            r.engine: {
                "docs": r.docs,
                "docs_per_s": r.docs_per_s,
                "p50_ms": r.pct(0.5),
                "p99_ms": r.pct(0.99),
                "queries_with_hits": sum(1 for ids in r.hits.values() if ids),
                "note": r.note,
            }
            for r in results
        },
        "sorted_sets": {z.system: {"ops_per_s": z.rates, "note": z.note} for z in zresults},
        "goals": goals,
    }


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--cluster-docs", type=int, default=2_000)
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=5, help="timed passes over the queries")
    ap.add_argument("--no-cluster", action="store_true")
    ap.add_argument("--ringd", help="the command that starts a node (default: ringd)")
    ap.add_argument("--stdlib-docs", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stdlib_docs:
        for item in stdlib_docstrings():
            print(json.dumps(item))
        return
    if args.quick:
        args.docs, args.cluster_docs, args.members, args.reps = 600, 200, 1_000, 2

    def say(msg: str) -> None:
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    t0 = time.monotonic()
    docs, sources = corpus(args.docs)
    queries = query_mix(docs)
    cluster_docs = docs[: args.cluster_docs] if not args.no_cluster else []
    info = {
        "docs": len(docs),
        "sources": ", ".join(f"{n} {s}" for s, n in sources.most_common()),
        "mb": sum(len(f["title"]) + len(f["body"]) for _, f in docs) / 1e6,
        "cluster_docs": len(cluster_docs),
        "queries": len(queries),
        "reps": args.reps,
        "members": args.members,
        "batch": BATCH,
    }
    say(f"corpus ready in {time.monotonic() - t0:.0f} s: {info['docs']} docs ({info['sources']})")

    work = Path(tempfile.mkdtemp(prefix="ringkv-bench-search-"))
    results: list[Result] = []
    zresults: list[ZResult] = []
    try:

        def embedded(tag: str) -> tuple[Any, Callable[[], None]]:
            store = ring.open(str(work / tag))
            return store, store.close

        for name, make in [
            ("ringkv embedded", lambda: Ringkv("ringkv embedded", *embedded("embedded"))),
            ("whoosh", lambda: Whoosh(work / "whoosh", one_commit=False)),
            ("whoosh, one commit", lambda: Whoosh(work / "whoosh-one", one_commit=True)),
            ("tantivy", lambda: Tantivy(work / "tantivy")),
        ]:
            say(f"{name}: indexing {len(docs)} documents ...")
            results.append(guarded(name, make, docs, queries, args.reps))
        store, close = embedded("zset")
        try:
            say(f"ringkv embedded: sorted set of {args.members} members ...")
            zresults.append(bench_sortedset("ringkv embedded", store, args.members))
        finally:
            close()
        if cluster_docs:
            cwork = work / "cluster"
            cwork.mkdir()
            with local_cluster(args.ringd, cwork) as addresses:
                client = ring.connect(addresses)
                try:
                    say(f"ringkv cluster: indexing {len(cluster_docs)} documents ...")
                    results.append(
                        guarded(
                            "ringkv cluster",
                            lambda: Ringkv("ringkv cluster", client, lambda: None),
                            cluster_docs,
                            queries,
                            args.reps,
                        )
                    )
                    say(f"ringkv cluster: sorted set of {args.members} members ...")
                    zresults.append(bench_sortedset("ringkv cluster", client, args.members))
                finally:
                    client.close()
        say("redis: sorted set ...")
        rwork = work / "redis"
        rwork.mkdir()
        zresults.append(bench_redis(args.members, rwork))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table, goals = report(results, zresults, info)
    if args.json:
        print(json.dumps(as_json(results, zresults, info, goals)))
    else:
        print()
        print(table)
        print()
        print("\n".join(goals))


if __name__ == "__main__":
    main()
