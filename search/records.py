"""Values stored by an index: documents, postings, bucket statistics, intents.

* a document version: 4-byte length, msgpack of ``{field: dl}``, msgpack of ``{field: text}``
  (the lengths first, so statistics are recomputed without decoding texts);
* a posting: ``tf`` and ``dl`` (4 bytes each, big-endian), then ``tf`` positions (4 bytes each);
* bucket statistics: msgpack ``[documents, {field: [N, sum dl]}]``;
* a writer's intents: msgpack of a list of ``[op, doc, version, [versions], words]``, ``op``
  ``"a"`` (an add of ``doc`` as ``version``; ``words`` its (field, term) pairs, each escaped and
  terminated as in a posting key, so that its postings can be found without its record) or
  ``"r"`` (a remove, ``version`` its own id, of the versions it read).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ring.errors import CorruptData, InvalidInput

Fields = dict[str, str]


def normalize(doc: object) -> Fields:
    """A document as given to ``add``: a str (the field ``body``) or a dict field -> str."""
    if isinstance(doc, str):
        return {"body": doc}
    if isinstance(doc, Mapping):
        out: Fields = {}
        for k, v in doc.items():
            if not isinstance(k, str) or not k:
                raise InvalidInput(f"a field name is a non-empty str, not {k!r}")
            if not isinstance(v, str):
                raise InvalidInput(f"field {k!r} must be a str, not {type(v).__name__}")
            out[k] = v
        return out
    raise InvalidInput(f"a document is a str or a dict of str, not {type(doc).__name__}")


def encode_doc_record(lens: dict[str, int], fields: Fields) -> bytes:
    head: bytes = msgpack.packb(lens)
    body: bytes = msgpack.packb(fields)
    return len(head).to_bytes(4, "big") + head + body


def _str_map(raw: bytes, kind: type, what: str) -> dict[str, Any]:
    """A msgpack map of str to ``kind`` (an exact type: a boolean is no length)."""
    try:
        obj = msgpack.unpackb(raw)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CorruptData(f"a search document record cannot be decoded: {exc}") from None
    if type(obj) is not dict or not all(type(k) is str and type(v) is kind for k, v in obj.items()):
        raise CorruptData(f"a search document record holds malformed {what}")
    return obj


def doc_lengths(value: bytes) -> dict[str, int]:
    n = int.from_bytes(value[:4], "big")
    if len(value) < 4 + n:
        raise CorruptData("a search document record is shorter than its field lengths")
    return _str_map(value[4 : 4 + n], int, "field lengths")


def doc_fields(value: bytes) -> Fields:
    n = int.from_bytes(value[:4], "big")
    if len(value) < 4 + n:
        raise CorruptData("a search document record is shorter than its field lengths")
    return _str_map(value[4 + n :], str, "fields")


_HEAD = struct.Struct(">II")


def encode_posting(dl: int, positions: list[int]) -> bytes:
    return _HEAD.pack(len(positions), dl) + struct.pack(f">{len(positions)}I", *positions)


def posting_head(value: bytes) -> tuple[int, int]:
    """``(tf, dl)``."""
    try:
        tf, dl = _HEAD.unpack_from(value)
    except struct.error:
        raise CorruptData(f"a search posting of {len(value)} bytes is too short") from None
    return tf, dl


def posting_positions(value: bytes) -> tuple[int, ...]:
    tf = posting_head(value)[0]
    if len(value) != 8 + 4 * tf:
        raise CorruptData(f"a search posting of {len(value)} bytes cannot hold {tf} positions")
    return struct.unpack_from(f">{tf}I", value, 8)


@dataclass(slots=True)
class Stats:
    """Documents, and per field ``[N, sum dl]``: of one bucket, of a contribution, or total."""

    docs: int = 0
    fields: dict[str, list[int]] = field(default_factory=dict)

    def add(self, other: Stats, sign: int = 1) -> None:
        self.docs += sign * other.docs
        for f, (n, total) in other.fields.items():
            mine = self.fields.setdefault(f, [0, 0])
            mine[0] += sign * n
            mine[1] += sign * total
            if mine == [0, 0]:
                del self.fields[f]

    def copy(self) -> Stats:
        return Stats(self.docs, {f: list(v) for f, v in self.fields.items()})

    def encode(self) -> bytes:
        out: bytes = msgpack.packb([self.docs, self.fields])
        return out

    @classmethod
    def decode(cls, value: bytes) -> Stats:
        try:
            docs, fields = msgpack.unpackb(value)
            out = cls(docs, {f: [n, t] for f, (n, t) in fields.items()})
        except Exception as exc:
            raise CorruptData(f"search statistics cannot be decoded: {exc}") from None
        # Exact types, never conversions: int() of a float count of 1e19 is a count no write
        # of these statistics could encode again.
        if type(out.docs) is not int or not all(
            type(f) is str and type(n) is int and type(t) is int for f, (n, t) in out.fields.items()
        ):
            raise CorruptData("search statistics are malformed (a field name or count)")
        return out

    @classmethod
    def of(cls, lens: dict[str, int]) -> Stats:
        return cls(1, {f: [1, dl] for f, dl in lens.items()})


# (op, doc, version, versions a remove read, the (field, term) pairs of an add's version)
Intent = tuple[str, bytes, bytes, list[bytes], bytes]


def encode_intents(intents: list[Intent]) -> bytes:
    out: bytes = msgpack.packb([list(i) for i in intents])
    return out


def decode_intents(value: bytes) -> list[Intent]:
    try:
        out = [
            (op, doc, version, read, words)
            for op, doc, version, read, words in msgpack.unpackb(value)
        ]
    except Exception as exc:
        raise CorruptData(f"search intents cannot be decoded: {exc}") from None
    for op, doc, version, read, words in out:
        # Exact types, never conversions: bytes(n) of an integer would allocate n bytes.
        if not (
            type(op) is str
            and type(doc) is bytes
            and type(version) is bytes
            and type(read) is list
            and all(type(v) is bytes for v in read)
            and type(words) is bytes
        ):
            raise CorruptData("search intents are malformed")
    return out
