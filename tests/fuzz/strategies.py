"""What the fuzzers share: their budget (short in CI, long with ``RINGKV_SOAK=1``), arbitrary
msgpack values, and mutations of valid encodings — at the byte level (bit flips, overwritten
bytes, truncation, insertions, deletions, splices of two encodings, huge length headers, deep
nesting) and at the value level (a part of the decoded value replaced by a value of another
type or shape, a huge integer, a deep nest, an element dropped or added).

Budget (``budget``): a fuzz test runs 200 examples by default, derandomized, so CI sees the same
inputs every run; 10,000 random ones with ``RINGKV_SOAK=1`` (a failure prints the
``@reproduce_failure`` blob that replays it); ``RINGKV_FUZZ_EXAMPLES=n`` random ones if set. The
costlier tests ask for fewer. Each example must finish within ``DEADLINE`` (hypothesis'
deadline: a decoder that hangs or does unbounded work on some input fails, that input shrunk).
"""

from __future__ import annotations

import ast
import functools
import os
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SOAK = os.environ.get("RINGKV_SOAK") == "1"
EXAMPLES = os.environ.get("RINGKV_FUZZ_EXAMPLES")
# Generous for one decode on a loaded 2-core machine; an unbounded decoder blows through it.
DEADLINE = timedelta(milliseconds=2000)


def budget(ci: int = 200, soak: int = 10_000, deadline: timedelta | None = DEADLINE) -> settings:
    """The settings of one fuzz test: ``ci`` examples, derandomized (CI sees the same inputs
    every run); ``soak`` random ones with ``RINGKV_SOAK=1``; ``RINGKV_FUZZ_EXAMPLES`` random
    ones if set."""
    n = int(EXAMPLES) if EXAMPLES else soak if SOAK else ci
    return settings(
        max_examples=n,
        deadline=deadline,
        derandomize=not SOAK and not EXAMPLES,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


pack = msgpack.Packer(use_bin_type=True).pack

# --- msgpack values -------------------------------------------------------------------------

# Integers at the edges of msgpack's encodings (and beyond 32 bits, where lengths overflow).
EDGE_INTS = [0, 1, -1, 127, 128, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32]
EDGE_INTS += [2**53, 2**63 - 1, 2**63, 2**64 - 1, -(2**31), -(2**63)]

ints = st.integers(-(2**63), 2**64 - 1) | st.sampled_from(EDGE_INTS)
exts = st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12))
timestamps = st.builds(msgpack.Timestamp, st.integers(0, 2**34 - 1), st.integers(0, 999_999_999))
scalars = (
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=True)
    | st.text(max_size=16)
    | st.binary(max_size=32)
    | exts
    | timestamps
)
keys = st.none() | st.booleans() | ints | st.text(max_size=8) | st.binary(max_size=8)


