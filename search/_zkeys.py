"""Sorted sets: the key layout, the order-preserving score encoding, and argument checks.

Key layout of sorted set ``Z`` (bytes; a str name is UTF-8 encoded):

* ``zset:<len(Z)>:Z:m<member>``            the member record (``search._zrecords.MemberRec``);
* ``zset:<len(Z)>:Z:i<score8><member>``    one index key per member, value empty: ``score8`` is
  the 8-byte order-preserving encoding of the score, so key order is (score, member) order;
* ``zset:<len(Z)>:Z:t<level><digits>``     a node of the count tree (``NodeRec``): the node at
  level ``l`` (0..11) for the ``OFFSETS[l]`` leading bytes ``digits`` of the *tree key* counts
  index keys by the next ``WIDTHS[l]`` bytes of theirs.

The tree key of a member is ``score8 + member[:10]`` (a shorter member padded with zero bytes):
18 bytes cut into 12 levels of widths 2,1,1,1,1,1,1 (the score: sign, exponent and top mantissa
bits at the root, then a byte a level) and 2,2,2,2,2 (the member's first 10 bytes). Padding and
cutting keep order (``a <= b`` gives ``tree_key(a) <= tree_key(b)``), so the members of one tree
key — a *bucket*: equal scores and equal first 10 member bytes — are adjacent in the index.

The length prefix keeps one set's keys from ever being a prefix range of another's.
"""

from __future__ import annotations

import math
import struct

from ring.errors import InvalidInput

MAX_NAME_BYTES = 1024
MAX_MEMBER_BYTES = 16 * 1024
SCORE_BYTES = 8
MEMBER_PREFIX = 10  # member bytes the count tree covers
WIDTHS = (2, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2)  # tree-key bytes each level counts by
LEVELS = len(WIDTHS)
OFFSETS = tuple(sum(WIDTHS[:i]) for i in range(LEVELS))
TREE_KEY_BYTES = SCORE_BYTES + MEMBER_PREFIX
assert sum(WIDTHS) == TREE_KEY_BYTES


def tree_key(score8: bytes, member: bytes) -> bytes:
    return score8 + member[:MEMBER_PREFIX].ljust(MEMBER_PREFIX, b"\0")


def tree_path(tkey: bytes) -> list[tuple[int, bytes, bytes]]:
    """``(level, digits, child)`` of every node on the path of tree key ``tkey``."""
    return [(lv, tkey[:o], tkey[o : o + w]) for lv, (o, w) in enumerate(zip(OFFSETS, WIDTHS))]


_SIGN = 1 << 63
_ALL = (1 << 64) - 1
_pack_d = struct.Struct(">d").pack
_unpack_d = struct.Struct(">d").unpack
_pack_q = struct.Struct(">Q").pack
_unpack_q = struct.Struct(">Q").unpack


def encode_score(score: float) -> bytes:
    """8 bytes whose byte order is the numeric order of ``score`` (-inf < ... < +inf; -0.0 is
    0.0). NaN has no place in the order and is refused before it gets here."""
    if score == 0.0:
        score = 0.0
    (u,) = _unpack_q(_pack_d(score))
    u = u ^ _ALL if u & _SIGN else u | _SIGN
    return _pack_q(u)


def decode_score(raw: bytes) -> float:
    (u,) = _unpack_q(raw)
    u = u ^ _SIGN if u & _SIGN else u ^ _ALL
    return _unpack_d(_pack_q(u))[0]  # type: ignore[no-any-return]


def check_score(score: object, what: str = "score") -> float:
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise InvalidInput(f"a {what} is a float or an int, not {type(score).__name__}")
    value = float(score)
    if math.isnan(value):
        raise InvalidInput(f"{what} is not a number (NaN)")
    return value


def to_name(data: object, what: str, limit: int) -> bytes:
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(f"{what} is not valid text: {exc.reason}") from None
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise InvalidInput(f"a {what} is bytes or str, not {type(data).__name__}")
    if len(data) > limit:
        raise InvalidInput(f"a {what} is at most {limit} bytes, not {len(data)}")
    return data


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key after every key that starts with ``prefix`` (``prefix`` is never all
    0xFF bytes here: every key starts with ``zset:``)."""
    p = bytearray(prefix)
    while p[-1] == 0xFF:
        p.pop()
    p[-1] += 1
    return bytes(p)


class ZKeys:
    """The store keys of one sorted set."""

    __slots__ = ("index", "members", "name", "nodes", "prefix")

    def __init__(self, name: object) -> None:
        self.name = to_name(name, "sorted set name", MAX_NAME_BYTES)
        if not self.name:
            raise InvalidInput("a sorted set name is 1 or more bytes")
        self.prefix = b"zset:%d:%s:" % (len(self.name), self.name)
        self.members = self.prefix + b"m"
        self.index = self.prefix + b"i"
        self.nodes = self.prefix + b"t"

    def member(self, member: bytes) -> bytes:
        return self.members + member

    def entry(self, score8: bytes, member: bytes) -> bytes:
        return self.index + score8 + member

    def node(self, level: int, digits: bytes) -> bytes:
        return self.nodes + bytes([level]) + digits

    def split_entry(self, key: bytes) -> tuple[bytes, bytes]:
        """(score8, member) of an index key."""
        n = len(self.index)
        return key[n : n + SCORE_BYTES], key[n + SCORE_BYTES :]

    def bucket(self, tkey: bytes) -> bytes:
        """The first index key a member of tree key ``tkey`` can have: the bucket's start."""
        return self.index + tkey[:SCORE_BYTES] + tkey[SCORE_BYTES:].rstrip(b"\0")

    def split_node(self, key: bytes) -> tuple[int, bytes]:
        n = len(self.nodes)
        return key[n], key[n + 1 :]
