"""The virtual clock: a heap of timed events.

Invariants:

* time only moves forward, and only when the next event is taken from the heap;
* events due at the same millisecond run in the order they were scheduled (a sequence number
  breaks ties), so a run never depends on comparing callables or on hash order;
* nothing here reads a real clock: a simulated run of minutes takes as long as its events.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any


class Scheduler:
    """A discrete-event loop over virtual milliseconds."""

    __slots__ = ("_heap", "_seq", "events", "now")

    def __init__(self, start_ms: int) -> None:
        self.now = start_ms
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.events = 0  # events run so far

    def at(self, when_ms: int, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` at virtual time ``when_ms`` (never in the past)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(when_ms, self.now), self._seq, fn, args))

    def after(self, delay_ms: int, fn: Callable[..., None], *args: Any) -> None:
        self.at(self.now + delay_ms, fn, *args)

    def run_until(self, end_ms: int, until: Callable[[], bool] | None = None) -> bool:
        """Run every event due up to ``end_ms``; the clock then reads ``end_ms``.

        With ``until``, stop early (at the time of the last event run) as soon as it is true,
        checked after each event; returns whether it became true.
        """
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= end_ms:
            when, _, fn, args = pop(heap)
            self.now = when
            self.events += 1
            fn(*args)
            if until is not None and until():
                return True
        self.now = max(self.now, end_ms)
        return until is not None and until()
