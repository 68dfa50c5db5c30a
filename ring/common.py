"""What the embedded store and the network clients share: the ``Versioned`` answer, input
conversion with its size limits, and the folding of scan bounds.

This module sits below both ``ring.embedded`` (with its storage engine) and the cluster clients
(``ring.client``, ``ring.aio``, ``ring.net.clientops``), so that a client imports neither the
embedded store nor rocksdict. It is pure: no IO, no clock, nothing but ``ring.errors``.
``tests/unit/test_layers.py`` keeps it so.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ring.errors import InvalidInput

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "Versioned",
    "prefix_end",
    "scan_bounds",
    "to_bytes",
]

# The default limits of ``ring.open`` and the limits every cluster client checks before sending.
MAX_KEY_BYTES = 64 * 1024
MAX_VALUE_BYTES = 16 * 1024 * 1024
MAX_SCAN_PAGE = 10_000  # items a cluster scan page may ask for (nodes refuse more)


@dataclass(frozen=True, slots=True)
class Versioned:
    """Every live sibling of a key plus the opaque causal context to write back with.

    ``values`` is empty when the key is absent or deleted. Pass ``context`` to ``put`` or
    ``delete`` to supersede exactly the versions seen here.
    """

    values: tuple[bytes, ...]
    context: bytes
    value: bytes | None = None

    def __bool__(self) -> bool:
        return bool(self.values)


def to_bytes(data: Any, what: str, limit: int) -> bytes:
    """``data`` (bytes, str as UTF-8, or bytes-like) as bytes of at most ``limit`` bytes; anything
    else raises :class:`ring.InvalidInput` naming ``what`` ("key", "value")."""
    if isinstance(data, bytes):
        out = data
    elif isinstance(data, str):
        try:
            out = data.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates have no UTF-8 form
            raise InvalidInput(f"{what} is not valid text: {exc.reason}") from None
    elif isinstance(data, bytearray | memoryview):
        out = bytes(data)
    else:
        raise InvalidInput(f"{what} must be bytes or str, not {type(data).__name__}")
    if len(out) > limit:
        raise InvalidInput(f"{what} is {len(out)} bytes; the limit is {limit} bytes")
    return out


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key that starts with ``prefix`` (None: no bound)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)


def scan_bounds(
    prefix: bytes | None, start: bytes | None, stop: bytes | None
) -> tuple[bytes | None, bytes | None]:
    """Fold a prefix and start/stop into one ``[lower, upper)`` range."""
    lower, upper = start, stop
    if prefix:
        if lower is None or lower < prefix:
            lower = prefix
        end = prefix_end(prefix)
        if end is not None and (upper is None or upper > end):
            upper = end
    return lower, upper


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 64
_SHORT.maxlevel = 3


def settings_mismatch(ours: dict[str, Any], theirs: dict[str, Any], us: str, them: str) -> str:
    """Why two nodes' shared settings disagree ("" when they agree), naming both values. The
    other side's settings come off the wire: whatever their keys and however deep their values,
    they are described in bounded reprs."""
    out = []
    for key in sorted(set(ours) | set(theirs), key=repr):
        a, b = ours.get(key), theirs.get(key)
        if a != b:
            name = key if isinstance(key, str) and len(key) <= 64 else _SHORT.repr(key)
            out.append(f"{name} is {_SHORT.repr(a)} on {us} but {_SHORT.repr(b)} on {them}")
    return "; ".join(out)


class KVStore(Protocol):
    """The part of the key-value API the layers built on it (feeds, search) use: ``ring.open()``
    and ``ring.connect()`` both provide it."""

    def get(self, key: Any) -> bytes | None: ...

    def get_versioned(self, key: Any) -> Versioned: ...

    def put(self, key: Any, value: Any, context: Any = None) -> None: ...

    def delete(self, key: Any, context: Any = None) -> None: ...

    def scan(
        self,
        prefix: Any = None,
        start: Any = None,
        stop: Any = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, bytes]]: ...
