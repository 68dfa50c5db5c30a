"""The runtime's clock: wall-clock milliseconds that never go back and never stall."""

from __future__ import annotations

from ring.net.runtime import SteadyWallClock

MS = 1_000_000


class FakeTime:
    def __init__(self) -> None:
        self.wall = 1_700_000_000_000 * MS
        self.mono = 5_000 * MS

    def advance(self, ms: int) -> None:
        self.wall += ms * MS
        self.mono += ms * MS


def _clock(t: FakeTime) -> SteadyWallClock:
    return SteadyWallClock(lambda: t.wall, lambda: t.mono)


def test_it_reads_the_wall_clock_and_advances_with_time() -> None:
    t = FakeTime()
    clock = _clock(t)
    assert clock() == t.wall // MS
    t.advance(250)
    assert clock() == t.wall // MS


def test_a_wall_clock_set_back_does_not_stall_timers() -> None:
    t = FakeTime()
    clock = _clock(t)
    before = clock()
    t.wall -= 3_600_000 * MS  # NTP steps the clock back an hour
    t.advance(20)
    assert clock() == before + 20  # still ticking at the real rate, never backwards


def test_a_wall_clock_that_jumps_ahead_is_followed() -> None:
    t = FakeTime()
    clock = _clock(t)
    t.wall += 60_000 * MS
    assert clock() == t.wall // MS
    t.advance(5)
    assert clock() == t.wall // MS
