"""``get_many``, ``put_many`` and ``delete_many``: what the embedded store and both cluster
clients share — input checks, the window of requests in flight, and the assembly of results.

Pure: no IO, nothing but ``ring.common`` and ``ring.errors``. The rules every implementation keeps:

* **Input is checked whole before anything is read or sent.** ``keys`` is an iterable of keys (a
  single str or bytes is refused: it would be read as one-character keys); ``items`` is an
  iterable of ``(key, value)`` pairs, or a mapping. A bad key, value or pair raises
  ``InvalidInput`` naming its position, and nothing happens.
* **Each distinct key is read or written once.** ``get_many`` gives every occurrence of a key the
  same value; ``put_many`` writes the last value given for a key (what a loop of puts leaves).
* **Every key is attempted, and no failure is dropped.** A cluster client reports the keys that
  failed together, after the others were done, in one :class:`ring.MultiKeyError`.
* **Bounded windows.** A cluster client keeps at most :data:`WINDOW` requests, and about
  :data:`WINDOW_BYTES` of keys and values, in flight (always at least one request), so a call
  of 100,000 keys neither floods a node nor holds more than a window of frames.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from ring.common import to_bytes
from ring.errors import InvalidInput, MultiKeyError

WINDOW = 128
WINDOW_BYTES = 8 * 1024 * 1024


def check_keys(keys: Iterable[Any], op: str, max_key_bytes: int) -> list[bytes]:
    """Every key of ``keys`` as bytes of at most ``max_key_bytes``, in order (duplicates
    kept)."""
    if isinstance(keys, str | bytes | bytearray | memoryview):
        raise InvalidInput(f"{op} takes an iterable of keys (a list), not a single key")
    try:
        items = list(keys)
    except TypeError:
        raise InvalidInput(f"{op} takes an iterable of keys, not {type(keys).__name__}") from None
    for i, key in enumerate(items):
        if key.__class__ is not bytes or len(key) > max_key_bytes:  # bytes as given: as is
            try:
                items[i] = to_bytes(key, "key", max_key_bytes)
            except InvalidInput as exc:
                raise InvalidInput(f"{op}: key {i}: {exc}") from None
    return items


def check_items(
    items: Iterable[Any] | Mapping[Any, Any], max_key_bytes: int, max_value_bytes: int
) -> dict[bytes, bytes]:
    """``put_many``'s pairs as ``{key: value}`` in first-occurrence order, the last value given
    for a key winning."""
    if isinstance(items, Mapping):
        items = items.items()
    elif isinstance(items, str | bytes | bytearray | memoryview):
        raise InvalidInput("put_many takes (key, value) pairs or a mapping, not a single string")
    try:
        pairs = list(items)
    except TypeError:
        raise InvalidInput(
            f"put_many takes (key, value) pairs or a mapping, not {type(items).__name__}"
        ) from None
    out: dict[bytes, bytes] = {}
    for i, pair in enumerate(pairs):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise InvalidInput(f"put_many: item {i} is not a (key, value) pair: {pair!r:.80}")
        key, value = pair
        if value is None:
            raise InvalidInput(
                f"put_many: item {i}: value must be bytes or str, not None (use delete_many)"
            )
        try:
            out[to_bytes(key, "key", max_key_bytes)] = to_bytes(value, "value", max_value_bytes)
        except InvalidInput as exc:
            raise InvalidInput(f"put_many: item {i}: {exc}") from None
    return out


def distinct(keys: list[bytes]) -> list[bytes]:
    """The keys without repeats, in first-occurrence order."""
    return list(dict.fromkeys(keys))


def failures(keys: list[bytes], outcomes: list[Any]) -> dict[bytes, Exception]:
    """The keys whose outcome is an exception, with it, in order."""
    return {k: o for k, o in zip(keys, outcomes) if isinstance(o, Exception)}


def finish_get(
    keys: list[bytes], unique: list[bytes], outcomes: list[Any], op: str = "get_many"
) -> list[Any]:
    """``get_many``'s (or ``get_versioned_many``'s) answer: one per key of ``keys``
    (``outcomes`` holds one per key of ``unique``: a value, None, or the key's exception).
    Raises MultiKeyError if any failed."""
    errors = failures(unique, outcomes)
    if not errors and len(unique) == len(keys):
        return outcomes
    found = dict(zip(unique, outcomes))
    values = [None if k in errors else found[k] for k in keys]
    if errors:
        raise MultiKeyError(op, errors, len(unique), values)
    return values


def finish_write(op: str, unique: list[bytes], outcomes: list[Any]) -> None:
    errors = failures(unique, outcomes)
    if errors:
        raise MultiKeyError(op, errors, len(unique))


class Window:
    """Which requests of a multi-key call to send next.

    ``admit`` hands out request indices in order while fewer than ``count`` are in flight and
    their ``sizes`` sum to less than ``max_bytes`` (one request is always admitted when none is
    in flight, however large); ``release`` frees a request's place once it is answered;
    ``retry`` puts requests that were in flight back at the front (a connection failed and they
    go to another node), in their original order.
    """

    def __init__(
        self, sizes: list[int], count: int = WINDOW, max_bytes: int = WINDOW_BYTES
    ) -> None:
        if count < 1:
            raise InvalidInput("a window holds at least one request")
        self.sizes = sizes
        self.count = count
        self.max_bytes = max_bytes
        self.queue: deque[int] = deque(range(len(sizes)))
        self.inflight = 0
        self.inflight_bytes = 0

    def admit(self) -> list[int]:
        out = []
        queue, sizes = self.queue, self.sizes
        while queue and self.inflight < self.count:
            size = sizes[queue[0]]
            if self.inflight and self.inflight_bytes + size > self.max_bytes:
                break
            out.append(queue.popleft())
            self.inflight += 1
            self.inflight_bytes += size
        return out

    def release(self, index: int) -> None:
        self.inflight -= 1
        self.inflight_bytes -= self.sizes[index]

    def retry(self, indices: Iterable[int]) -> None:
        back = sorted(indices)
        for index in back:
            self.release(index)
        self.queue.extendleft(reversed(back))

    @property
    def idle(self) -> bool:
        """Nothing left to send and nothing in flight."""
        return not self.queue and not self.inflight
