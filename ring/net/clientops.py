"""What the sync and async cluster clients share: request arguments, results, scan paging.

No IO here: each function builds the ``args`` map of one op or turns a result into what the
embedded store's method of the same name returns, so ``ring.connect`` and ``ring.aio.connect``
validate input and shape answers exactly alike (and like ``ring.open``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ring import multikey
from ring.common import (
    MAX_KEY_BYTES,
    MAX_SCAN_PAGE,
    MAX_VALUE_BYTES,
    Versioned,
    scan_bounds,
    to_bytes,
)
from ring.errors import InvalidInput, ProtocolError

DEFAULT_PAGE = 1000
DEFAULT_TIMEOUT_S = 5.0


def _quorum(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be a positive integer, not {value!r}")
    return value


def _context(context: Any) -> bytes | None:
    if context is None:
        return None
    if isinstance(context, Versioned):
        return context.context
    if isinstance(context, bytes | bytearray | memoryview):
        return bytes(context)
    raise InvalidInput("context must be the bytes from get_versioned(...).context")


def key_of(key: Any) -> bytes:
    return to_bytes(key, "key", MAX_KEY_BYTES)


def get_args(key: Any, r: int | None) -> dict[str, Any]:
    args: dict[str, Any] = {"key": key_of(key)}
    if _quorum("r", r) is not None:
        args["r"] = r
    return args


def write_args(key: Any, value: Any, context: Any, w: int | None) -> dict[str, Any]:
    """Arguments of ``put`` (``value`` given) or ``del`` (``value`` is None)."""
    args: dict[str, Any] = {"key": key_of(key)}
    if value is not None:
        args["value"] = to_bytes(value, "value", MAX_VALUE_BYTES)
    ctx = _context(context)
    if ctx is not None:
        args["context"] = ctx
    if _quorum("w", w) is not None:
        args["w"] = w
    return args


@dataclass(slots=True)
class ManyCall:
    """The requests of one ``get_many``, ``put_many`` or ``delete_many``: one ``op`` request
    per distinct key, each with its ``args`` and its size for the window (key plus value
    bytes). ``finish`` turns one outcome per request (a result, or the key's exception) into
    the method's answer, or raises ``MultiKeyError``."""

    name: str
    op: str
    keys: list[bytes]  # as given (get_many: one answer each)
    unique: list[bytes]
    args: list[dict[str, Any]]
    sizes: list[int]

    def finish(self, outcomes: list[Any]) -> Any:
        if self.op == "getv":
            for i, result in enumerate(outcomes):
                if not isinstance(result, Exception):
                    try:
                        outcomes[i] = versioned_of(result)
                    except ProtocolError as exc:
                        outcomes[i] = exc
            return multikey.finish_get(self.keys, self.unique, outcomes, self.name)
        if self.op != "get":
            multikey.finish_write(self.name, self.unique, outcomes)
            return None
        for i, result in enumerate(outcomes):
            if result is not None and not isinstance(result, bytes | Exception):
                outcomes[i] = ProtocolError(
                    f"a get answer must be bytes or nil, not {type(result).__name__}"
                )
        return multikey.finish_get(self.keys, self.unique, outcomes)


def get_many_call(keys: Iterable[Any], r: int | None) -> ManyCall:
    extra = {} if _quorum("r", r) is None else {"r": r}
    given = multikey.check_keys(keys, "get_many", MAX_KEY_BYTES)
    unique = multikey.distinct(given)
    args = [{"key": k, **extra} for k in unique]
    return ManyCall("get_many", "get", given, unique, args, [len(k) for k in unique])


def get_versioned_many_call(keys: Iterable[Any], r: int | None) -> ManyCall:
    extra = {} if _quorum("r", r) is None else {"r": r}
    given = multikey.check_keys(keys, "get_versioned_many", MAX_KEY_BYTES)
    unique = multikey.distinct(given)
    args = [{"key": k, **extra} for k in unique]
    return ManyCall("get_versioned_many", "getv", given, unique, args, [len(k) for k in unique])


def put_many_call(items: Iterable[Any] | Mapping[Any, Any], w: int | None) -> ManyCall:
    extra = {} if _quorum("w", w) is None else {"w": w}
    pairs = multikey.check_items(items, MAX_KEY_BYTES, MAX_VALUE_BYTES)
    unique = list(pairs)
    args = [{"key": k, "value": v, **extra} for k, v in pairs.items()]
    sizes = [len(k) + len(v) for k, v in pairs.items()]
    return ManyCall("put_many", "put", unique, unique, args, sizes)


def delete_many_call(keys: Iterable[Any], w: int | None) -> ManyCall:
    extra = {} if _quorum("w", w) is None else {"w": w}
    unique = multikey.distinct(multikey.check_keys(keys, "delete_many", MAX_KEY_BYTES))
    args = [{"key": k, **extra} for k in unique]
    return ManyCall("delete_many", "del", unique, unique, args, [len(k) for k in unique])


def value_of(result: Any) -> bytes | None:
    if result is not None and not isinstance(result, bytes):
        raise ProtocolError(f"a get answer must be bytes or nil, not {type(result).__name__}")
    return result


def versioned_of(result: Any) -> Versioned:
    if not isinstance(result, list) or len(result) != 3:
        raise ProtocolError("a getv answer is [values, context, value]")
    values, context, value = result
    return Versioned(tuple(values), context or b"", value)


def check_timeout(timeout: float | None) -> float | None:
    if timeout is not None and not timeout > 0:
        raise InvalidInput(f"timeout must be a positive number of seconds, not {timeout!r}")
    return timeout


class ScanCursor:
    """Paging state of one scan: the args of the next page, and the items of each answer.

    A node answers a page with ``[items, bound]``: ``items`` flat ``[key, value, ...]`` in scan
    order, complete up to and including ``bound``, or to the end of the range when ``bound`` is
    nil. (A page may hold more or fewer items than asked: each replica returns up to ``limit``
    records, tombstones included, and their merge is cut at the first replica's last key.)
    The next page starts just after ``bound`` (reversed: ends just before it). When a node says
    a page is too large for one frame, the page size halves.
    """

    def __init__(
        self,
        prefix: Any = None,
        start: Any = None,
        stop: Any = None,
        reverse: bool = False,
        limit: int | None = None,
        page: int = DEFAULT_PAGE,
    ) -> None:
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidInput("limit must be zero or more")
        if not isinstance(page, int) or isinstance(page, bool) or not 1 <= page <= MAX_SCAN_PAGE:
            raise InvalidInput(f"page must be a whole number from 1 to {MAX_SCAN_PAGE}")
        self.lower, self.upper = scan_bounds(
            None if prefix is None else key_of(prefix),
            None if start is None else key_of(start),
            None if stop is None else key_of(stop),
        )
        self.reverse = bool(reverse)
        self.remaining = limit
        self.page = page
        self.done = limit == 0 or (
            self.lower is not None and self.upper is not None and self.lower >= self.upper
        )

    def next_args(self) -> dict[str, Any]:
        limit = self.page if self.remaining is None else min(self.page, self.remaining)
        args: dict[str, Any] = {"reverse": self.reverse, "limit": limit}
        if self.lower is not None:
            args["start"] = self.lower
        if self.upper is not None:
            args["stop"] = self.upper
        return args

    def shrink(self) -> bool:
        """After a ``too_large`` answer: halve the page; False if it cannot shrink."""
        if self.page == 1:
            return False
        self.page //= 2
        return True

    def feed(self, result: Any) -> list[tuple[bytes, bytes]]:
        if (
            not isinstance(result, list)
            or len(result) != 2
            or not isinstance(result[0], list)
            or len(result[0]) % 2
            or not (result[1] is None or isinstance(result[1], bytes))
        ):
            raise ProtocolError("a scan answer is [[key, value, ...], bound]")
        flat, bound = result
        items = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        if self.remaining is not None:
            items = items[: self.remaining]
            self.remaining -= len(items)
        if bound is None or self.remaining == 0:
            self.done = True
        elif self.reverse:
            self.upper = bound
        else:
            self.lower = bound + b"\x00"
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            self.done = True
        return items
