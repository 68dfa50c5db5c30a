"""Fuzzing the dump reader (``ring.cli.dump``) and the merge of a cluster save's pages
(``ring.cli.transfer._Merged``).

Properties:

* ``dump.verify`` raises only ``DumpError`` (a ``ring.CorruptData``) on any file: arbitrary
  bytes, mutated dumps, and dumps whose items were damaged and then *sealed again* with a correct
  count and checksum (so the damage reaches the item checks, not just the digest);
* a dump ``verify`` accepts is read back by ``read`` and ``read_encoded`` without error, as many
  items as it counted, each a well-formed record;
* merging pages of records, some damaged, into a save never raises: a damaged copy is noted
  against its key (``_Merged.corrupt``), the good ones are merged, and what is stored decodes.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ring.cli import dump
from ring.cli.transfer import _Merged
from ring.core import record as rec
from tests.fuzz import corpus
from tests.fuzz.strategies import budget, mutate_bytes, mutated_encodings, values
from tests.fuzz.test_records import well_formed

pytestmark = pytest.mark.soak

pack = msgpack.Packer(use_bin_type=True).pack


def sealed(items: list[Any]) -> bytes:
    """A dump of ``items`` as they are (any msgpack values), with a correct trailer."""
    body = dump.HEADER + b"".join(pack(item) for item in items)
    return body + pack({"records": len(items), "sha256": hashlib.sha256(body).digest()})


damaged_records = mutated_encodings(corpus.encoded_records, decode=lambda b: b)
items = st.one_of(
    st.tuples(corpus.keys, corpus.encoded_records).map(list),
    st.tuples(corpus.keys, damaged_records).map(list),
    values(6),
)
resealed = st.lists(items, max_size=4).map(sealed)

files = st.one_of(
    mutated_encodings(corpus.dumps, decode=lambda b: b),
    resealed,
    resealed.flatmap(mutate_bytes),
)


@budget()
@given(files)
@example(b"RINGKV-DUMP 1\n")
@example(b"RINGKV-DUMP 1\n\x81\xa7records\x00")
@example(sealed([[b"k", b"\x01"]]))  # a record too short for its framing
@example(sealed([{"records": 0}]))
@example(b"RINGKV-DUMP 1\n" + b"\x91" * 2000)
@example(b"RINGKV-DUMP 1\n\xc6\xff\xff\xff\xff")  # a bin that says 4 GiB follow
def test_verify_raises_only_dump_errors(data: bytes) -> None:
    try:
        summary = dump.verify(io.BytesIO(data))
    except dump.DumpError as exc:
        assert str(exc)
        return
    got = list(dump.read(io.BytesIO(data)))
    raw = list(dump.read_encoded(io.BytesIO(data)))
    assert len(got) == len(raw) == summary.records
    for (key, record), (key2, encoded) in zip(got, raw):
        assert type(key) is bytes and key == key2
        well_formed(record)
        assert rec.decode(encoded) == record


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Merged]:
    m = _Merged(str(tmp_path_factory.mktemp("fuzz-save")))
    yield m
    m.close()


pages = st.lists(st.tuples(corpus.keys, corpus.encoded_records | damaged_records), max_size=6)


@budget(soak=5000)
@given(pages)
def test_merging_save_pages_never_raises(merged: _Merged, page: list[tuple[bytes, bytes]]) -> None:
    merged.corrupt.clear()
    before = {k: merged._db.get(k) for k, _ in page}
    merged.merge("m1", [x for pair in page for x in pair])
    for key, incoming in page:
        stored = merged._db.get(key)
        try:
            rec.check_encoded(incoming)
        except rec.RecordError:
            assert key in merged.corrupt  # noted against its key, with the member
            continue
        assert stored is not None
        well_formed(rec.decode(stored))
        if before[key] is None and all(k != key or v == incoming for k, v in page):
            assert stored == incoming
