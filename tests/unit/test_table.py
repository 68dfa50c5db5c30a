"""The ownership table (``ring.core.table``) and the claimant's changes (``ring.core.claimant``):
partitions of keys, epochs, transfers and their switch, cleanup, leave, remove and retirement."""

from __future__ import annotations

import random
from collections import Counter

import mmh3
import pytest

from ring.core.claimant import Claimant
from ring.core.membership import Membership
from ring.core.table import Draft, Table, partition_of
from ring.core.validate import RequestError


def random_keys(count: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randint(8, 24)) for _ in range(count)]


# --- partitions of keys ---------------------------------------------------------------------


def test_every_partition_is_reachable_and_evenly_used() -> None:
    keys = random_keys(200_000)
    counts = Counter(partition_of(k, 64) for k in keys)
    assert set(counts) == set(range(64))
    fair = len(keys) / 64
    # A partition's count has a standard deviation of about sqrt(fair) ~ 56: +-10% is > 5 sigma.
    assert all(0.9 * fair < c < 1.1 * fair for c in counts.values()), counts


@pytest.mark.parametrize("partitions", [1, 3, 7, 63, 1000, 1023])
def test_partition_of_covers_the_range_for_any_count(partitions: int) -> None:
    keys = random_keys(max(2_000, partitions * 40), seed=partitions)
    assert {partition_of(k, partitions) for k in keys} == set(range(partitions))


def test_partition_of_is_stable() -> None:
    # Part of the on-disk and cluster format: changing it would strand every key.
    for key in (b"", b"a", b"user:1", b"\xff" * 10):
        assert partition_of(key, 1024) == (mmh3.hash64(key, signed=False)[0] * 1024) >> 64
        assert Table.found("a", 1024, 3).partition_of(key) == partition_of(key, 1024)


# --- the table as a value -------------------------------------------------------------------


def moving_table() -> Table:
    """a, b, c settled on 32 partitions, then d joins: a plan in progress."""
    draft = Draft(Table.of(list("abc"), 32, 3, epoch=4))
    draft.plan(list("abcd"))
    return draft.finish()


def test_a_table_travels_and_is_checked() -> None:
    t = moving_table()
    assert Table.from_wire(t.to_wire()) == t
    for bad in (None, [], [9, *t.to_wire()[1:]], t.to_wire()[:-1], ["x"] * 14):
        with pytest.raises(ValueError):
            Table.from_wire(bad)
    wire = t.to_wire()
    wire[6] = wire[6][:-1]  # one list short
    with pytest.raises(ValueError, match="one list per partition"):
        Table.from_wire(wire)
    # A peer's table is refused whole when any part of it is out of shape.
    for field, bad in (
        (6, [[-1, 0, 1], *t.to_wire()[6][1:]]),  # a negative member number
        (6, [[0, 0, 1], *t.to_wire()[6][1:]]),  # a member twice in a list
        (6, [[], *t.to_wire()[6][1:]]),  # a partition without owners
        (7, [t.epoch + 1, *t.to_wire()[7][1:]]),  # changed after the table's epoch
        (8, [[10_000, [0, 1, 2]]]),  # a pending partition outside the ring
        (5, "abcd"),  # names that are not a list
    ):
        wire = t.to_wire()
        wire[field] = bad
        with pytest.raises(ValueError):
            Table.from_wire(wire)


def test_a_new_table_is_balanced_and_settled() -> None:
    t = Table.of(["c", "a", "b", "d"], 64, 3, epoch=7)
    assert t.members() == ("a", "b", "c", "d") and t.claimant == "a" and t.epoch == 7
    assert set(t.load().values()) == {48} and not t.transfers_pending()
    assert all(len(set(lst)) == 3 for lst in t.owners)
    assert all(t.write_list(p) == t.read_list(p) == t.owners[p] for p in range(64))


# --- a join: plan, copy, switch, clean up ---------------------------------------------------


