"""``ringctl search``, ``index add|rm`` and ``zadd|zrange|zrank|zscore|zrem``: embedded (in
process, and once as a real process), then against a real two-node ``ringd`` cluster with
``--nodes`` (the shared harness: port 0, killed by PID in a ``finally``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ring
from search import Index, SortedSet
from search.keys import encode_doc
from search.records import encode_doc_record
from tests.cli.conftest import Result, run_main, run_process
from tests.integration.harness import Cluster


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RINGKV_DATA", "RINGKV_DEBUG", "RINGKV_NODES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def data(tmp_path: Path) -> str:
    return str(tmp_path / "data")


def cli(data: str, *args: str | bytes, stdin: bytes = b"") -> Result:
    return run_main("--data", data, *args, stdin=stdin)


def lines(result: Result) -> list[str]:
    assert result.code == 0, result.err
    return result.text.splitlines()


def jsonl(result: Result) -> list[Any]:
    return [json.loads(line) for line in lines(result)]


DOCS = {
    "d1": "The quick brown fox jumps over the lazy dog",
    "d2": "A lazy afternoon with a quick nap",
    "d3": "Foxes are quick; dogs are lazy. quick quick",
}


def add_docs(data: str) -> None:
    for doc_id, text in DOCS.items():
        r = cli(data, "index", "add", "docs", doc_id, text)
        assert (r.code, r.out, r.err) == (0, b"", "")


# --- index add / search / index rm ------------------------------------------------------------


def test_search_ranks_like_the_library_with_snippets(data: str) -> None:
    add_docs(data)
    got = [line.split("\t") for line in lines(cli(data, "search", "docs", "quick"))]
    with ring.open(data) as store:
        want = Index(store, "docs").search("quick", snippets=True)
    assert [g[0] for g in got] == [h.id for h in want] == ["d3", "d2", "d1"]
    assert [float(g[1]) for g in got] == pytest.approx([h.score for h in want], abs=1e-6)
    assert got[1][2] == "<b>quick</b> nap"
    # clauses, phrases, prefixes, fields
    assert [x.split("\t")[0] for x in lines(cli(data, "search", "docs", '+quick -"lazy dog"'))] == [
        "d3",
        "d2",
    ]
    found = lines(cli(data, "search", "docs", "body:fox*"))
    assert sorted(x.split("\t")[0] for x in found) == ["d1", "d3"]
    assert lines(cli(data, "search", "docs", "zebra")) == []


def test_search_limit_offset_and_json(data: str) -> None:
    add_docs(data)
    every = jsonl(cli(data, "-o", "json", "search", "docs", "quick"))
    assert [h["id"] for h in every] == ["d3", "d2", "d1"]
    assert set(every[0]) == {"id", "score", "snippet"} and isinstance(every[0]["score"], float)
    page = jsonl(
        cli(data, "search", "docs", "quick", "--limit", "1", "--offset", "1", "-o", "json")
    )
    assert page == [every[1]]
    assert lines(cli(data, "search", "docs", "quick", "--limit", "0")) == []
    assert cli(data, "search", "docs", "quick", "--limit", "-1").code == 2
    assert cli(data, "search", "docs", "quick", "--offset", "x").code == 2


def test_index_add_from_stdin_replaces_and_rm(data: str) -> None:
    r = cli(data, "index", "add", "docs", "d1", "-", stdin="naïve café text".encode())
    assert r.code == 0, r.err
    assert cli(data, "index", "add", "docs", "d2", stdin=b"no argument reads stdin").code == 0
    assert [x.split("\t")[0] for x in lines(cli(data, "search", "docs", "café"))] == ["d1"]
    assert [x.split("\t")[0] for x in lines(cli(data, "search", "docs", "argument"))] == ["d2"]
    # the same id again replaces the document
    assert cli(data, "index", "add", "docs", "d1", "something else").code == 0
    assert lines(cli(data, "search", "docs", "café")) == []
    with ring.open(data) as store:
        ix = Index(store, "docs")
        assert ix.get("d1") == {"body": "something else"} and len(ix) == 2
    r = cli(data, "-o", "json", "index", "rm", "docs", "d1")
    assert r.code == 0 and json.loads(r.out) == {"index": "docs", "id": "d1", "removed": True}
    r = cli(data, "index", "rm", "docs", "d1")
    assert (r.code, r.out) == (1, b"")
    assert r.err == "ringctl: error: no document 'd1' in index 'docs'\n"
    assert cli(data, "index", "rm", "unknown-index", "d2").code == 1
    assert lines(cli(data, "search", "docs", "something")) == []
    with ring.open(data) as store:
        assert len(Index(store, "docs")) == 1


def test_ids_that_are_not_utf8_are_bytes_ids(data: str) -> None:
    r = cli(data, "-o", "json", "index", "add", "docs", b"id\xff", "binary id")
    assert r.code == 0, r.err
    assert json.loads(r.out)["id"] == {"b64": base64.b64encode(b"id\xff").decode()}
    hit = jsonl(cli(data, "-o", "json", "search", "docs", "binary"))[0]
    assert hit["id"] == {"b64": base64.b64encode(b"id\xff").decode()}
    assert lines(cli(data, "search", "docs", "binary"))[0].startswith("id\\xff\t")
    with ring.open(data) as store:
        assert Index(store, "docs").get(b"id\xff") == {"body": "binary id"}
    assert cli(data, "index", "rm", "docs", b"id\xff").code == 0


def test_analyzer_is_the_index_own(data: str) -> None:
    r = cli(data, "index", "add", "en", "a", "The runners were running", "--analyzer", "english")
    assert r.code == 0, r.err
    # later commands open it with its own analyzer: stemming applies to the query too
    assert cli(data, "index", "add", "en", "b", "a run in the park").code == 0
    assert sorted(x.split("\t")[0] for x in lines(cli(data, "search", "en", "run"))) == ["a", "b"]
    r = cli(data, "index", "add", "en", "c", "text", "--analyzer", "standard")
    assert r.code == 3 and "uses analyzer 'english'" in r.err
    assert cli(data, "index", "add", "en", "c", "x", "--analyzer", "klingon").code == 2


def test_bad_queries_exit_3_with_the_position(data: str) -> None:
    add_docs(data)
    r = cli(data, "search", "docs", "quick AND")
    assert (r.code, r.out) == (3, b"")
    assert r.err == (
        "ringctl: error: bad query 'quick AND': AND with no clause after it at position 6\n"
    )
    r = cli(data, "search", "docs", 'fox "lazy')
    assert r.code == 3 and "unclosed '\"' at position 4" in r.err
    # checked before the store is even opened
    r = run_main("--data", data + "-missing", "search", "docs", "(a")
    assert r.code == 3 and "unclosed '(' at position 0" in r.err


def test_reads_create_nothing(data: str) -> None:
    r = cli(data, "search", "docs", "quick")
    assert r.code == 4 and "no data directory" in r.err
    assert cli(data, "index", "rm", "docs", "d1").code == 4
    assert cli(data, "zrange", "z", "0", "-1").code == 4
    assert cli(data, "zadd", "z", "1", "a").code == 0  # writes create the data directory
    assert lines(cli(data, "search", "docs", "quick")) == []
    assert cli(data, "index", "rm", "docs", "d1").code == 1
    with ring.open(data) as store:
        assert not [k for k, _ in store.scan(prefix=b"search:")], "no index was created"


def test_index_repair_finishes_a_crashed_writer(data: str) -> None:
    add_docs(data)
    assert cli(data, "index", "repair", "nope").code == 1
    with ring.open(data) as store:
        ix = Index(store, "docs")
        # A writer that died after its intents and its new version's record, before its
        # postings and statistics: what repair has to finish.
        version = ix._new_version(b"\x00\x00\x00\x09")
        doc = encode_doc("d1")
        ix._mark(b"\x00\x00\x00\x09", [("a", doc, version, [], b"")])
        store.put(ix.keys.doc(doc, version), encode_doc_record({"body": 2}, {"body": "zulu zulu"}))
    assert [
        json.loads(x)["intents"] for x in lines(cli(data, "-o", "json", "index", "repair", "docs"))
    ] == [1]
    assert lines(cli(data, "search", "docs", "zulu"))[0].startswith("d1\t")
    assert lines(cli(data, "index", "repair", "docs")) == [
        "intents=0 buckets_recomputed=0 postings_written=0 postings_deleted=0 versions_deleted=0"
    ]


def test_bad_document_text(data: str) -> None:
    r = cli(data, "index", "add", "docs", "d", "-", stdin=b"\xff\xfe not utf-8")
    assert r.code == 3 and "not UTF-8" in r.err
    assert cli(data, "index", "add", "", "d", "text").code == 3  # an empty index name


# --- sorted sets ---------------------------------------------------------------------------


def test_zadd_zrange_zrank_zscore_zrem(data: str) -> None:
    assert lines(cli(data, "zadd", "board", "10", "ada", "2.5", "bob", "-inf", "carl")) == ["3"]
    assert lines(cli(data, "zadd", "board", "1", "ada")) == ["0"], "an update adds nothing"
    assert lines(cli(data, "zrange", "board", "0", "-1")) == ["carl", "ada", "bob"]
    assert lines(cli(data, "zrange", "board", "0", "-1", "WITHSCORES")) == [
        "carl\t-inf",
        "ada\t1",
        "bob\t2.5",
    ]
    assert lines(cli(data, "zrange", "board", "0", "0", "rev", "withscores")) == ["bob\t2.5"]
    assert lines(cli(data, "zrange", "board", "-2", "-1", "REV")) == ["ada", "carl"]
    assert lines(cli(data, "zrange", "board", "5", "10")) == []
    assert lines(cli(data, "zrank", "board", "bob")) == ["2"]
    assert lines(cli(data, "zscore", "board", "bob")) == ["2.5"]
    assert lines(cli(data, "zscore", "board", "carl")) == ["-inf"]
    r = cli(data, "zscore", "board", "zed")
    assert (r.code, r.out) == (1, b"")
    assert r.err == "ringctl: error: member 'zed' not in sorted set 'board'\n"
    assert cli(data, "zrank", "board", "zed").code == 1
    assert cli(data, "zrank", "nosuchset", "zed").code == 1
    assert lines(cli(data, "zrem", "board", "ada", "zed", "ada")) == ["1"]
    assert lines(cli(data, "zrem", "board", "zed")) == ["0"]
    assert lines(cli(data, "zrange", "board", "0", "-1")) == ["carl", "bob"]
    with ring.open(data) as store:
        zs = SortedSet(store, "board")
        assert zs.range(0, -1) == [(b"carl", float("-inf")), (b"bob", 2.5)] and len(zs) == 2


def test_zadd_flags(data: str) -> None:
    cli(data, "zadd", "z", "5", "a", "5", "b")
    assert lines(cli(data, "zadd", "z", "NX", "9", "a", "1", "c")) == ["1"]
    assert lines(cli(data, "zscore", "z", "a")) == ["5"]
    assert lines(cli(data, "zadd", "z", "xx", "7", "a", "1", "d")) == ["0"]
    assert cli(data, "zscore", "z", "d").code == 1
    assert lines(cli(data, "zadd", "z", "GT", "6", "a", "4", "b")) == ["0"]
    assert lines(cli(data, "zadd", "z", "XX", "LT", "1", "a", "9", "b")) == ["0"]
    assert lines(cli(data, "zrange", "z", "0", "-1", "WITHSCORES")) == ["a\t1", "c\t1", "b\t5"]
    # words after NAME are taken as is: scores and members may start with "-"
    assert lines(cli(data, "zadd", "z", "-1e3", "-x", "+inf", "top", "1.5e1", "mid")) == ["3"]
    assert lines(cli(data, "zrange", "z", "0", "0", "WITHSCORES")) == ["-x\t-1000"]
    assert lines(cli(data, "zscore", "z", "--", "-x")) == ["-1000"]
    assert lines(cli(data, "zscore", "z", "top")) == ["inf"]
    assert lines(cli(data, "zrank", "z", "mid")) == ["4"]
    assert lines(cli(data, "zrem", "z", "-x", "top")) == ["2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("NX", "XX", "1", "a"), "XX and NX options at the same time are not compatible"),
        (("GT", "LT", "1", "a"), "GT, LT, and/or NX options at the same time"),
        (("NX", "GT", "1", "a"), "GT, LT, and/or NX options at the same time"),
        (("1",), "syntax error"),
        (("1", "a", "2"), "syntax error"),
        (("NX",), "syntax error"),
        (("nan", "a"), "score 'nan' is not a valid float"),
        (("one", "a"), "score 'one' is not a valid float"),
        (("1_0", "a"), "not a valid float"),
        (("CH", "1", "a"), "CH is not supported"),
    ],
)
def test_zadd_usage_errors(data: str, args: tuple[str, ...], message: str) -> None:
    r = cli(data, "zadd", "z", *args)
    assert (r.code, r.out) == (2, b"")
    assert r.err.startswith("ringctl: error: ") and message in r.err
    assert not Path(data).exists() or cli(data, "zrange", "z", "0", "-1").out == b""


def test_sorted_set_usage_errors(data: str) -> None:
    cli(data, "zadd", "z", "1", "a")
    assert cli(data, "zrange", "z", "x", "1").code == 2
    r = cli(data, "zrange", "z", "0", "1", "BYSCORE")
    assert r.code == 2 and "unknown option BYSCORE" in r.err
    assert cli(data, "zrem", "z").code == 2
    assert cli(data, "zscore", "z").code == 2
    assert cli(data, "zadd", "z").code == 2
    r = cli(data, "zadd", "z", "1", b"m" * 70_000)
    assert r.code == 3, r.err  # the library refuses an oversized member


def test_sorted_set_json(data: str) -> None:
    assert json.loads(cli(data, "-o", "json", "zadd", "z", "1", "a", "-inf", b"\xff").out) == {
        "name": "z",
        "added": 2,
    }
    assert jsonl(cli(data, "-o", "json", "zrange", "z", "0", "-1", "WITHSCORES")) == [
        {"member": {"b64": "/w=="}, "score": "-inf"},
        {"member": "a", "score": 1.0},
    ]
    assert jsonl(cli(data, "zrange", "z", "0", "-1", "-o", "json")) == [
        {"member": {"b64": "/w=="}},
        {"member": "a"},
    ]
    assert json.loads(cli(data, "zscore", "z", "a", "-o", "json").out) == {
        "name": "z",
        "member": "a",
        "score": 1.0,
    }
    assert json.loads(cli(data, "zrank", "z", "a", "-o", "json").out) == {
        "name": "z",
        "member": "a",
        "rank": 1,
    }
    assert json.loads(cli(data, "-o", "json", "zrem", "z", "a", "b").out) == {
        "name": "z",
        "removed": 1,
    }


def test_as_a_real_process(data: str) -> None:
    r = run_process("--data", data, "index", "add", "p", "d", "-", stdin=b"via the console")
    assert r.code == 0, r.err
    r = run_process("--data", data, "search", "p", "console")
    assert r.code == 0 and r.text.startswith("d\t") and "<b>console</b>" in r.text
    r = run_process("--data", data, "zadd", "z", "-5", "a")
    assert (r.code, r.text) == (0, "1\n")


# --- a real cluster ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    cluster = Cluster(tmp_path_factory.mktemp("search-cli-cluster"), n=2, r=2, w=2)
    try:
        cluster.start("node1", "node2")
        cluster.converge(cluster.all_up())
        yield [cluster.addresses[n] for n in ("node1", "node2")]
    finally:
        cluster.close()  # kills every ringd it started, by PID


@pytest.mark.integration
def test_commands_on_a_cluster(nodes: list[str], tmp_path: Path) -> None:
    first, second = nodes
    missing = str(tmp_path / "never-created")

    def on(node: str, *args: str) -> Result:
        # --data names a directory that must stay untouched: --nodes wins.
        return run_main("--nodes", node, "--data", missing, *args)

    for doc_id, text in DOCS.items():
        assert on(first, "index", "add", "docs", doc_id, text).code == 0
    # written through one node, searched through the other
    got = jsonl(on(second, "-o", "json", "search", "docs", "quick"))
    assert [h["id"] for h in got] == ["d3", "d2", "d1"]
    r = on(second, "search", "docs", "quick AND")
    assert r.code == 3 and "at position 6" in r.err
    assert on(second, "index", "rm", "docs", "d2").code == 0
    assert on(first, "index", "rm", "docs", "d2").code == 1
    assert [x.split("\t")[0] for x in lines(on(first, "search", "docs", "quick"))] == ["d3", "d1"]

    assert lines(on(first, "zadd", "board", "10", "ada", "2.5", "bob")) == ["2"]
    assert lines(on(second, "zadd", "board", "GT", "12", "ada", "1", "bob")) == ["0"]
    assert lines(on(first, "zrange", "board", "0", "-1", "WITHSCORES")) == ["bob\t2.5", "ada\t12"]
    assert lines(on(second, "zrank", "board", "ada")) == ["1"]
    assert lines(on(second, "zscore", "board", "ada")) == ["12"]
    assert on(first, "zscore", "board", "zed").code == 1
    assert lines(on(second, "zrem", "board", "bob", "zed")) == ["1"]
    assert lines(on(first, "zrange", "board", "0", "-1")) == ["ada"]
    # a real process
    r = run_process("--nodes", ",".join(nodes), "zrange", "board", "0", "-1", "WITHSCORES")
    assert (r.code, r.text) == (0, "ada\t12\n"), r.err
    assert not Path(missing).exists()
    with ring.connect(",".join(nodes)) as client:
        assert SortedSet(client, "board").range(0, -1) == [(b"ada", 12.0)]
        assert len(Index(client, "docs")) == 2
