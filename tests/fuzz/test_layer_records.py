"""Fuzzing the decoders of the records feeds, search indexes and sorted sets keep in the store
(``feeds.records``, ``search.records``, ``search._zrecords``): the values a walk, a search or a
sorted set reads back, which a damaged store or another writer's bug may have left malformed.

Properties: each decoder raises only ``ring.CorruptData`` on arbitrary bytes and mutated
encodings; what it accepts is well-formed (it encodes again and decodes to the same); and the
sibling merges, given decoded-or-damaged siblings, raise only ``CorruptData`` too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from feeds import records as frec
from ring.errors import CorruptData
from search import _zrecords as zrec
from search import records as srec
from tests.fuzz import corpus
from tests.fuzz.strategies import budget, mutated_encodings, pack

pytestmark = pytest.mark.soak


def attempt(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except CorruptData as exc:
        assert str(exc)
        return exc


@budget()
@given(mutated_encodings(corpus.entry_records))
@example(pack([1, None, [], [], 0, b""]))
@example(pack([1, b"d", [None], [b"x" * 12], True, b""]))  # removed: a boolean
def test_feed_entries(data: bytes) -> None:
    out = attempt(frec.decode_entry, data)
    if isinstance(out, frec.EntryRecord):
        assert frec.decode_entry(frec.encode_entry(out)) == out


@budget()
@given(mutated_encodings(corpus.header_records))
@example(pack([1, [], [], [0, {}, [], [], [], 0], 0]))  # marks: a map
@example(pack([1, [], [], [0, [b"a", 1], [], [], [], 0], 0]))  # a mark cut short
def test_feed_headers(data: bytes) -> None:
    out = attempt(frec.decode_header, data)
    if isinstance(out, frec.HeaderRecord):
        assert frec.decode_header(frec.encode_header(out)) == out


@budget(ci=100)
@given(st.lists(mutated_encodings(corpus.entry_records), min_size=1, max_size=3))
def test_feed_entry_siblings(values: list[bytes]) -> None:
    attempt(frec.merge_entry, values)


@budget(ci=100)
@given(st.lists(mutated_encodings(corpus.header_records), min_size=1, max_size=3))
def test_feed_header_siblings(values: list[bytes]) -> None:
    attempt(frec.merge_header, values)


@budget()
@given(mutated_encodings(corpus.doc_records, decode=lambda b: b))
@example(b"")
@example(b"\x00\x00\x00\x01\x90")  # lengths: a list, not a map
@example(b"\x00\x00\x00\x01\x80\x91\x01")  # fields: a list, not a map
def test_search_documents(data: bytes) -> None:
    lens = attempt(srec.doc_lengths, data)
    fields = attempt(srec.doc_fields, data)
    if not isinstance(lens, CorruptData):  # what the index then reads as {field: length}
        assert type(lens) is dict, lens
        assert all(type(f) is str and type(n) is int for f, n in lens.items())
    if not isinstance(fields, CorruptData):  # ... and as {field: text}
        assert type(fields) is dict, fields
        assert all(type(f) is str and type(t) is str for f, t in fields.items())


@budget()
@given(mutated_encodings(corpus.postings, decode=lambda b: b))
@example(b"")
@example(b"\x00\x00\x00\x09\x00\x00\x00\x01\x00\x00\x00\x02")  # tf 9, one position
def test_search_postings(data: bytes) -> None:
    head = attempt(srec.posting_head, data)
    positions = attempt(srec.posting_positions, data)
    if isinstance(head, tuple) and isinstance(positions, tuple):
        assert len(positions) == head[0]


@budget()
@given(mutated_encodings(corpus.stats))
@example(pack([1, {"body": [1, 2, 3]}]))
@example(pack([1, {"body": "xy"}]))
def test_search_statistics(data: bytes) -> None:
    out = attempt(srec.Stats.decode, data)
    if isinstance(out, srec.Stats):
        assert srec.Stats.decode(out.encode()) == out


@budget()
@given(mutated_encodings(corpus.intents))
@example(pack([["a", 2**40, b"", [], b""]]))  # a doc that is a huge integer
@example(pack([["a", b"d", b"v", b"xy", b""]]))  # the versions read: bytes, not a list
def test_search_intents(data: bytes) -> None:
    out = attempt(srec.decode_intents, data)
    if isinstance(out, list):
        for op, doc, version, read, words in out:
            assert type(op) is str and type(doc) is bytes and type(version) is bytes
            assert type(read) is list and all(type(v) is bytes for v in read)
            assert type(words) is bytes
        assert srec.decode_intents(srec.encode_intents(out)) == out


@budget()
@given(mutated_encodings(corpus.member_records))
@example(pack([2, 0, b"", None, [], 0, b"", [], [{}]]))  # an entry that is a map
def test_sorted_set_members(data: bytes) -> None:
    out = attempt(zrec.decode_member, data)
    if isinstance(out, zrec.MemberRec):
        raw = zrec.encode_member(out)  # compared as bytes: a score may be NaN
        assert zrec.encode_member(zrec.decode_member(raw)) == raw


@budget()
@given(mutated_encodings(corpus.node_records))
@example(pack([2, 0, b"", [], [[b"w", 0, b"", 0, [], [{}], None, 0]]]))  # helped: a map
@example(pack([2, 0, b"", [], [[b"w", 0, b"", 0, [], [], {}, 0]]]))  # intent: a map
def test_sorted_set_count_nodes(data: bytes) -> None:
    out = attempt(zrec.decode_node, data)
    if isinstance(out, zrec.NodeRec):
        assert zrec.decode_node(zrec.encode_node(out)) == out


@budget(ci=100)
@given(st.lists(mutated_encodings(corpus.member_records), min_size=1, max_size=3))
def test_sorted_set_member_siblings(values: list[bytes]) -> None:
    attempt(zrec.merge_member, values)


@budget(ci=100)
@given(st.lists(mutated_encodings(corpus.node_records), min_size=1, max_size=3))
def test_sorted_set_node_siblings(values: list[bytes]) -> None:
    attempt(zrec.merge_node, values)