def test_a_join_moves_a_share_and_routes_writes_to_both_lists_until_the_switch() -> None:
    before = Table.of(list("abc"), 32, 3, epoch=4)
    t = moving_table()
    assert t.epoch == 5
    moving = sorted(t.pending)
    assert moving and sum(len(t.receivers(p)) for p in moving) == 24  # 32 * 3 / 4
    for p in range(32):
        if p in t.pending:
            assert t.receivers(p) == ("d",)
            assert t.read_list(p) == before.owners[p] == t.owners[p]  # reads: the old owners
            assert set(t.write_list(p)) == set(t.owners[p]) | {"d"}  # writes: both lists
            assert t.write_groups(p) == (t.owners[p], t.pending[p])
            (source,) = t.sources(p, "d")  # the member d replaces
            assert source in t.owners[p] and source not in t.pending[p]
            assert t.changed[p] == 5 and t.stale(p, 4) and not t.stale(p, 5)
        else:
            assert t.changed[p] == 4 and not t.stale(p, 4)  # a request routed at 4 still holds
    inbound = t.inbound("d")
    assert sum(len(ps) for ps in inbound.values()) == len(moving)
    # The switch of a partition waits for its receiver; then the member it replaced cleans up.
    draft = Draft(t)
    p = moving[0]
    assert not draft.complete(p, "d", 4)  # reported on a table older than the plan: ignored
    assert draft.complete(p, "d", 5) and not draft.complete(p, "d", 5)
    t2 = draft.finish()
    (gone_from_p,) = t.sources(p, "d")
    assert p not in t2.pending and "d" in t2.owners[p] and t2.changed[p] == 6
    # Switched: reads go to the new owners; the old ones still get every write (W in their list
    # too) until each has this table, since a node that has not taken it may still read them.
    assert t2.read_list(p) == t.pending[p] and t2.retiring[p] == t.owners[p]
    assert set(t2.write_list(p)) == set(t.owners[p]) | {"d"}
    assert t2.write_groups(p) == (t.pending[p], t.owners[p])
    assert not t2.to_clean(gone_from_p)  # it keeps its copy meanwhile
    draft = Draft(t2)
    assert draft.retire_old(p)
    t3 = draft.finish()
    assert p not in t3.retiring and t3.write_list(p) == t3.owners[p] and t3.changed[p] == 7
    assert t3.cleanup[p] == (gone_from_p,) and t3.to_clean(gone_from_p) == {p}
    assert t3.transfers_pending() == len(moving)  # the others move, p waits for its cleanup
    draft = Draft(t3)
    assert draft.cleaned(p, gone_from_p)
    for q in moving[1:]:
        draft.complete(q, "d", 7)
        draft.retire_old(q)
    t4 = draft.finish()
    for q in moving[1:]:
        draft = Draft(t4)
        (holder,) = t4.cleanup[q]
        draft.cleaned(q, holder)
        t4 = draft.finish()
    assert not t4.transfers_pending() and set(t4.load().values()) == {24}


def test_a_change_during_a_change_is_merged_into_one_plan() -> None:
    t = moving_table()
    draft = Draft(t)
    first = sorted(t.pending)[0]
    draft.complete(first, "d", t.epoch)  # d copied one partition
    t2 = draft.finish()
    draft = Draft(t2)
    draft.plan(list("abcde"))  # e joins while d's transfers run
    t3 = draft.finish()
    assert set(t3.target_members()) == set("abcde")
    # Nothing switched without its copy: d owns only what it copied, e nothing yet.
    assert [p for p in range(32) if "d" in t3.owners[p]] == [first]
    assert all("e" not in lst for lst in t3.owners)
    # A partition whose plan is unchanged keeps what d copied; the claim moves towards five.
    if first in t3.pending and t3.pending[first] == t2.pending.get(first):
        assert t3.changed[first] == t2.changed[first]
    loads = Counter(x for p in range(32) for x in t3.pending.get(p, t3.owners[p]))
    assert max(loads.values()) - min(loads.values()) <= 1


def test_a_receiver_the_next_plan_drops_deletes_what_it_copied() -> None:
    t = moving_table()
    p = sorted(t.pending)[0]
    draft = Draft(t)
    draft.plan(list("abc"))  # d is called off before it finished
    t2 = draft.finish()
    assert p not in t2.pending and set(t2.owners[p]) == set(t.owners[p])
    assert "d" in t2.cleanup[p]  # it may hold part of the partition


# --- leave, remove, retirement ----------------------------------------------------------------


