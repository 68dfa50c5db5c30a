"""Search and sorted-set commands: ``search``, ``index add|rm|repair``, ``zadd``,
``zrange``, ``zrank``, ``zscore``, ``zrem``.

They work on the embedded data directory or, with ``--nodes``, on a cluster (``open_target``),
through ``search.Index`` and ``search.SortedSet``. Reads (and removals) never create a data
directory; ``index add`` and ``zadd`` do.

* Index and set names, and members, are the exact bytes the shell passed. A document id given
  on the command line is a str id when it is UTF-8 (the id ``ix.add("id1", ...)`` makes from
  Python), else a bytes id. Document text is UTF-8 (argument or stdin), indexed as the field
  ``body``.
* An index keeps the analyzer it was created with: ``index add --analyzer`` picks it for a new
  index; every command opens an existing index with its own. Commands that only read never
  create an index.
* ``zadd`` and ``zrem`` take every word after NAME as is (Redis argument order), so scores and
  members may start with ``-`` (``-inf``, ``-5``, ``-x``); put global options before NAME.
  ``zscore`` and ``zrank`` take ``--`` before a member that starts with ``-``.
* Scores print as Redis prints them (``10``, ``2.5``, ``inf``, ``-inf``); in JSON a finite
  score is a number and an infinite one the string ``"inf"`` or ``"-inf"``.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from ring.cli.app import (
    INVALID,
    NOT_FOUND,
    USAGE,
    CliError,
    arguments,
    command,
    group,
    open_target,
    read_stdin_value,
    whole_number,
)
from ring.cli.output import JsonBytes, Output, escape_text, json_bytes
from search import Index, QueryError, SortedSet
from search.keys import Keys
from search.query import parse

ANALYZERS = ("standard", "english")

# --- shared helpers --------------------------------------------------------------------------


def _shown(name: bytes) -> str:
    return f"'{escape_text(name)}'"


def _doc_id(raw: bytes) -> str | bytes:
    """A document id from the command line: str when it is UTF-8, else bytes."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _id_bytes(doc_id: str | bytes) -> bytes:
    return doc_id.encode("utf-8") if isinstance(doc_id, str) else doc_id


def _id_json(doc_id: str | bytes) -> JsonBytes:
    """A str id is a JSON string; a bytes id is always ``{"b64": ...}`` (so the two kinds,
    which are different documents, never look alike)."""
    if isinstance(doc_id, str):
        return doc_id
    import base64

    return {"b64": base64.b64encode(doc_id).decode("ascii")}


def format_score(score: float) -> str:
    """A score as Redis prints it: ``10``, ``2.5``, ``inf``, ``-inf``."""
    if math.isinf(score):
        return "inf" if score > 0 else "-inf"
    if score.is_integer() and abs(score) < 2**53:
        return str(int(score))
    return repr(score)


def json_score(score: float) -> float | str:
    return format_score(score) if math.isinf(score) else score


def parse_score(text: bytes, what: str = "score") -> float:
    """A score as Redis takes it: a decimal or exponent float, ``inf``, ``+inf``, ``-inf``."""
    shown = escape_text(text)
    try:
        value = float(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise CliError(f"{what} '{shown}' is not a valid float", USAGE) from None
    if b"_" in text or text.strip() != text or math.isnan(value):
        raise CliError(f"{what} '{shown}' is not a valid float", USAGE)
    return value


# --- indexes -------------------------------------------------------------------------------------

group("index", "full-text indexes (BM25): add, remove, repair (see also `search`)")


def _stored_analyzer(store: Any, name: bytes) -> str | None:
    """The analyzer an existing index was created with, or None if there is no index."""
    stored = store.get(Keys(name).meta)
    return None if stored is None else bytes(stored).decode("utf-8", "replace")


def _open_index(store: Any, name: bytes, analyzer: str | None = None) -> Index | None:
    """The index ``name`` with its own analyzer; None (and nothing written) if it does not
    exist, unless ``analyzer`` is given: then it is created with that analyzer."""
    stored = _stored_analyzer(store, name)
    if stored is None and analyzer is None:
        return None
    return Index(store, name, analyzer or stored or "standard")


def _index_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", metavar="INDEX", type=os.fsencode, help="the index's name")


def _doc_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "doc_id",
        metavar="DOC_ID",
        type=os.fsencode,
        help="the document's id (a str id when UTF-8, else a bytes id)",
    )


