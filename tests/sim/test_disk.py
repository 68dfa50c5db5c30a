"""The simulated disk loses what ringd's storage would lose, and nothing more."""

from __future__ import annotations

import random

from ring.sim.disk import SimDisk


def test_a_crash_loses_only_what_was_not_committed() -> None:
    disk = SimDisk()
    disk.put(b"a", b"1")
    disk.commit()
    disk.put(b"b", b"2")
    disk.write((), [b"a"])
    assert disk.get(b"b") == b"2" and disk.get(b"a") is None  # reads see the buffer
    # A scan sees it too, without committing it (as GroupCommitStorage).
    assert list(disk.scan()) == [(b"b", b"2")]
    assert list(disk.committed().scan()) == [(b"a", b"1")]
    disk.crash()
    assert list(disk.scan()) == [(b"a", b"1")]


def test_a_power_loss_also_loses_a_suffix_of_what_was_not_written_back() -> None:
    lost_any = kept_some = False
    for seed in range(20):
        disk = SimDisk()
        disk.write([(b"id", b"x")], sync=True)  # written back at once
        for i in range(5):
            disk.put(b"k%d" % i, b"v")
            disk.commit()
        lost = disk.power_loss(random.Random(seed))
        keys = [k for k, _ in disk.scan()]
        assert keys == [b"id"] + [b"k%d" % i for i in range(5 - lost)]  # a prefix survives
        lost_any |= lost > 0
        kept_some |= 0 < lost < 5
    assert lost_any and kept_some


def test_with_sync_a_power_loss_loses_nothing_committed() -> None:
    disk = SimDisk(sync=True)
    for i in range(5):
        disk.put(b"k%d" % i, b"v")
        disk.commit()
    disk.put(b"late", b"v")  # not committed: lost
    assert disk.power_loss(random.Random(1)) == 0
    assert [k for k, _ in disk.scan()] == [b"k%d" % i for i in range(5)]