def membership(name: str, *up: str, down: tuple[str, ...] = ()) -> Membership:
    ms = Membership(name, f"{name}:1")
    for x in up:
        ms._merge([[x, f"{x}:1", 1, "up"]], 0)
    for x in down:
        ms._merge([[x, f"{x}:1", 1, "down"]], 0)
    return ms


def test_a_leave_hands_off_then_retires_the_member() -> None:
    t = Table.of(list("abcd"), 16, 3)
    new, result = Claimant("a").change("leave", "d", t, membership("a", "b", "c", "d"), t.epoch)
    assert result["moves"] == t.load()["d"] and result["members"] == ["a", "b", "c"]
    assert new.leaving == ("d",) and new.epoch == t.epoch + 1 and "warning" not in result
    for p in new.pending:
        assert new.sources(p, new.receivers(p)[0]) == ("d",)  # it hands its own data over
    draft = Draft(new)
    for p in sorted(new.pending):
        draft.complete(p, new.receivers(p)[0], new.epoch)
    assert draft.retire() == []  # it still gets writes for the partitions it held
    for p in sorted(new.pending):
        draft.retire_old(p)
    assert draft.retire() == []  # it still has copies to delete
    for p in sorted(new.pending):
        draft.cleaned(p, "d")
    assert draft.retire() == ["d"]
    done = draft.finish()
    assert done.gone == ("d",) and "d" not in done.members() and not done.transfers_pending()


def test_a_remove_rebuilds_from_the_survivors_and_never_waits_for_the_dead() -> None:
    t = Table.of(list("abcd"), 16, 3)
    ms = membership("a", "b", "c", down=("d",))
    claimant = Claimant("a")
    new, _ = claimant.change("remove", "d", t, ms, t.epoch)
    assert new.removed == ("d",)
    for p in new.pending:
        (r,) = new.receivers(p)
        assert set(new.sources(p, r)) == set(t.owners[p]) - {"d", r}  # every survivor
    draft = Draft(new)
    for p in sorted(new.pending):
        draft.complete(p, new.receivers(p)[0], new.epoch)
    assert all("d" not in lst for lst in draft.cleanup.values())  # the dead delete nothing
    assert draft.retire() == ["d"]


def test_changes_are_checked_and_only_the_claimant_makes_them() -> None:
    t = Table.of(list("abcd"), 16, 3)
    ms = membership("a", "b", "c", "d")
    with pytest.raises(RequestError, match="not a member"):
        Claimant("a").change("leave", "zz", t, ms, t.epoch)
    with pytest.raises(RequestError, match="alive") as err:
        Claimant("a").change("remove", "d", t, ms, t.epoch)
    assert err.value.kind == "invalid"
    with pytest.raises(RequestError, match="a makes ring changes") as err:
        Claimant("b").change("leave", "d", t, ms, t.epoch)
    assert err.value.kind == "unavailable"
    # The claimant is gone for good: another member may remove it and take the role, but only
    # with the newest table it has heard of.
    dead = membership("b", "c", "d", down=("a",))
    with pytest.raises(RequestError, match="behind"):
        Claimant("b").change("remove", "a", t, dead, t.epoch + 3)
    new, _ = Claimant("b").change("remove", "a", t, dead, t.epoch)
    assert new.claimant == "b" and new.removed == ("a",)
    small = Table.of(list("ab"), 16, 3)
    _, result = Claimant("a").change("leave", "b", small, membership("a", "b"), small.epoch)
    assert "fewer than N=3" in result["warning"]
    alone = Table.of(["a"], 16, 3)
    with pytest.raises(RequestError, match="last member"):
        Claimant("a").change("leave", "a", alone, membership("a"), alone.epoch)


def test_a_claimant_that_leaves_hands_the_role_on() -> None:
    t = Table.of(list("abcd"), 16, 3)
    new, _ = Claimant("a").change("leave", "a", t, membership("a", "b", "c", "d"), t.epoch)
    assert new.claimant == "a"  # it makes the changes until it has handed everything off
    draft = Draft(new)
    for p in sorted(new.pending):
        draft.complete(p, new.receivers(p)[0], new.epoch)
        draft.retire_old(p)
    for p in sorted(draft.cleanup):
        draft.cleaned(p, "a")
    c = Claimant("a")
    c.transfer_done("x", 0, [])
    final = c.tick(10**6, draft.finish(), membership("a", "b", "c", "d"))
    assert final is not None and final.gone == ("a",) and final.claimant == "b"


