"""Analyzers: text to terms with positions (and, for snippets, the spans they came from).

* ``standard``: ``str.casefold`` of the whole text, then every maximal run of Unicode word
  characters (``re``'s ``\\w``) is a term; nothing is dropped. Position ``i`` is the ``i``-th run.
* ``english``: the same runs; English stop words (``ENGLISH_STOP_WORDS``, Lucene's
  ``EnglishAnalyzer`` set) are dropped — they keep their positions, so a phrase does not match
  across a removed word — and the rest are Snowball-stemmed (``PyStemmer``, "english").

A field's length ``dl`` is the number of terms it yields (after stop words are dropped).
Query words go through the same analyzer.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from ring.errors import InvalidInput

WORD = re.compile(r"\w+")

ENGLISH_STOP_WORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    }
)


class Analyzer:
    """Turns text into ``(position, term)`` pairs."""

    name = "standard"

    def terms(self, text: str) -> list[tuple[int, str]]:
        return list(enumerate(WORD.findall(text.casefold())))

    def spans(self, text: str) -> list[tuple[int, str, int, int]]:
        """``(position, term, start, end)`` with ``text[start:end]`` the original characters of
        the term's run (casefolding may change lengths: the spans map back to ``text``)."""
        folded: list[str] = []
        origin: list[int] = []
        for i, ch in enumerate(text):
            f = ch.casefold()
            folded.append(f)
            origin.extend([i] * len(f))
        origin.append(len(text))
        out: list[tuple[int, str, int, int]] = []
        for pos, m in enumerate(WORD.finditer("".join(folded))):
            start, end = origin[m.start()], origin[m.end() - 1] + 1
            out.append((pos, m.group(), start, end))
        return self._filter(out)

    def _filter(self, spans: list[tuple[int, str, int, int]]) -> list[tuple[int, str, int, int]]:
        return spans

    def normalize_prefix(self, text: str) -> str:
        """A prefix query's text: casefolded, not stemmed (a stem of a prefix means nothing)."""
        return text.casefold()


class EnglishAnalyzer(Analyzer):
    name = "english"

    def __init__(self) -> None:
        self._local = threading.local()  # a Stemmer object is not thread-safe

    def _stem(self) -> Callable[[list[str]], list[str]]:
        stem: Callable[[list[str]], list[str]] | None = getattr(self._local, "stem", None)
        if stem is None:
            import Stemmer  # type: ignore[import-not-found,unused-ignore]

            stem = Stemmer.Stemmer("english").stemWords
            self._local.stem = stem
        return stem

    def terms(self, text: str) -> list[tuple[int, str]]:
        kept = [
            (i, w)
            for i, w in enumerate(WORD.findall(text.casefold()))
            if w not in ENGLISH_STOP_WORDS
        ]
        if not kept:
            return []
        stems = self._stem()([w for _, w in kept])
        return [(i, s) for (i, _), s in zip(kept, stems)]

    def _filter(self, spans: list[tuple[int, str, int, int]]) -> list[tuple[int, str, int, int]]:
        kept = [s for s in spans if s[1] not in ENGLISH_STOP_WORDS]
        stems = self._stem()([s[1] for s in kept]) if kept else []
        return [(p, st, a, b) for (p, _, a, b), st in zip(kept, stems)]


def analyzer_named(name: object) -> Analyzer:
    if name == "standard":
        return Analyzer()
    if name == "english":
        return EnglishAnalyzer()
    raise InvalidInput(f"unknown analyzer {name!r}: 'standard' or 'english'")