def values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Arbitrary msgpack-encodable values: scalars of every msgpack type, lists and maps."""
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=6) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=max_leaves,
    )


def nest(depth: int, leaf: Any = 1) -> Any:
    out = leaf
    for _ in range(depth):
        out = [out]
    return out


# --- mutations of encodings -------------------------------------------------------------------

# Headers that announce far more than follows: str32, bin32, array32, map32, ext32 and the
# 64-bit integers whose values are lengths elsewhere.
HUGE_HEADERS = [
    b"\xdb\xff\xff\xff\xff",
    b"\xc6\xff\xff\xff\xff",
    b"\xc6\x7f\xff\xff\xff",
    b"\xdd\xff\xff\xff\xff",
    b"\xdf\xff\xff\xff\xff",
    b"\xc9\xff\xff\xff\xff\x01",
    b"\xdc\xff\xff",
    b"\xde\xff\xff",
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff",
]


@st.composite
def mutate_bytes(draw: st.DrawFn, data: bytes, others: Sequence[bytes] = ()) -> bytes:
    """``data`` after one to four byte-level mutations (``others``: material for splices)."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(
                ["flip", "set", "truncate", "chop", "insert", "delete", "dup", "huge", "deep"]
                + (["splice"] if others else [])
            )
        )
        at = draw(st.integers(0, len(b)))
        if op == "flip" and b:
            i = min(at, len(b) - 1)
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and b:
            i = min(at, len(b) - 1)
            b[i] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xC1, 0xFF]) | st.integers(0, 255))
        elif op == "truncate":
            del b[at:]
        elif op == "chop":
            del b[:at]
        elif op == "insert":
            b[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del b[at : at + draw(st.integers(1, 8))]
        elif op == "dup":
            b[at:at] = b[at : at + draw(st.integers(1, 16))]
        elif op == "huge":
            header = draw(st.sampled_from(HUGE_HEADERS))
            if draw(st.booleans()):
                b[at:at] = header
            else:
                b[at : at + len(header)] = header
        elif op == "deep":
            b[at:at] = draw(st.sampled_from([b"\x91", b"\x81\x01", b"\xdc\x00\x01"])) * draw(
                st.sampled_from([50, 500, 1000, 1023, 1100, 3000])
            )
        elif op == "splice":
            other = draw(st.sampled_from(list(others)))
            b = b[:at] + bytearray(other[draw(st.integers(0, len(other))) :])
    return bytes(b)


def _paths(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths to the parts of ``obj``, down to a depth of 40 (a deep nest is one part)."""
    out = [path]
    if len(path) >= 40:
        return out
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            out += _paths(x, (*path, i))
    elif isinstance(obj, dict):
        for k, x in obj.items():
            out += _paths(x, (*path, k))
    return out


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        obj = obj[step]
    return obj


def _replaced(obj: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(obj, list):
        out = list(obj)
        out[head] = _replaced(obj[head], rest, new)
        return out
    out_d = dict(obj)
    out_d[head] = _replaced(obj[head], rest, new)
    return out_d


def _wrong_type(x: Any) -> list[Any]:
    """Values of the same meaning in another msgpack type (what a confused peer sends)."""
    if isinstance(x, bytes):
        return [x.decode("latin-1"), list(x), len(x), None]
    if isinstance(x, str):
        return [x.encode(), [x], None, 0]
    if isinstance(x, bool):
        return [int(x), str(x), None]
    if isinstance(x, int):
        return [
            bool(x),
            float(x),
            str(x),
            x.to_bytes(8, "big", signed=True) if -(2**63) <= x < 2**63 else b"",
            -x,
        ]
    if isinstance(x, list):
        return [tuple_to_map(x), b"".join(v for v in x if isinstance(v, bytes)), len(x), None]
    if isinstance(x, dict):
        return [list(x.items()), list(x), None]
    return [None, 0, b"", ""]


def tuple_to_map(x: list[Any]) -> dict[Any, Any]:
    return {i: v for i, v in enumerate(x)}


@st.composite
def mutate_value(draw: st.DrawFn, obj: Any) -> Any:
    """``obj`` (a decoded msgpack value) with one to three parts replaced or reshaped."""
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(obj)))
        node = _get(obj, path)
        op = draw(
            st.sampled_from(["any", "wrong_type", "huge_int", "deep", "drop", "add", "empty"])
        )
        if op == "any":
            new = draw(values(6))
        elif op == "wrong_type":
            new = draw(st.sampled_from(_wrong_type(node)))
        elif op == "huge_int":
            new = draw(st.sampled_from(EDGE_INTS))
        elif op == "deep":  # deeper nests come from byte-level mutations: hypothesis prints
            new = nest(draw(st.sampled_from([30, 100, 300])), node)  # values, and cannot these
        elif op == "drop" and isinstance(node, list) and node:
            new = list(node)
            del new[draw(st.integers(0, len(node) - 1))]
        elif op == "add" and isinstance(node, list):
            new = [*node, draw(values(4))]
        elif op == "add" and isinstance(node, dict):
            new = {**node, draw(keys): draw(values(4))}
        elif op == "empty":
            new = type(node)() if isinstance(node, list | dict | bytes | str) else None
        else:
            new = draw(values(4))
        obj = _replaced(obj, path, new)
    return obj


def packable(obj: Any) -> bytes | None:
    """``obj`` packed, or None where msgpack's packer refuses it (nesting over its limit)."""
    try:
        return bytes(pack(obj))
    except (ValueError, OverflowError):
        return None


def _unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, strict_map_key=False)


def mutated_encodings(
    valid: st.SearchStrategy[bytes], decode: Callable[[bytes], Any] = _unpackb
) -> st.SearchStrategy[bytes]:
    """Valid encodings, each mutated at the byte level (spliced with another) or, decoded, at
    the value level and encoded again; plus arbitrary bytes."""
    byte_level = st.tuples(valid, valid).flatmap(lambda ab: mutate_bytes(ab[0], [ab[1]]))
    value_level = (
        valid.map(decode).flatmap(mutate_value).map(packable).filter(lambda b: b is not None)
    )
    return st.one_of(
        st.binary(max_size=64),
        valid,
        byte_level,
        value_level,  # type: ignore[arg-type]
    )


# --- which exceptions are the project's own ---------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def _raise_lines(path: str) -> frozenset[int]:
    """Every line of a ``raise`` statement in the source file ``path``."""
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError):
        return frozenset()
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return frozenset(lines)


def raised_on_purpose(exc: BaseException) -> bool:
    """True when ``exc`` was raised by a ``raise`` statement in the project's own code (``ring``,
    ``feeds``, ``search``), not by Python or a library on its behalf: the difference between a
    ``ValueError("a key is bytes")`` of a check and the ``ValueError`` of an unpacking that
    found the wrong number of items."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    try:
        rel = Path(filename).resolve().relative_to(ROOT)
    except ValueError:
        return False
    if rel.parts[0] not in ("ring", "feeds", "search"):
        return False
    return tb.tb_lineno in _raise_lines(filename)
