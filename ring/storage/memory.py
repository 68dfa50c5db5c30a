"""An in-memory backend: a dict plus a sorted key list. For tests and the simulator."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from ring.storage.base import scan_bounds


class MemoryStorage:
    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        get = self._data.get
        return [get(key) for key in keys]

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self._data:
            bisect.insort(self._keys, key)
        self._data[key] = value

    def write(
        self,
        puts: Iterable[tuple[bytes, bytes]],
        deletes: Iterable[bytes] = (),
        *,
        sync: bool = False,
    ) -> None:
        puts, deletes = list(puts), list(deletes)
        for key in deletes:
            if self._data.pop(key, None) is not None:
                del self._keys[bisect.bisect_left(self._keys, key)]
        for key, value in puts:
            self.put(key, value)

    def scan(
        self,
        prefix: bytes | None = None,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        lower, upper = scan_bounds(prefix, start, stop)
        lo = 0 if lower is None else bisect.bisect_left(self._keys, lower)
        hi = len(self._keys) if upper is None else bisect.bisect_left(self._keys, upper)
        keys = self._keys[lo:hi]
        if reverse:
            keys.reverse()
        if limit is not None:
            keys = keys[:limit]
        for key in keys:
            value = self._data.get(key)
            if value is not None:
                yield key, value

    def close(self) -> None:
        pass
