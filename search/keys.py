"""Key layout of an index, version ids and the hybrid clock that makes them.

Index ``I`` keeps every key under ``search:<len(I)>:I:`` (the length keeps one index's keys from
being a prefix range of another's), then one letter:

* ``M``                                  the analyzer's name (checked when an ``Index`` opens);
* ``D`` bucket(2) doc version(12)        a document version: its fields and their lengths;
* ``P`` field term doc version(12)       a posting: tf, dl and the positions of ``term``;
* ``T`` bucket(2)                        a bucket's statistics (documents, per field N, sum dl),
                                         one key per bucket, overwritten in place;
* ``W`` writer(4)                        a writer's intents: the adds and removes it has under
                                         way, one key per writer, deleted when it is done.

The ``T`` and ``W`` keys are rewritten in place (never a fresh key per write), so the scans
readers make of them step over no more records than there are buckets and writers: a write
that made a new key and deleted the old one would leave a tombstone behind for every write.

``doc`` is a type byte (``s`` str, ``b`` bytes) and a 4-byte length before the id's bytes, so
ids of any bytes never run into each other and keep their type. ``field`` and ``term`` are
escaped (``00`` -> ``00 ff``) and end with ``00 01``: order-preserving and prefix-free, so a
prefix query is one scan of ``P field <escaped prefix>`` and a term's postings one scan of
``P field term``. A version id is a hybrid timestamp (8 bytes, big-endian) and the 4-byte id of
the writer that made it: byte order is version order.
"""

from __future__ import annotations

import hashlib
import os

from ring.errors import InvalidInput
from ring.hybrid import HybridClock as HybridClock  # the clock versions are made with

VERSION_BYTES = 12
WRITER_BYTES = 4
BUCKETS = 256
MAX_NAME_BYTES = 1024
TERMINATOR = b"\x00\x01"

DocId = str | bytes


def index_name(name: object) -> bytes:
    if isinstance(name, str):
        try:
            name = name.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(f"index name is not valid text: {exc.reason}") from None
    if not isinstance(name, bytes):
        raise InvalidInput(f"an index name is bytes or str, not {type(name).__name__}")
    if not name or len(name) > MAX_NAME_BYTES:
        raise InvalidInput(f"an index name is 1 to {MAX_NAME_BYTES} bytes, not {len(name)}")
    return name


def encode_doc(doc_id: object) -> bytes:
    if isinstance(doc_id, str):
        try:
            raw, kind = doc_id.encode("utf-8"), b"s"
        except UnicodeEncodeError as exc:
            raise InvalidInput(f"doc id is not valid text: {exc.reason}") from None
    elif isinstance(doc_id, bytes | bytearray):
        raw, kind = bytes(doc_id), b"b"
    else:
        raise InvalidInput(f"a doc id is str or bytes, not {type(doc_id).__name__}")
    return kind + len(raw).to_bytes(4, "big") + raw


def decode_doc(data: bytes, at: int = 0) -> tuple[DocId, int]:
    """The doc id encoded at ``data[at:]`` and where its encoding ends."""
    n = int.from_bytes(data[at + 1 : at + 5], "big")
    raw = data[at + 5 : at + 5 + n]
    doc: DocId = raw.decode("utf-8") if data[at : at + 1] == b"s" else raw
    return doc, at + 5 + n


def escape(text: str) -> bytes:
    """``text`` escaped, without the terminator (a prefix of the escaping of longer text)."""
    return text.encode("utf-8").replace(b"\x00", b"\x00\xff")


def unescape(data: bytes, at: int) -> tuple[str, int]:
    """The escaped text at ``data[at:]`` and where its terminator ends."""
    end = at
    while True:
        end = data.index(b"\x00", end)
        if data[end + 1 : end + 2] == b"\x01":
            break
        end += 2
    return data[at:end].replace(b"\x00\xff", b"\x00").decode("utf-8"), end + 2


def bucket_of(doc: bytes) -> bytes:
    h = int.from_bytes(hashlib.blake2b(doc, digest_size=4).digest(), "big")
    return (h % BUCKETS).to_bytes(2, "big")


class Keys:
    """The store keys of one index."""

    __slots__ = ("docs", "intents", "meta", "name", "postings", "prefix", "stats")

    def __init__(self, name: object) -> None:
        self.name = index_name(name)
        self.prefix = b"search:%d:%s:" % (len(self.name), self.name)
        self.meta = self.prefix + b"M"
        self.docs = self.prefix + b"D"
        self.postings = self.prefix + b"P"
        self.stats = self.prefix + b"T"
        self.intents = self.prefix + b"W"

    def doc_prefix(self, doc: bytes) -> bytes:
        return self.docs + bucket_of(doc) + doc

    def doc(self, doc: bytes, version: bytes) -> bytes:
        return self.docs + bucket_of(doc) + doc + version

    def bucket_docs(self, bucket: bytes) -> bytes:
        return self.docs + bucket

    def term_prefix(self, field: str, term: str) -> bytes:
        return self.postings + escape(field) + TERMINATOR + escape(term) + TERMINATOR

    def prefix_scan(self, field: str, prefix: str) -> bytes:
        return self.postings + escape(field) + TERMINATOR + escape(prefix)

    def posting(self, field: str, term: str, doc: bytes, version: bytes) -> bytes:
        return self.term_prefix(field, term) + doc + version

    def stat(self, bucket: bytes) -> bytes:
        return self.stats + bucket

    def intent(self, writer: bytes) -> bytes:
        return self.intents + writer

    # --- parsing ------------------------------------------------------------------------

    def parse_doc_key(self, key: bytes) -> tuple[bytes, bytes, bytes]:
        """``(bucket, doc, version)`` of a ``D`` key."""
        at = len(self.docs)
        _, end = decode_doc(key, at + 2)
        return key[at : at + 2], key[at + 2 : end], key[end:]

    def parse_posting_key(self, key: bytes) -> tuple[str, str, bytes, bytes]:
        """``(field, term, doc, version)`` of a ``P`` key."""
        field, at = unescape(key, len(self.postings))
        term, at = unescape(key, at)
        _, end = decode_doc(key, at)
        return field, term, key[at:end], key[end:]

    def parse_stat_key(self, key: bytes) -> bytes:
        """The bucket of a ``T`` key."""
        return key[len(self.stats) :]


def version(hts: int, writer: bytes) -> bytes:
    return hts.to_bytes(8, "big") + writer


def hts_of(version_id: bytes) -> int:
    return int.from_bytes(version_id[:8], "big")


def new_writer_id() -> bytes:
    return os.urandom(WRITER_BYTES)
