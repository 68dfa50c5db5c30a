"""Hybrid timestamps for the layers built on the key-value API (feeds, search).

A hybrid timestamp is microseconds of wall-clock time, moved past every timestamp the clock
gave before and past any timestamp the caller *observed* in the data (so a writer whose clock
is behind still orders its writes after what it read). Layers put one in the ids of what they
write, with a writer id after it, so byte order is version order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ring.errors import InvalidInput

__all__ = ["HybridClock", "wall_clock_us"]


def wall_clock_us() -> int:
    return time.time_ns() // 1000


class HybridClock:
    """Strictly increasing hybrid timestamps (thread-safe). ``limit``: timestamps must stay
    below it (ids that reserve the high values), else ``ring.InvalidInput``."""

    def __init__(self, now_us: Callable[[], int] | None = None, limit: int | None = None) -> None:
        self._now = now_us or wall_clock_us
        self._limit = limit
        self._last = 0
        self._lock = threading.Lock()

    def tick(self, observed: int = 0) -> int:
        """A timestamp later than every one this clock gave and than ``observed``."""
        with self._lock:
            hts = max(self._now(), self._last + 1, observed + 1)
            if self._limit is not None and hts >= self._limit:
                raise InvalidInput("hybrid timestamp overflow: a clock is far in the future")
            self._last = hts
            return hts
