"""Fuzzing the stored-record decoders (``ring.core.record``).

Arbitrary bytes and mutated encodings of reachable records go through every function that reads
stored or replicated record bytes. Properties:

* each raises only ``RecordError`` (a ``ValueError``, so every caller's ``except ValueError``
  still holds) — never IndexError, TypeError, msgpack's errors, ...;
* what ``check_encoded`` accepts (the check every record from elsewhere passes before it is
  kept) decodes, satisfies the record's invariants, encodes back to a record that decodes to the
  same, and the fast paths (``decode_resolved``, ``versioned_parts``, ``merge_encoded``,
  ``blind_write_encoded``) agree with the full decoder on it.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ring.core import record as rec
from ring.core import vclock
from tests.fuzz import corpus
from tests.fuzz.strategies import budget, mutate_value, mutated_encodings, nest, pack, values

pytestmark = pytest.mark.soak

record_bytes = mutated_encodings(corpus.encoded_records, decode=lambda b: b)


# The head alone (the msgpack part) is where most of the structure is: mutate it as a value and
# frame it again, so mutations reach the checks behind the framing.
@st.composite
def reframed(draw: st.DrawFn) -> bytes:
    record = draw(corpus.records())
    obj = draw(mutate_value(rec.to_wire(record)))
    try:
        head = bytes(pack(obj))
    except (ValueError, OverflowError):
        head = b"\x90"
    kind = draw(st.sampled_from([0, 1, 2]))
    tail = draw(st.binary(max_size=8)) if kind == 1 else b""
    n = len(head)
    size = bytes([n]) if n < 255 else b"\xff" + n.to_bytes(4, "big")
    return bytes([kind]) + size + head + tail


inputs = record_bytes | reframed()


def well_formed(record: rec.Record) -> None:
    """The invariants every decoded record keeps (``ring.core.record``'s docstring)."""
    dots = [s.dot for s in record.siblings]
    assert dots == sorted(dots) and len(set(dots)) == len(dots)
    for s in record.siblings:
        assert type(s.actor) is str and type(s.counter) is int and s.counter > 0
        assert type(s.ts_ms) is int and (s.value is None or type(s.value) is bytes)
        assert record.context.get(s.actor, 0) >= s.counter
    for actor, n in record.context.items():
        assert type(actor) is str and type(n) is int and n > 0


def attempt(fn: Any, *args: Any) -> Any:
    """``fn(*args)``, or the RecordError it raised; any other exception fails the test."""
    try:
        return fn(*args)
    except rec.RecordError as exc:
        assert str(exc), "a RecordError says what is wrong"
        return exc


@budget()
@given(inputs)
@example(b"")
@example(b"\x01")
@example(b"\x01\x00")
@example(b"\x02\x01\x90")
@example(b"\x01\xff\xff\xff\xff\xff\x93")
@example(b"\x00\x03\x93\x01\x90\x90")
def test_decoders_raise_only_record_errors(data: bytes) -> None:
    decoded = attempt(rec.decode, data)
    checked = attempt(rec.check_encoded, data)
    resolved = attempt(rec.decode_resolved, data)
    head = attempt(rec.decode_head, data)
    parts = attempt(rec.versioned_parts, data)
    blind = attempt(rec.blind_write_encoded, data, "a@1", b"new", 7)
    merged = attempt(rec.merge_encoded, None, data)
    if isinstance(decoded, rec.Record):
        well_formed(decoded)
        again = rec.decode(rec.encode(decoded))
        assert again == decoded
        assert not isinstance(head, Exception)
    if checked is None:  # accepted: everything else must agree with the full decoder
        assert isinstance(decoded, rec.Record), decoded
        assert resolved == rec.resolve(decoded)
        values_, ctx, best = parts
        assert best == rec.resolve(decoded)
        assert sorted(values_) == sorted(s.value for s in decoded.live)
        assert (rec.decode_context(ctx) if ctx else {}) == decoded.context
        assert merged == data
        assert not isinstance(blind, Exception)
        expect = rec.write(decoded, "a@1", b"new", 7)
        assert rec.decode(blind) == expect
    else:
        assert isinstance(merged, rec.RecordError)


@budget()
@given(corpus.encoded_records, inputs)
def test_merging_a_damaged_record_never_keeps_it(local: bytes, incoming: bytes) -> None:
    """A replica's merge of a record from elsewhere: a damaged incoming record is refused (the
    stored one untouched); a damaged stored one is reported as LocalCorrupt."""
    out = attempt(rec.merge_encoded, local, incoming)
    if isinstance(out, Exception):
        assert not isinstance(out, rec.LocalCorrupt)
        return
    merged = rec.decode(out) if out is not None else rec.decode(local)
    assert merged == rec.reconcile(rec.decode(local), rec.decode(incoming))
    back = attempt(rec.merge_encoded, incoming, local)
    if not isinstance(back, rec.LocalCorrupt):
        assert not isinstance(back, Exception), back


@budget()
@given(
    st.one_of(
        values(10),
        corpus.records().map(rec.to_wire).flatmap(mutate_value),
        corpus.records().map(rec.to_wire),
    )
)
@example([1, [], nest(100)])
@example([1, ["a", 1], ["a", 1, 0, None, "b"]])
def test_wire_records_raise_only_record_errors(obj: Any) -> None:
    """Records inside peer messages in their wire form (``record.from_wire``)."""
    out = attempt(rec.from_wire, obj)
    if isinstance(out, rec.Record):
        well_formed(out)
        assert rec.from_wire(rec.to_wire(out)) == out


contexts = st.one_of(
    st.binary(max_size=24),
    corpus.records().map(lambda r: rec.encode_context(r.context)),
    mutated_encodings(corpus.records().map(lambda r: rec.encode_context(r.context))),
)


@budget()
@given(contexts)
@example(b"\x92\xa1a\xc3")  # a counter that is msgpack true
@example(b"\x91\xa1a")
def test_contexts_raise_only_record_errors(data: bytes) -> None:
    """The causal context a client hands back (``put(..., context=...)``)."""
    out = attempt(rec.decode_context, data)
    if isinstance(out, dict):
        assert all(type(a) is str and type(n) is int and n > 0 for a, n in out.items())
        assert rec.decode_context(vclock.encode(out)) == out


def test_record_errors_are_value_errors() -> None:
    """Every caller that catches ``ValueError`` from the record decoders still does."""
    assert issubclass(rec.RecordError, ValueError)
    assert issubclass(rec.LocalCorrupt, rec.RecordError)
    for bad in (b"", b"\x05xx", b"\x00\x01\xc1"):
        with pytest.raises(ValueError):
            rec.decode(bad)
