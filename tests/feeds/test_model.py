"""A feed behaves like a Python list: a Hypothesis state machine on a real RocksDB store.

Several writers (``Feeds`` instances, one with a clock that jumps backwards) add, append and
remove; every walk — forward, backward, paged, from an entry — must equal the model, and so
must ``count``. Interrupted operations (a store that fails after k writes) are part of the
game: after one, a repair must leave the model's list, plus the interrupted add if it got as
far as writing its entry.
"""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import ring
from feeds import Feeds
from tests.feeds.harness import CountingStore, Crash, CrashingStore

FEED = "model"


class FeedMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="ringkv-feeds-model-")
        self.store = ring.open(self.dir)
        self.now = [10**12]
        self.skewed = [10**12 + 5_000_000]
        self.writers = [
            Feeds(self.store, clock=lambda: self.now[0]),
            Feeds(self.store, clock=lambda: self.skewed[0]),
        ]
        self.model: list[str] = []
        self.gone: list[str] = []

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def feeds(self, who: int) -> Feeds:
        return self.writers[who % len(self.writers)]

    @rule(who=st.integers(0, 1), data=st.binary(max_size=20))
    def add(self, who: int, data: bytes) -> None:
        entry_id = self.feeds(who).add(FEED, data)
        assert self.feeds(who).get(FEED, entry_id).data == data  # type: ignore[union-attr]
        self.model.insert(0, entry_id)

    @rule(who=st.integers(0, 1), data=st.binary(max_size=20))
    def append(self, who: int, data: bytes) -> None:
        self.model.append(self.feeds(who).append(FEED, data))

    @precondition(lambda self: self.model)
    @rule(who=st.integers(0, 1), pick=st.integers(0, 10**6))
    def remove(self, who: int, pick: int) -> None:
        entry_id = self.model.pop(pick % len(self.model))
        assert self.feeds(who).remove(FEED, entry_id) is True
        self.gone.append(entry_id)

    @precondition(lambda self: self.gone)
    @rule(pick=st.integers(0, 10**6))
    def remove_again(self, pick: int) -> None:
        assert self.writers[0].remove(FEED, self.gone[pick % len(self.gone)]) is False

    @rule(step=st.integers(-3_000_000, 3_000_000))
    def clocks_move(self, step: int) -> None:
        self.now[0] += abs(step)
        self.skewed[0] += step  # this one also jumps backwards

    @rule(op=st.sampled_from(["add", "append", "remove"]), k=st.integers(0, 2))
    def interrupted(self, op: str, k: int) -> None:
        crashing = Feeds(CrashingStore(self.store, writes_allowed=k), clock=lambda: self.now[0])
        victim = self.model[len(self.model) // 2] if self.model else None
        try:
            if op == "remove":
                if victim is None:
                    return
                crashing.remove(FEED, victim)
            else:
                getattr(crashing, op)(FEED, b"interrupted")
        except Crash:
            pass
        self.writers[0].repair(FEED)
        now = [e.id for e in self.writers[0].entries(FEED)]
        if op == "remove":
            if victim not in now:
                self.model.remove(victim)
                self.gone.append(victim)
        else:
            new = [i for i in now if i not in self.model]
            assert len(new) <= 1 and len(now) == len(self.model) + len(new)
            if new:  # it wrote its entry before the crash: repair linked it in, in its place
                self.model.insert(0, new[0]) if op == "add" else self.model.append(new[0])
        assert now == self.model

    @rule(size=st.integers(1, 7), reverse=st.booleans())
    def paged_walk(self, size: int, reverse: bool) -> None:
        got, cursor = [], None
        while True:
            page = self.writers[1].page(FEED, cursor, limit=size, reverse=reverse)
            assert len(page.entries) <= size
            got += [e.id for e in page.entries]
            if page.next is None:
                break
            cursor = page.next
        assert got == (self.model[::-1] if reverse else self.model)

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 10**6), limit=st.integers(1, 5), reverse=st.booleans())
    def walk_from_an_entry(self, pick: int, limit: int, reverse: bool) -> None:
        i = pick % len(self.model)
        got = [e.id for e in self.writers[0].entries(FEED, self.model[i], reverse, limit)]
        want = self.model[i::-1] if reverse else self.model[i:]
        assert got == want[:limit]

    @rule()
    def repair(self) -> None:
        report = self.writers[1].repair(FEED)
        assert report.entries == report.count_after == len(self.model)

    @invariant()
    def walks_and_count_match_the_model(self) -> None:
        counting = CountingStore(self.store)
        f = Feeds(counting)
        assert [e.id for e in f.entries(FEED)] == self.model
        assert [e.id for e in f.entries(FEED, reverse=True)] == self.model[::-1]
        assert f.count(FEED) == len(self.model)
        # Walking k entries costs k reads (plus the header); a walk after a walk writes nothing.
        counting.reset()
        assert [e.id for e in f.entries(FEED)] == self.model
        assert counting.counts == {"get_versioned": len(self.model) + 1}


FeedMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
test_feed_behaves_like_a_list = FeedMachine.TestCase
