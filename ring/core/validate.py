"""Checking what a client asks for, before a node acts on it — pure.

Every function takes the request's ``args`` map (msgpack-decoded, so of any shape) and returns
the checked value or raises :class:`RequestError`, which the node answers as a ``Reply`` with
the error's ``kind`` (``"invalid"`` here) — the client raises ``ring.InvalidInput``. Nothing
here reads storage or the view of the cluster.
"""

from __future__ import annotations

from typing import Any

from ring.common import MAX_SCAN_PAGE
from ring.core import record as rec


class RequestError(Exception):
    """A client request that cannot be served; becomes a ``Reply`` with ``kind``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def key(args: dict[str, Any], max_bytes: int) -> bytes:
    return _bytes(args, "key", max_bytes)


def value(args: dict[str, Any], max_bytes: int) -> bytes:
    return _bytes(args, "value", max_bytes)


def _bytes(args: dict[str, Any], name: str, max_bytes: int) -> bytes:
    data = args.get(name)
    if not isinstance(data, bytes):
        raise RequestError("invalid", f"{name} must be bytes")
    if len(data) > max_bytes:
        raise RequestError("invalid", f"{name} is {len(data)} bytes; the limit is {max_bytes}")
    return data


def quorum(args: dict[str, Any], name: str, default: int, n: int) -> int:
    """``r`` or ``w``: between 1 and N; ``default`` when the request does not set it."""
    q = args.get(name)
    if q is None:
        return default
    if not isinstance(q, int) or isinstance(q, bool) or not 1 <= q <= n:
        raise RequestError("invalid", f"{name} must be between 1 and N={n}")
    return q


def context(args: dict[str, Any]) -> dict[str, int] | None:
    """The causal context of a ``get_versioned``, or None for a write without one."""
    ctx = args.get("context")
    if ctx is None:
        return None
    if not isinstance(ctx, bytes):
        raise RequestError("invalid", "context must be the bytes from get_versioned")
    if not ctx:
        return {}
    try:
        return rec.decode_context(ctx)
    except ValueError as exc:
        raise RequestError("invalid", f"context is not one ringkv produced: {exc}") from None


def scan(args: dict[str, Any]) -> tuple[bytes | None, bytes | None, bool, int]:
    """``(start, stop, reverse, limit)`` of a scan page."""
    start, stop = args.get("start"), args.get("stop")
    for bound in (start, stop):
        if bound is not None and not isinstance(bound, bytes):
            raise RequestError("invalid", "scan start and stop must be bytes")
    limit = args.get("limit", 1000)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_SCAN_PAGE:
        raise RequestError("invalid", f"scan limit must be between 1 and {MAX_SCAN_PAGE}")
    return start, stop, bool(args.get("reverse", False)), limit