# --- a request routed on an old table --------------------------------------------------------


def test_a_read_answered_stale_after_the_coordinator_took_the_new_table_is_retried() -> None:
    """b coordinates a read on an old table; by the time its replicas answer ``Stale`` it has
    taken the cluster's last table (no newer one will come): it retries at once, on that table.
    (It used to wait for a newer table and time out with 0 replies.)"""
    from tests.unit.corecluster import Cluster

    c = Cluster(["a", "b", "c", "d", "e"])
    c.settle()
    for i in range(200):
        assert c.request("a", "put", key=b"k%d" % i, value=b"x" * 100, w=3).error is None
    assert c.request("a", "leave", name="c").error is None
    c.hold("d")  # d cannot copy yet: the partitions it receives do not switch
    t = c.nodes["a"].ring
    key = next(
        k
        for k in (b"k%d" % i for i in range(200))
        if (p := t.partition_of(k)) in t.pending
        and "d" in t.receivers(p)
        and "b" not in t.owners[p] + t.pending[p]
    )

    def b_copying() -> bool:
        table = c.nodes["a"].ring
        todo = [q for q in table.pending if "b" in table.receivers(q)]
        return bool(c.nodes["b"].handoff.streams) or any(
            "b" not in table.done.get(q, ()) for q in todo
        )

    while b_copying():
        c.run(20)
    c.hold("b")  # b misses the tables that switch the key's partition
    c.release("d")
    waited = 0
    while c.nodes["a"].ring.pending:  # every partition switched (old lists retire once b has it)
        assert waited < 20_000
        c.run(20)
        waited += 20
    c.run(500)
    assert c.nodes["b"].ring.epoch < c.nodes["a"].ring.epoch
    req = c.send("b", "get", key=key, r=2)
    c.run(40)
    c.release("b")
    waited = 0
    while req not in c.replies:
        assert waited < 3000, "no answer"
        c.run(20)
        waited += 20
    assert c.replies[req].error is None and c.replies[req].result == b"x" * 100


def test_a_read_on_the_old_table_sees_a_write_acknowledged_on_the_new_one() -> None:
    """The moment a partition switches to its new owners, nodes that have not taken that table
    still read from the old ones: so the old owners keep getting writes (W in their list too)
    until each has it. Here b and c do not get the table that switches c's partitions to d: a
    write on the new table is then not acknowledged without them, and a read through c on the
    old table sees every write that was."""
    from ring.core import messages as m
    from ring.storage import MemoryStorage
    from tests.unit.corecluster import Cluster

    c = Cluster(["a", "b", "c"])
    c.settle()

    def switched(t: Table) -> bool:
        return any("d" in own and "c" not in own for own in t.owners)

    for name in ("b", "c"):
        node = c.nodes[name]
        handle = node.handle

        def lose_switch(event: object, now: int, handle: object = handle) -> list[object]:
            msg = getattr(event, "msg", None)
            if isinstance(msg, m.TableUpdate) and switched(Table.from_wire(msg.table)):
                return []
            return handle(event, now)  # type: ignore[operator,no-any-return]

        node.handle = lose_switch  # type: ignore[method-assign]
    c.names.append("d")
    c.storage["d"] = MemoryStorage()
    c.start("d")
    for _ in range(300):
        c.run(100)
        if switched(c.nodes["a"].ring):
            break
    ta, tc = c.nodes["a"].ring, c.nodes["c"].ring
    p = next(
        p
        for p in range(ta.partitions)
        if set(ta.owners[p]) == {"a", "b", "d"} and set(tc.owners[p]) == {"a", "b", "c"}
    )
    key = next(k for k in (b"k%d" % i for i in range(10_000)) if ta.partition_of(k) == p)
    put = c.request("a", "put", key=key, value=b"v1")
    got = c.request("c", "get", key=key)
    assert put.error is not None or got.result == b"v1", (put, got)
