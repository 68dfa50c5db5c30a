"""Analyzers: casefold then runs of word characters; english drops stop words and stems."""

from __future__ import annotations

import pytest

import ring
from search.analysis import ENGLISH_STOP_WORDS, analyzer_named


def test_standard_casefolds_the_whole_text_then_takes_word_runs() -> None:
    a = analyzer_named("standard")
    assert a.terms("Hello, WORLD! snake_case 42x") == [
        (0, "hello"),
        (1, "world"),
        (2, "snake_case"),
        (3, "42x"),
    ]
    assert a.terms("Straße") == [(0, "strasse")]
    # casefold first: U+0130 folds to "i" + a combining dot, which is not a word character
    assert [t for _, t in a.terms("İstanbul")] == ["i", "stanbul"]
    assert a.terms("the a of") == [(0, "the"), (1, "a"), (2, "of")]  # nothing dropped
    assert a.terms("日本語 テキスト") == [(0, "日本語"), (1, "テキスト")]
    assert a.terms("...") == []


def test_english_drops_stop_words_keeps_positions_and_stems() -> None:
    a = analyzer_named("english")
    assert a.terms("The cats are running") == [(1, "cat"), (3, "run")]
    assert "the" in ENGLISH_STOP_WORDS and "with" in ENGLISH_STOP_WORDS
    assert a.terms("the and of") == []


@pytest.mark.parametrize("name", ["standard", "english"])
def test_spans_map_back_to_the_original_text(name: str) -> None:
    a = analyzer_named(name)
    text = "Die STRASSE, die Straße — İstanbul's Cats"
    spans = a.spans(text)
    assert [(p, t) for p, t, _, _ in spans] == a.terms(text)
    for _, term, start, end in spans:
        assert text[start:end].casefold().startswith(term[:1]) or name == "english"


def test_unknown_analyzer() -> None:
    with pytest.raises(ring.InvalidInput):
        analyzer_named("klingon")