def _index_add_args(parser: argparse.ArgumentParser) -> None:
    _index_arg(parser)
    _doc_arg(parser)
    parser.add_argument(
        "text",
        metavar="TEXT",
        nargs="?",
        type=os.fsencode,
        default=b"-",
        help="the document's text (UTF-8); - or nothing reads stdin",
    )
    parser.add_argument(
        "--analyzer",
        choices=ANALYZERS,
        help="for a new index (default standard); an existing index keeps its own, and "
        "naming another one is an error",
    )


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"the document's text is not UTF-8: {exc}", INVALID) from None


@command(
    "index add",
    "index TEXT (or stdin) as document DOC_ID of INDEX, replacing the one of that id",
    description="Index TEXT as the field 'body' of document DOC_ID in INDEX, replacing the "
    "document of that id if there is one. TEXT - (or no TEXT) reads stdin. The text must be "
    "UTF-8. A new index uses --analyzer (default standard); an existing one keeps its own.",
)
@arguments(_index_add_args)
def index_add(args: argparse.Namespace, out: Output) -> None:
    text = _text(read_stdin_value() if args.text == b"-" else args.text)
    doc_id = _doc_id(args.doc_id)
    with open_target(args) as store:
        stored = _stored_analyzer(store, args.index)
        index = Index(store, args.index, args.analyzer or stored or "standard")
        index.add(doc_id, text)
    if out.json:
        out.emit({"index": json_bytes(args.index), "id": _id_json(doc_id), "added": True})


def _index_rm_args(parser: argparse.ArgumentParser) -> None:
    _index_arg(parser)
    _doc_arg(parser)


@command(
    "index rm",
    "remove document DOC_ID from INDEX",
    description="Remove document DOC_ID from INDEX. A document (or index) that is not there "
    "exits with status 1.",
)
@arguments(_index_rm_args)
def index_rm(args: argparse.Namespace, out: Output) -> None:
    doc_id = _doc_id(args.doc_id)
    with open_target(args, create=False) as store:
        index = _open_index(store, args.index)
        removed = index is not None and index.remove(doc_id)
    if not removed:
        raise CliError(
            f"no document '{escape_text(_id_bytes(doc_id))}' in index {_shown(args.index)}",
            NOT_FOUND,
        )
    if out.json:
        out.emit({"index": json_bytes(args.index), "id": _id_json(doc_id), "removed": True})


@command(
    "index repair",
    "make INDEX exact again after crashed writers or lagging replicas",
    description="Repair INDEX: finish what interrupted writers left, keep one version per "
    "document, rewrite statistics that differ from the documents, delete stale postings and "
    "write missing ones (reads the whole index; safe beside writers). Prints what it did. An "
    "index that is not there exits with status 1.",
)
@arguments(_index_arg)
def index_repair(args: argparse.Namespace, out: Output) -> None:
    with open_target(args, create=False) as store:
        index = _open_index(store, args.index)
        if index is None:
            raise CliError(f"no index {_shown(args.index)}", NOT_FOUND)
        report = index.repair()
    fields = {
        "intents": report.intents,
        "buckets_recomputed": report.buckets_recomputed,
        "postings_written": report.postings_written,
        "postings_deleted": report.postings_deleted,
        "versions_deleted": report.versions_deleted,
    }
    out.answer(
        {"index": json_bytes(args.index), **fields}, " ".join(f"{k}={v}" for k, v in fields.items())
    )


# --- search --------------------------------------------------------------------------------------


def _search_args(parser: argparse.ArgumentParser) -> None:
    _index_arg(parser)
    parser.add_argument("query", metavar="QUERY", help="the query (see README: Search)")
    parser.add_argument(
        "--limit", metavar="N", type=whole_number(0), default=10, help="at most N hits (10)"
    )
    parser.add_argument(
        "--offset", metavar="N", type=whole_number(0), default=0, help="skip the N best hits"
    )


