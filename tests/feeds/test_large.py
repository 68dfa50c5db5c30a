"""Large feeds walked in pages: 10,000 entries by default, 100,000 with ``RINGKV_SOAK=1``.

The feed is built with the public API (adds and appends, as users build it), walked in pages
both ways with the cursor of each page, thinned out by removals, and walked again; each page
costs one read per entry (plus the header and the next page's cursor), whatever the size.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import ring
from feeds import Feeds
from tests.feeds.harness import CountingStore

PAGE = 1000


def walk_in_pages(f: Feeds, reverse: bool) -> list[str]:
    got: list[str] = []
    cursor = None
    while True:
        page = f.page("big", cursor, limit=PAGE, reverse=reverse)
        got += [e.id for e in page.entries]
        if page.next is None:
            return got
        cursor = page.next


def check_large_feed(path: Path, n: int) -> None:
    with ring.open(str(path)) as store:
        f = Feeds(store)
        heads = [f.add("big", b"entry %d" % i) for i in range(n // 2)]
        tails = [f.append("big", b"entry %d" % i) for i in range(n - n // 2)]
        expected = heads[::-1] + tails
        assert f.count("big") == n
        assert walk_in_pages(f, reverse=False) == expected
        assert walk_in_pages(f, reverse=True) == expected[::-1]

        gone = set(expected[::7])
        for entry_id in gone:
            assert f.remove("big", entry_id)
        left = [i for i in expected if i not in gone]
        assert f.count("big") == len(left)
        assert walk_in_pages(f, reverse=False) == left  # this walk unlinks the removed ones
        assert walk_in_pages(f, reverse=True) == left[::-1]

        counting = CountingStore(store)
        middle = left[len(left) // 2]
        page = Feeds(counting).page("big", middle, limit=PAGE)
        assert [e.id for e in page.entries] == left[len(left) // 2 :][:PAGE]
        assert counting.counts == {"get_versioned": 1 + PAGE + 1}, counting.counts


def test_ten_thousand_entries_in_pages(tmp_path: Path) -> None:
    check_large_feed(tmp_path, 10_000)


@pytest.mark.soak
@pytest.mark.skipif(os.environ.get("RINGKV_SOAK") != "1", reason="set RINGKV_SOAK=1 to soak")
def test_a_hundred_thousand_entries_in_pages(tmp_path: Path) -> None:
    check_large_feed(tmp_path, 100_000)
