"""The Feeds API as a user meets it, and what each call costs in store operations."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import ring
from feeds import Entry, Feeds
from tests.feeds.harness import CountingStore


@pytest.fixture
def store() -> Iterator[ring.Store]:
    with ring.open(backend="memory") as s:
        yield s


def ids_of(items: object) -> list[str]:
    return [e.id for e in items]  # type: ignore[attr-defined]


def test_add_is_newest_first_append_is_at_the_tail(store: ring.Store) -> None:
    f = Feeds(store)
    a = f.add("news", "a")
    b = f.add("news", b"b")
    z = f.append("news", "z")
    c = f.add("news", bytearray(b"c"))
    assert [e.data for e in f.entries("news")] == [b"c", b"b", b"a", b"z"]
    assert ids_of(f.entries("news", reverse=True)) == [z, a, b, c]
    assert f.count("news") == 4
    assert f.get("news", b) == Entry(b, b"b")
    assert f.get("other", b) is None, "entries belong to their feed"


def test_unknown_feed_is_empty(store: ring.Store) -> None:
    f = Feeds(store)
    assert list(f.entries("nothing")) == []
    assert f.count("nothing") == 0
    assert f.page("nothing").entries == [] and f.page("nothing").next is None
    assert f.remove("nothing", "00" * 12) is False


def test_remove(store: ring.Store) -> None:
    f = Feeds(store)
    ids = [f.append("q", str(i)) for i in range(5)]
    assert f.remove("q", ids[2]) is True
    assert f.remove("q", ids[2]) is False, "removing twice"
    assert f.get("q", ids[2]) is None
    assert ids_of(f.entries("q")) == ids[:2] + ids[3:]
    assert ids_of(f.entries("q", reverse=True)) == (ids[:2] + ids[3:])[::-1]
    assert f.count("q") == 4
    for i in (0, 4, 1, 3):  # the ends too
        assert f.remove("q", ids[i])
    assert list(f.entries("q")) == [] and f.count("q") == 0
    new = f.add("q", "again")
    assert ids_of(f.entries("q")) == [new] and f.count("q") == 1


def test_walk_from_an_entry_and_in_pages(store: ring.Store) -> None:
    f = Feeds(store)
    ids = [f.append("p", str(i)) for i in range(10)]
    assert ids_of(f.entries("p", start=ids[4], limit=3)) == ids[4:7]
    assert ids_of(f.entries("p", start=ids[4], reverse=True)) == ids[4::-1]
    f.remove("p", ids[5])
    assert ids_of(f.entries("p", start=ids[5], limit=2)) == [ids[6], ids[7]], "from where it was"
    pages, cursor = [], None
    while True:
        page = f.page("p", cursor, limit=4)
        pages.append(ids_of(page.entries))
        if page.next is None:
            break
        cursor = page.next
    assert pages == [ids[:4], ids[4:5] + ids[6:9], ids[9:]]
    back = f.page("p", limit=3, reverse=True)
    assert ids_of(back.entries) == ids[:-4:-1] and back.next == ids[6]


def test_delete_feed(store: ring.Store) -> None:
    f = Feeds(store)
    for i in range(5):
        f.add("gone", str(i))
    f.add("kept", "x")
    assert f.delete_feed("gone") == 5
    assert list(f.entries("gone")) == [] and f.count("gone") == 0
    assert f.count("kept") == 1
    assert list(store.scan(prefix=b"feeds:4:gone")) == []


def test_feed_ids_do_not_collide(store: ring.Store) -> None:
    f = Feeds(store)
    f.add("a", "1")
    f.add("a:1:e", "2")
    f.add(b"a\xff", "3")
    assert [e.data for e in f.entries("a")] == [b"1"]
    assert [e.data for e in f.entries("a:1:e")] == [b"2"]
    assert [e.data for e in f.entries(b"a\xff")] == [b"3"]


@pytest.mark.parametrize(
    "call",
    [
        lambda f: f.add("", "x"),
        lambda f: f.add(5, "x"),
        lambda f: f.add("f", 5),
        lambda f: f.get("f", "not-an-id"),
        lambda f: f.remove("f", "12"),
        lambda f: f.entries("f", limit=-1),
        lambda f: f.page("f", limit=0),
    ],
)
def test_bad_input_is_invalid_input(store: ring.Store, call: object) -> None:
    with pytest.raises(ring.InvalidInput):
        call(Feeds(store))  # type: ignore[operator]


# --- cost -----------------------------------------------------------------------------------------


@pytest.fixture
def counted(store: ring.Store) -> tuple[Feeds, CountingStore]:
    counting = CountingStore(store)
    return Feeds(counting), counting


def test_add_append_remove_cost_at_most_five_operations(
    counted: tuple[Feeds, CountingStore],
) -> None:
    f, c = counted
    f.add("c", "first")
    assert (c.reads, c.writes) == (1, 2), "add to an empty feed: read header; entry, header"
    for i in range(50):
        c.reset()
        f.add("c", str(i))
        assert (c.reads, c.writes) == (2, 3), c.counts
        c.reset()
        f.append("c", str(i))
        assert (c.reads, c.writes) == (2, 3), c.counts
    ids = ids_of(f.entries("c"))
    for entry_id in ids[10:40:3]:
        c.reset()
        assert f.remove("c", entry_id)
        assert (c.reads, c.writes) == (2, 2), c.counts
    c.reset()
    f.get("c", ids[0])
    f.count("c")
    assert (c.reads, c.writes) == (2, 0)


def test_walking_k_entries_costs_k_reads(counted: tuple[Feeds, CountingStore]) -> None:
    f, c = counted
    for i in range(100):
        f.add("w", str(i))
    c.reset()
    assert len(list(f.entries("w"))) == 100
    assert c.counts == {"get_versioned": 101}, "the header, then one read per entry"
    c.reset()
    assert len(list(f.entries("w", reverse=True, limit=10))) == 10
    assert c.counts == {"get_versioned": 11}


def test_removed_entries_are_unlinked_by_the_next_walk(
    counted: tuple[Feeds, CountingStore],
) -> None:
    """Remove flags the entry and leaves the unlinking to the next walk that passes it: that
    walk pays one read per removed entry and two writes per run of them (the live entries on
    either side), and the walk after it is clean."""
    f, c = counted
    ids = [f.append("r", str(i)) for i in range(20)]
    gone = {*ids[5:8], ids[12]}
    for entry_id in gone:
        f.remove("r", entry_id)
    left = [i for i in ids if i not in gone]
    c.reset()
    assert ids_of(f.entries("r")) == left
    assert c.counts == {"get_versioned": 1 + 20, "put": 2 * 2}, c.counts
    c.reset()
    assert ids_of(f.entries("r", reverse=True)) == left[::-1]
    assert c.counts == {"get_versioned": 1 + 16}
    c.reset()
    f.add("r", "new")
    f.remove("r", ids[0])
    f.append("r", "tail")
    assert c.total <= 5 + 4 + 5, c.counts