@command(
    "search",
    "the documents of INDEX matching QUERY, best first (BM25)",
    description="Search INDEX for QUERY: words (OR), +word, -word, AND, OR, NOT, ( ), "
    '"a phrase", pre*, field:word. Text: one ID<TAB>SCORE<TAB>SNIPPET line per hit, best '
    "first, the matched words of the snippet between <b> and </b>, with backslash escapes. "
    'JSON: one {"id", "score", "snippet"} object per line. A query that does not parse exits '
    "with status 3 and says where; an unknown index has no hits.",
)
@arguments(_search_args)
def search_(args: argparse.Namespace, out: Output) -> None:
    try:
        parse(args.query)
    except QueryError as exc:
        raise CliError(f"bad query {args.query!r}: {exc}", INVALID) from None
    with open_target(args, create=False) as store:
        index = _open_index(store, args.index)
        if index is None:
            return
        hits = index.search(args.query, limit=args.limit, offset=args.offset, snippets=True)
    for hit in hits:
        snippet = hit.snippet or ""
        if out.json:
            out.emit({"id": _id_json(hit.id), "score": hit.score, "snippet": snippet})
        else:
            out.line(
                f"{escape_text(_id_bytes(hit.id))}\t{hit.score:.6f}\t"
                f"{escape_text(snippet.encode('utf-8'))}"
            )


# --- sorted sets -----------------------------------------------------------------------------


def _zname_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", type=os.fsencode, help="the sorted set's name")


def _member_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "member", metavar="MEMBER", type=os.fsencode, help="the member (-- before one with -)"
    )


def _words(parser: argparse.ArgumentParser, metavar: str, help: str) -> None:
    parser.add_argument(
        "words", metavar=metavar, nargs=argparse.REMAINDER, type=os.fsencode, help=help
    )


ZADD_FLAGS = ("NX", "XX", "GT", "LT")


def _zadd_args(parser: argparse.ArgumentParser) -> None:
    _zname_arg(parser)
    _words(parser, "[NX|XX] [GT|LT] SCORE MEMBER [SCORE MEMBER ...]", "as Redis ZADD")


@command(
    "zadd",
    "ZADD NAME [NX|XX] [GT|LT] SCORE MEMBER ...: prints the number of members added",
    description="Add members with scores to sorted set NAME (Redis ZADD): NX only adds new "
    "members, XX only updates existing ones, GT/LT update an existing member only to a "
    "greater/less score. Scores: decimals, exponents, inf, -inf. Prints how many members "
    "were new. Every word after NAME is taken as is (so -inf and -x work): put options "
    "such as -o json before NAME.",
)
@arguments(_zadd_args)
def zadd(args: argparse.Namespace, out: Output) -> None:
    flags: set[str] = set()
    words: list[bytes] = list(args.words)
    while words and words[0].upper().decode("ascii", "replace") in (*ZADD_FLAGS, "CH", "INCR"):
        flag = words.pop(0).upper().decode("ascii")
        if flag in ("CH", "INCR"):
            raise CliError(f"zadd: {flag} is not supported", USAGE)
        flags.add(flag)
    if not words or len(words) % 2:
        raise CliError("zadd: syntax error: give SCORE MEMBER pairs", USAGE)
    if {"NX", "XX"} <= flags:
        raise CliError("zadd: XX and NX options at the same time are not compatible", USAGE)
    if {"GT", "LT"} <= flags or ("NX" in flags and flags & {"GT", "LT"}):
        raise CliError("zadd: GT, LT, and/or NX options at the same time are not compatible", USAGE)
    pairs = [(parse_score(words[i]), words[i + 1]) for i in range(0, len(words), 2)]
    options = {flag.lower(): True for flag in flags}
    with open_target(args) as store:
        zs = SortedSet(store, args.name)
        added = sum(bool(zs.add(member, score, **options)) for score, member in pairs)
    out.answer({"name": json_bytes(args.name), "added": added}, str(added))


