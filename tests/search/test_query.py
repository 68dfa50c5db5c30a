"""The query parser: Lucene classic's clause rules, and errors at the right position."""

from __future__ import annotations

import pytest

import ring
from search.query import Group, Phrase, Prefix, QueryError, Term, parse


def shape(g: Group) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for occur, node in g.clauses:
        if isinstance(node, Group):
            out.append((occur, shape(node)))
        elif isinstance(node, Term):
            out.append((occur, f"{node.field}:{node.text}" if node.field else node.text))
        elif isinstance(node, Phrase):
            out.append((occur, f'{node.field or ""}"{node.text}"'))
        elif isinstance(node, Prefix):
            out.append((occur, f"{node.field or ''}{node.text}*"))
    return out


S, M, N = "should", "must", "must_not"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a b", [(S, "a"), (S, "b")]),
        ("+a -b c", [(M, "a"), (N, "b"), (S, "c")]),
        ("a AND b", [(M, "a"), (M, "b")]),
        ("a AND b OR c", [(M, "a"), (M, "b"), (S, "c")]),
        ("a OR b AND c", [(S, "a"), (M, "b"), (M, "c")]),
        ("a AND NOT b", [(M, "a"), (N, "b")]),
        ("-a AND b", [(N, "a"), (M, "b")]),
        ("NOT a", [(N, "a")]),
        ("a NOT b", [(S, "a"), (N, "b")]),
        ("(a OR b) AND c", [(M, [(S, "a"), (S, "b")]), (M, "c")]),
        ('"a phrase" title:x', [(S, '"a phrase"'), (S, "title:x")]),
        ('title:"two words"', [(S, 'title"two words"')]),
        ("pre* ti:ab*", [(S, "pre*"), (S, "tiab*")]),
        ("t:(a -b)", [(S, [(S, "t:a"), (N, "t:b")])]),
        ("and or not", [(S, "and"), (S, "or"), (S, "not")]),
        ("ANDROID ORB", [(S, "ANDROID"), (S, "ORB")]),
        ("foo-bar a+b", [(S, "foo-bar"), (S, "a+b")]),
        (r"a\:b \(c", [(S, "a:b"), (S, "(c")]),
        ('"say \\"hi\\""', [(S, '"say "hi""')]),
        ("  a  ", [(S, "a")]),
    ],
)
def test_clauses(query: str, expected: list[tuple[str, object]]) -> None:
    assert shape(parse(query)) == expected


@pytest.mark.parametrize(
    ("query", "position"),
    [
        ("", 0),
        ("   ", 0),
        ("AND a", 0),
        ("a AND", 2),
        ("a OR", 2),
        ("a AND OR b", 6),
        ("a NOT", 2),
        ("(a b", 0),
        ("a (b (c)", 2),
        ("a b)", 3),
        ("()", 0),
        ('a "unclosed', 2),
        ("a* b", 1),
        ("x a*b", 3),
        ("+ a", 0),
        ("a - b", 2),
        ("a +", 2),
        ("title: a", 5),
        ("title:", 5),
        (":a", 0),
        ("a:b:c", 3),
        ("a\\", 1),
        ("NOT NOT a", 4),
        ("+-a", 1),
        ("t*:a", 1),
        ("quick^2", 5),
        ("fox~", 3),
        ("a && b", 2),
        ("a || b", 2),
        ("!a", 0),
        ("te?t", 2),
        ("[a TO b]", 0),
        ("title:{a", 6),
    ],
)
def test_errors_name_the_position(query: str, position: int) -> None:
    with pytest.raises(QueryError) as info:
        parse(query)
    assert info.value.position == position, str(info.value)
    assert isinstance(info.value, ring.InvalidInput)
    assert f"at position {position}" in str(info.value)


def test_a_query_is_a_str() -> None:
    with pytest.raises(ring.InvalidInput):
        parse(b"a")  # type: ignore[arg-type]


def test_unsupported_lucene_syntax_escaped_is_a_word() -> None:
    assert shape(parse(r"te\?t a\^2 \!x a\&&b")) == [
        (S, "te?t"),
        (S, "a^2"),
        (S, "!x"),
        (S, "a&&b"),
    ]
    assert shape(parse("a&b a|b")) == [(S, "a&b"), (S, "a|b")]  # single ones are not operators
