"""The query language: a subset of Lucene's classic query parser, with its clause rules.

    word other          either word (OR), ranked by BM25
    +word -word         word required, word excluded
    a AND b, a OR b     AND makes both neighbours required; OR is the default
    NOT word            excluded (``a AND NOT b`` = ``+a -b``)
    ( ... )             a group: one clause of the enclosing group
    "a phrase"          the words at consecutive positions
    pre*                every term that starts with ``pre`` (at least 2 characters before ``*``)
    field:word  field:"a phrase"  field:pre*  field:( ... )    only in that field

A group (the whole query, or parentheses) is a list of clauses, each *should*, *must* or
*must not*, built exactly as Lucene's ``QueryParserBase.addClause`` does with the default
operator OR: ``+``/``AND`` make a clause *must* (``AND`` also makes the clause before it
*must*, unless that one is excluded), ``-``/``NOT`` make it *must not*. A group with *must*
clauses matches the documents that match all of them; otherwise those that match at least one
*should* clause; never one that matches a *must not* clause; a group of *must not* clauses only
matches nothing. A clause whose words all analyze to nothing (a stop word) is dropped, as in
Lucene. ``AND``, ``OR``, ``NOT`` are operators only in upper case. ``\\`` escapes the next
character. A word that analyzes to several terms (``foo-bar``) is a phrase of them.

A query that does not parse raises :class:`QueryError` (a ``ring.InvalidInput``) whose
``position`` is the 0-based index in the query of the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ring.errors import InvalidInput

Occur = Literal["must", "should", "must_not"]
SPECIAL = '()":'
KEYWORDS = ("AND", "OR", "NOT")
# Lucene syntax this subset does not have: refused (unless escaped), never read as a word.
UNSUPPORTED = {
    "^": "there are no boosts",
    "~": "there are no fuzzy or proximity queries",
    "?": "there are no '?' wildcards",
    "[": "there are no range queries",
    "]": "there are no range queries",
    "{": "there are no range queries",
    "}": "there are no range queries",
    "!": "write NOT",
    "&&": "write AND",
    "||": "write OR",
}


class QueryError(InvalidInput):
    """A query that does not parse; ``position`` is where (0-based)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.position = position


@dataclass(frozen=True, slots=True)
class Term:
    field: str | None
    text: str
    position: int


@dataclass(frozen=True, slots=True)
class Phrase:
    field: str | None
    text: str
    position: int


@dataclass(frozen=True, slots=True)
class Prefix:
    field: str | None
    text: str
    position: int


@dataclass(frozen=True, slots=True)
class Group:
    clauses: tuple[tuple[Occur, Node], ...]


Node = Term | Phrase | Prefix | Group