def _zrange_args(parser: argparse.ArgumentParser) -> None:
    _zname_arg(parser)
    parser.add_argument(
        "start", metavar="START", type=int, help="first rank (negative: from the end)"
    )
    parser.add_argument("stop", metavar="STOP", type=int, help="last rank, inclusive")
    parser.add_argument("flags", metavar="WITHSCORES|REV", nargs="*", help="as Redis ZRANGE")


@command(
    "zrange",
    "ZRANGE NAME START STOP [WITHSCORES] [REV]: members by rank",
    description="List the members of sorted set NAME ranked START to STOP (inclusive; "
    "negative ranks count from the end; REV ranks from the highest score). Text: one member "
    "per line (MEMBER<TAB>SCORE with WITHSCORES), with backslash escapes. JSON: one "
    '{"member"} object per line ({"member", "score"} with WITHSCORES).',
)
@arguments(_zrange_args)
def zrange(args: argparse.Namespace, out: Output) -> None:
    flags = {f.upper() for f in args.flags}
    unknown = flags - {"WITHSCORES", "REV"}
    if unknown:
        raise CliError(f"zrange: unknown option {sorted(unknown)[0]} (WITHSCORES, REV)", USAGE)
    with open_target(args, create=False) as store:
        items = SortedSet(store, args.name).range(args.start, args.stop, reverse="REV" in flags)
    scores = "WITHSCORES" in flags
    for member, score in items:
        if out.json:
            obj: dict[str, Any] = {"member": json_bytes(member)}
            if scores:
                obj["score"] = json_score(score)
            out.emit(obj)
        elif scores:
            out.line(f"{escape_text(member)}\t{format_score(score)}")
        else:
            out.line(escape_text(member))


def _zmember_args(parser: argparse.ArgumentParser) -> None:
    _zname_arg(parser)
    _member_arg(parser)


def _missing(args: argparse.Namespace) -> CliError:
    return CliError(
        f"member {_shown(args.member)} not in sorted set {_shown(args.name)}", NOT_FOUND
    )


@command(
    "zrank",
    "ZRANK NAME MEMBER: the member's 0-based rank, lowest score first",
    description="Print MEMBER's 0-based rank in sorted set NAME (lowest score first). A "
    "member that is not there exits with status 1.",
)
@arguments(_zmember_args)
def zrank(args: argparse.Namespace, out: Output) -> None:
    with open_target(args, create=False) as store:
        rank = SortedSet(store, args.name).rank(args.member)
    if rank is None:
        raise _missing(args)
    out.answer(
        {"name": json_bytes(args.name), "member": json_bytes(args.member), "rank": rank}, str(rank)
    )


@command(
    "zscore",
    "ZSCORE NAME MEMBER: the member's score",
    description="Print MEMBER's score in sorted set NAME (10, 2.5, inf, -inf). A member that "
    "is not there exits with status 1.",
)
@arguments(_zmember_args)
def zscore(args: argparse.Namespace, out: Output) -> None:
    with open_target(args, create=False) as store:
        score = SortedSet(store, args.name).score(args.member)
    if score is None:
        raise _missing(args)
    if out.json:
        out.emit(
            {
                "name": json_bytes(args.name),
                "member": json_bytes(args.member),
                "score": json_score(score),
            }
        )
    else:
        out.line(format_score(score))


def _zrem_args(parser: argparse.ArgumentParser) -> None:
    _zname_arg(parser)
    _words(parser, "MEMBER [MEMBER ...]", "members to remove")


@command(
    "zrem",
    "ZREM NAME MEMBER ...: prints the number of members removed",
    description="Remove members from sorted set NAME (Redis ZREM); prints how many were there. "
    "Every word after NAME is a member, taken as is: put options such as -o json before NAME.",
)
@arguments(_zrem_args)
def zrem(args: argparse.Namespace, out: Output) -> None:
    if not args.words:
        raise CliError("zrem: give at least one MEMBER", USAGE)
    with open_target(args, create=False) as store:
        zs = SortedSet(store, args.name)
        removed = sum(bool(zs.remove(member)) for member in args.words)
    out.answer({"name": json_bytes(args.name), "removed": removed}, str(removed))