def parse(query: str) -> Group:
    if not isinstance(query, str):
        raise InvalidInput(f"a query is a str, not {type(query).__name__}")
    p = _Parser(query)
    group = p.group(None, None)
    return group


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def skip(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def keyword(self) -> str | None:
        for kw in KEYWORDS:
            end = self.i + len(kw)
            if self.s.startswith(kw, self.i) and (
                end == len(self.s) or self.s[end].isspace() or self.s[end] in '()"'
            ):
                return kw
        return None

    def group(self, field: str | None, opened: int | None) -> Group:
        clauses: list[list[object]] = []  # [occur, node]
        conj: str | None = None
        conj_at = 0
        while True:
            self.skip()
            if self.i >= len(self.s):
                if opened is not None:
                    raise QueryError("unclosed '('", opened)
                break
            c = self.s[self.i]
            if c == ")":
                if opened is None:
                    raise QueryError("')' without '('", self.i)
                self.i += 1
                break
            kw = self.keyword()
            if kw in ("AND", "OR"):
                if conj is not None:
                    raise QueryError(f"{kw} right after {conj}", self.i)
                if not clauses:
                    raise QueryError(f"{kw} with no clause before it", self.i)
                conj, conj_at = kw, self.i
                self.i += len(kw)
                continue
            mods: str | None = None
            if kw == "NOT":
                mods = "NOT"
                at = self.i
                self.i += 3
                self.skip()
                if self.i >= len(self.s) or self.s[self.i] == ")":
                    raise QueryError("NOT with no clause after it", at)
            elif c in "+-":
                mods = c
                if self.i + 1 >= len(self.s) or self.s[self.i + 1].isspace():
                    raise QueryError(f"'{c}' must be followed by a clause", self.i)
                self.i += 1
            node = self.clause(field)
            # Lucene's QueryParserBase.addClause, default operator OR.
            if clauses and conj == "AND" and clauses[-1][0] != "must_not":
                clauses[-1][0] = "must"
            prohibited = mods in ("NOT", "-")
            required = mods == "+" or (conj == "AND" and not prohibited)
            occur = "must_not" if prohibited else "must" if required else "should"
            clauses.append([occur, node])
            conj = None
        if conj is not None:
            raise QueryError(f"{conj} with no clause after it", conj_at)
        if not clauses:
            if opened is not None:
                raise QueryError("empty group", opened)
            raise QueryError("empty query", 0)
        return Group(tuple((o, n) for o, n in clauses))  # type: ignore[misc]

    def clause(self, field: str | None) -> Node:
        if self.i >= len(self.s) or self.s[self.i].isspace():
            raise QueryError("a clause was expected", self.i)
        c = self.s[self.i]
        if c in "+-":
            raise QueryError(f"'{c}' where a clause was expected", self.i)
        if self.keyword() is not None:
            raise QueryError("an operator where a clause was expected", self.i)
        if c == "(":
            at = self.i
            self.i += 1
            return self.group(field, at)
        if c == ")":
            raise QueryError("')' where a clause was expected", self.i)
        if c == ":":
            raise QueryError("':' with no field name before it", self.i)
        if c == '"':
            at = self.i
            end = self.i + 1
            chars: list[str] = []
            while end < len(self.s) and self.s[end] != '"':
                if self.s[end] == "\\":
                    end += 1
                    if end >= len(self.s):
                        break
                chars.append(self.s[end])
                end += 1
            if end >= len(self.s):
                raise QueryError("unclosed '\"'", at)
            self.i = end + 1
            return Phrase(field, "".join(chars), at)
        at = self.i
        chars = []
        star_at: int | None = None
        while self.i < len(self.s):
            ch = self.s[self.i]
            if ch.isspace() or ch in SPECIAL:
                break
            if star_at is not None:
                raise QueryError("'*' is only allowed at the end of a word", star_at)
            if ch in UNSUPPORTED or self.s.startswith(("&&", "||"), self.i):
                what = self.s[self.i : self.i + 2] if ch in "&|" else ch
                raise QueryError(
                    f"'{what}' is not supported ({UNSUPPORTED[what]}; escape it to search for it)",
                    self.i,
                )
            if ch == "\\":
                self.i += 1
                if self.i >= len(self.s):
                    raise QueryError("'\\' at the end of the query", self.i - 1)
                chars.append(self.s[self.i])
            elif ch == "*":
                star_at = self.i
            else:
                chars.append(ch)
            self.i += 1
        word = "".join(chars)
        if self.i < len(self.s) and self.s[self.i] == ":":
            if star_at is not None:
                raise QueryError("'*' in a field name", star_at)
            if field is not None:
                raise QueryError("a field inside a field", self.i)
            if self.i + 1 >= len(self.s) or self.s[self.i + 1].isspace():
                raise QueryError(f"field '{word}:' with no clause after it", self.i)
            self.i += 1
            return self.clause(word)
        if star_at is not None:
            if len(word) < 2:
                raise QueryError("a prefix needs at least 2 characters before '*'", star_at)
            return Prefix(field, word, at)
        return Term(field, word, at)
