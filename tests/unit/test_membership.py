"""SWIM membership: nodes wired through an in-memory network, with a virtual clock.

Every datagram goes through ``to_wire`` and msgpack and back, exactly as the shell would send it,
and no packed datagram may reach 1400 bytes. Time only moves when ``Net.step`` says so.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

import msgpack
import pytest

from ring.core.membership import (
    MAX_DATAGRAM_BYTES,
    Ack,
    Join,
    Leave,
    Member,
    Membership,
    MembershipConfig,
    Ping,
    PingReq,
    Sync,
    SyncReply,
    packed_size,
    supersedes,
)
from ring.core.messages import SendDatagram, from_wire, to_wire

STATES = ["joining", "up", "suspect", "down", "left"]
CFG = MembershipConfig()
STEP_MS = 10


def addr(name: str) -> str:
    return f"10.0.0.{int(name[1:]) + 1}:7000"


class Net:
    """Nodes by address; a FIFO of ``(dst, src, packed)``; lossless unless told otherwise."""

    def __init__(self, seed: int = 1, config: MembershipConfig = CFG) -> None:
        self.rng = random.Random(seed)
        self.config = config
        self.now = 0
        self.nodes: dict[str, Membership] = {}
        self.queue: deque[tuple[str, str, bytes]] = deque()
        self.crashed: set[str] = set()
        self.blocked: set[tuple[str, str]] = set()  # (src, dst) addresses that lose datagrams
        self.log: list[tuple[int, str, str, bytes]] = []
        self.max_size = 0
        self.kinds: dict[str, int] = {}

    def add(self, name: str, *, seeds: list[str], incarnation: int = 0) -> Membership:
        node = Membership(
            name, addr(name), incarnation=incarnation, config=self.config, now_ms=self.now
        )
        self.nodes[addr(name)] = node
        self.crashed.discard(addr(name))
        self.send(addr(name), node.join(seeds, self.now))
        self.deliver()
        return node

    def node(self, name: str) -> Membership:
        return self.nodes[addr(name)]

    def send(self, src: str, effects: list[SendDatagram]) -> None:
        for e in effects:
            assert isinstance(e, SendDatagram)
            data = msgpack.packb(to_wire(e.msg))
            assert len(data) < MAX_DATAGRAM_BYTES, (type(e.msg).__name__, len(data))
            assert packed_size(to_wire(e.msg)) == len(data)
            self.max_size = max(self.max_size, len(data))
            self.kinds[type(e.msg).__name__] = self.kinds.get(type(e.msg).__name__, 0) + 1
            self.log.append((self.now, src, e.address, data))
            self.queue.append((e.address, src, data))

    def deliver(self) -> None:
        for _ in range(100_000):
            if not self.queue:
                return
            dst, src, data = self.queue.popleft()
            if dst in self.crashed or src in self.crashed or (src, dst) in self.blocked:
                continue
            if dst not in self.nodes:
                continue
            msg = from_wire(msgpack.unpackb(data))
            self.send(dst, self.nodes[dst].handle(src, msg, self.now, self.rng))
        raise AssertionError("datagram storm")

    def step(self) -> None:
        self.now += STEP_MS
        for a in sorted(self.nodes):
            if a not in self.crashed:
                self.send(a, self.nodes[a].tick(self.now, self.rng))
        self.deliver()

    def run(self, ms: int) -> None:
        for _ in range(ms // STEP_MS):
            self.step()

    def run_until(self, done: Callable[[], bool], limit_ms: int) -> int:
        """Step until ``done()``; return the virtual ms it took, fail past ``limit_ms``."""
        start = self.now
        while not done():
            assert self.now - start <= limit_ms, f"not done after {limit_ms} ms"
            self.step()
        return self.now - start

    def live(self) -> list[Membership]:
        return [n for a, n in sorted(self.nodes.items()) if a not in self.crashed]

    def states(self, name: str) -> list[str]:
        """How every live node other than ``name`` sees ``name``."""
        out = []
        for n in self.live():
            if n.name != name:
                m = n.get(name)
                out.append("unknown" if m is None else m.state)
        return out

    def all_up(self) -> bool:
        names = sorted(n.name for n in self.live())
        return all([m.name for m in n.members() if m.state == "up"] == names for n in self.live())


def cluster(n: int, seed: int = 1, config: MembershipConfig = CFG) -> Net:
    net = Net(seed, config)
    net.add("n0", seeds=[])
    for i in range(1, n):
        net.add(f"n{i}", seeds=[addr("n0")])
    net.run_until(net.all_up, 10_000)
    return net


# --- the rules as a table ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "old", "wins"),
    [
        ((0, "suspect"), (0, "up"), True),
        ((0, "down"), (0, "suspect"), True),
        ((0, "left"), (0, "down"), True),
        ((0, "up"), (0, "suspect"), False),
        ((0, "up"), (0, "down"), False),
        ((1, "up"), (0, "suspect"), True),
        ((1, "up"), (0, "down"), True),  # a restarted node is up again
        ((0, "down"), (1, "up"), False),  # news about an older life is stale
        ((9, "up"), (0, "left"), False),  # left is final
        ((0, "left"), (9, "up"), True),
        ((0, "up"), (0, "up"), False),
    ],
)
def test_precedence(new: tuple[int, str], old: tuple[int, str], wins: bool) -> None:
    assert supersedes(new, old) is wins


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        MembershipConfig(ack_timeout_ms=300, probe_interval_ms=200)
    with pytest.raises(ValueError):
        Membership("x" * 200, "h:1")


# --- one node, by hand ---------------------------------------------------------------------------


def test_a_ping_from_a_stranger_is_answered_and_the_stranger_learned() -> None:
    node = Membership("a", "h:1")
    out = node.handle("h:9", Ping(7, "z", [["z", "h:9", 3, "up"]]), 0, random.Random(0))
    assert len(out) == 1 and out[0].address == "h:9"
    ack = out[0].msg
    assert isinstance(ack, Ack) and ack.seq == 7 and ack.src_name == "a"
    assert ["a", "h:1", 0, "up"] in ack.updates
    assert node.get("z") == Member("z", "h:9", 3, "up", 0)
    assert node.drain_changes() == [("a", None, "up"), ("z", None, "up")]
    assert node.drain_changes() == []


def test_malformed_datagrams_are_ignored() -> None:
    node = Membership("a", "h:1")
    rng = random.Random(0)
    for bad in [
        object(),
        Ping("x", "z", []),  # type: ignore[arg-type]  # a str is no seq
        Ping(1, "z", [["z", "h:9", -1, "up"], ["z", "h:9", 1, "dead"], "junk", ["y"]]),
        Leave("z", True, True),  # a bool is no incarnation
        Join("q", "", 1, {}, "h:1"),  # an empty address
    ]:
        node.handle("h:9", bad, 0, rng)
    assert [m.name for m in node.members()] == ["a"]


def test_hearing_itself_suspected_refutes_with_a_higher_incarnation() -> None:
    node = Membership("a", "h:1", incarnation=5)
    rng = random.Random(0)
    out = node.handle("h:9", Ping(1, "z", [["a", "h:1", 5, "suspect"]]), 0, rng)
    assert node.incarnation == 6 and node.is_up("a")
    assert ["a", "h:1", 6, "up"] in out[0].msg.updates
    node.handle("h:9", Ping(2, "z", [["a", "h:1", 4, "down"]]), 0, rng)  # stale: ignored
    assert node.incarnation == 6
    node.handle("h:9", Ping(3, "z", [["a", "h:1", 9, "down"]]), 0, rng)
    assert node.incarnation == 10
    node.handle("h:9", Ping(4, "z", [["a", "h:1", 10, "left"]]), 0, rng)
    assert node.is_up("a")


def test_a_ping_carries_the_targets_record_when_we_think_it_suspect() -> None:
    node = Membership("a", "h:1")
    rng = random.Random(0)
    node.handle("h:2", Ping(1, "b", [["b", "h:2", 0, "suspect"]]), 0, rng)
    for seq in range(2, 30):  # long after the rumour left the broadcast queue
        ack = node.handle("h:2", Ping(seq, "b", [["b", "h:2", 0, "up"]]), 0, rng)[0].msg
        assert ["b", "h:2", 0, "suspect"] in ack.updates  # so b can refute
    other = node.handle("h:3", Ping(30, "c", []), 0, rng)[0].msg
    assert [u[0] for u in other.updates] == ["a"]


def test_join_retries_until_another_member_is_known() -> None:
    node = Membership("a", "h:1", config=CFG)
    rng = random.Random(0)
    first = node.join(["h:1", "h:2", "h:2"], 0)
    assert [(d.address, d.msg) for d in first] == [("h:2", Join("a", "h:1", 0, {}, "h:2"))]
    assert node.tick(CFG.join_retry_ms - 1, rng) == []
    again = node.tick(CFG.join_retry_ms, rng)
    assert [d.address for d in again if isinstance(d.msg, Join)] == ["h:2"]
    node.handle("h:2", SyncReply("b", 0, 1, [["b", "h:2", 0, "up"]], 3, {}, ""), 1500, rng)
    later = node.tick(10 * CFG.join_retry_ms, rng)
    assert not [d for d in later if isinstance(d.msg, Join)]


def test_a_seed_answers_join_with_its_table() -> None:
    seed = Membership("s", "h:0")
    out = seed.handle("h:5", Join("j", "h:5", 3, {}, "h:0"), 0, random.Random(0))
    assert [d.address for d in out] == ["h:5"]
    reply = out[0].msg
    assert isinstance(reply, SyncReply) and (reply.part, reply.parts) == (0, 1)
    assert sorted(reply.members) == [["j", "h:5", 3, "joining"], ["s", "h:0", 0, "up"]]


# --- clusters ---------------------------------------------------------------------------------


def test_five_nodes_joining_through_one_seed_converge() -> None:
    net = Net(seed=3)
    net.add("n0", seeds=[])
    for i in range(1, 5):
        net.add(f"n{i}", seeds=[addr("n0")])
    took = net.run_until(net.all_up, 2_000)
    assert took <= 1_000  # measured 10-200 ms
    for n in net.live():
        assert n.ring_members() == ["n0", "n1", "n2", "n3", "n4"]
        assert [m.name for m in n.members()] == n.ring_members()


def test_joining_through_a_seed_that_starts_later() -> None:
    net = Net(seed=4)
    net.add("n1", seeds=[addr("n0")])  # the seed is not there yet: Join is lost
    net.run(1_500)
    net.add("n0", seeds=[])
    took = net.run_until(net.all_up, 3_000)
    assert took <= CFG.join_retry_ms + 500


def test_a_crashed_node_becomes_suspect_then_down_everywhere() -> None:
    net = cluster(5, seed=5)
    for node in net.live():
        node.drain_changes()
    net.crashed.add(addr("n3"))
    observers = 4
    # Each observer probes n3 within two passes of its probe list, then a probe period to fail.
    suspect_bound = (2 * observers) * CFG.probe_interval_ms + CFG.probe_interval_ms + 500
    t_suspect = net.run_until(lambda: "up" not in net.states("n3"), suspect_bound)
    down_bound = suspect_bound + CFG.suspect_timeout_ms + 500
    t_down = net.run_until(lambda: set(net.states("n3")) == {"down"}, down_bound)
    assert t_suspect <= 1_000 and t_suspect + t_down <= 2_500  # measured 0.4-0.6 s, 1.9-2.1 s
    for node in net.live():
        assert "n3" in node.ring_members()  # failure never changes ownership
        assert not node.is_alive("n3")
        changes = [c for c in node.drain_changes() if c[0] == "n3"]
        assert changes == [("n3", "up", "suspect"), ("n3", "suspect", "down")] or changes == [
            ("n3", "up", "down")  # it heard "down" before it heard "suspect"
        ]
    net.run(5_000)
    assert set(net.states("n3")) == {"down"}  # stays down; other nodes stay up
    assert all(node.is_up(o.name) for node in net.live() for o in net.live())


@pytest.mark.parametrize("both_ways", [False, True])
def test_a_node_one_peer_cannot_reach_is_not_suspected(both_ways: bool) -> None:
    net = cluster(5, seed=6)
    net.blocked.add((addr("n1"), addr("n2")))
    if both_ways:
        net.blocked.add((addr("n2"), addr("n1")))
    pingreqs = net.kinds.get("PingReq", 0)
    for _ in range(10_000 // STEP_MS):
        net.step()
        assert net.all_up()
    assert net.kinds["PingReq"] > pingreqs  # the indirect path was used


def test_a_falsely_suspected_live_node_refutes_and_stays_up() -> None:
    net = cluster(5, seed=7)
    victim = net.node("n2")
    before = victim.incarnation
    rumour = Ping(999, "n9", [["n2", addr("n2"), before, "suspect"]])
    net.send(addr("n4"), net.node("n0").handle(addr("n4"), rumour, net.now, net.rng))
    assert net.node("n0").get("n2").state == "suspect"  # type: ignore[union-attr]
    took = net.run_until(net.all_up, CFG.suspect_timeout_ms)
    assert victim.incarnation == before + 1
    assert all(n.get("n2").incarnation == before + 1 for n in net.live())  # type: ignore[union-attr]
    assert took < CFG.suspect_timeout_ms
    for n in net.live():
        assert ("n2", "suspect", "down") not in n.drain_changes()


@pytest.mark.parametrize("seeds", [True, False])
def test_a_restarted_node_with_a_higher_incarnation_is_up_again(seeds: bool) -> None:
    net = cluster(5, seed=8)
    net.crashed.add(addr("n4"))
    net.run_until(lambda: set(net.states("n4")) == {"down"}, 5_000)
    # ringd derives the new incarnation from the wall clock, so it is far above the old one.
    node = net.add("n4", seeds=[addr("n0")] if seeds else [], incarnation=1_700_000_000_000)
    # Without seeds the others find it by their occasional pings to down members.
    bound = 1_000 if seeds else CFG.down_probe_rounds * CFG.probe_interval_ms + 1_000
    took = net.run_until(net.all_up, bound)
    assert all(n.get("n4").incarnation == 1_700_000_000_000 for n in net.live())  # type: ignore[union-attr]
    assert node.ring_members() == ["n0", "n1", "n2", "n3", "n4"]
    assert took <= bound


def test_a_restart_below_the_old_incarnation_still_comes_back() -> None:
    net = cluster(3, seed=9)
    net.node("n2").handle("x:1", Ping(1, "x", [["n2", addr("n2"), 41, "down"]]), 0, net.rng)
    net.run(1_000)
    assert net.node("n2").incarnation == 42
    net.crashed.add(addr("n2"))
    net.run_until(lambda: set(net.states("n2")) == {"down"}, 5_000)
    net.add("n2", seeds=[addr("n0")], incarnation=0)  # a careless caller
    net.run_until(net.all_up, 2_000)
    assert net.node("n2").incarnation == 43


def test_permanent_leave_is_left_everywhere_and_leaves_the_ring() -> None:
    net = cluster(5, seed=10)
    leaver = net.node("n3")
    net.send(addr("n3"), leaver.leave(net.now, permanent=True))
    net.deliver()
    net.crashed.add(addr("n3"))
    assert set(net.states("n3")) == {"left"}  # at once: Leave goes to every live member
    for n in net.live():
        assert n.ring_members() == ["n0", "n1", "n2", "n4"]
        assert ("n3", "up", "left") in n.drain_changes()
    net.run(3_000)
    assert set(net.states("n3")) == {"left"} and net.all_up()


def test_graceful_leave_is_down_everywhere_at_once_and_the_node_may_return() -> None:
    net = cluster(5, seed=11)
    leaver = net.node("n1")
    inc = leaver.incarnation
    net.send(addr("n1"), leaver.leave(net.now))
    net.deliver()
    assert set(net.states("n1")) == {"down"}
    assert all("n1" in n.ring_members() for n in net.live())
    net.run(1_000)  # still answering pings while it shuts down: no refutation, no flapping
    assert set(net.states("n1")) == {"down"} and leaver.tick(net.now, net.rng) == []
    net.crashed.add(addr("n1"))
    net.run(1_000)
    net.add("n1", seeds=[addr("n0")], incarnation=inc + 1)
    net.run_until(net.all_up, 1_000)


def test_a_lost_leave_is_repaired_by_gossip() -> None:
    net = cluster(5, seed=12)
    out = net.node("n1").leave(net.now, permanent=True)
    net.send(addr("n1"), out[:1])  # only one peer hears it
    net.deliver()
    net.crashed.add(addr("n1"))
    net.run_until(lambda: set(net.states("n1")) == {"left"}, 2_000)


def test_datagrams_stay_small_with_30_members() -> None:
    names = [f"node-{i:02d}.rack-{i % 3}.dc-east" for i in range(30)]
    net = Net(seed=13)
    members = []
    for i, name in enumerate(names):
        address = f"10.200.{i}.{100 + i}:17000"
        m = Membership(name, address, incarnation=1_700_000_000_000 + i, now_ms=0)
        net.nodes[address] = m
        members.append(m)
        net.send(address, m.join([] if i == 0 else ["10.200.0.100:17000"], 0))
    net.deliver()

    def everyone_up() -> bool:
        return all(
            [x.name for x in m.members() if x.state == "up"] == sorted(names) for m in members
        )

    took = net.run_until(everyone_up, 10_000)
    assert took < CFG.sync_interval_ms  # by piggy-backing alone; measured 2.4 s
    net.run(CFG.sync_interval_ms)
    assert net.kinds["Sync"] >= 30 and "PingReq" not in net.kinds  # Net.send checked every size
    # The full table no longer fits one datagram: a sync answer comes in parts.
    reply = members[7].handle("x:1", Sync("x", 0, 1, [], 3, {}, ""), net.now, net.rng)
    assert len(reply) >= 2 and all(isinstance(d.msg, SyncReply) for d in reply)
    assert [(d.msg.part, d.msg.parts) for d in reply] == [
        (i, len(reply)) for i in range(len(reply))
    ]
    assert sorted(r[0] for d in reply for r in d.msg.members) == sorted(names)
    net.send("10.200.7.107:17000", reply)


def test_records_with_the_longest_names_still_fit() -> None:
    def long(i: int, width: int) -> str:
        return f"{i:03d}".ljust(width, "x")

    settings = {"cluster": long(997, 128), "n": 2**31, "partitions": 2**31, "vnodes": 2**31}
    node = Membership(long(999, 128), long(998, 128), incarnation=2**62, settings=settings)
    records = [[long(i, 128), long(i, 128), 2**62 + i, STATES[i % 5]] for i in range(30)]
    rng = random.Random(0)
    out = []
    for i in range(0, 30, 3):  # arrive in parts, as they would
        out += node.handle("x:1", SyncReply("x", 0, 1, records[i : i + 3], 3, settings, ""), 0, rng)
    out += node.handle("x:1", Sync("x", 0, 1, [], 3, settings, ""), 0, rng)
    out += node.handle("x:1", PingReq(1, long(1, 128), long(2, 128), long(2, 128), []), 0, rng)
    out += node.handle("x:1", Ping(2, long(3, 128), []), 0, rng)
    for t in range(0, 6_000, 50):
        out += node.tick(t, rng)
    kinds = {type(d.msg).__name__ for d in out}
    assert {"Ping", "PingReq", "Ack", "Sync", "SyncReply"} <= kinds
    sizes = [len(msgpack.packb(to_wire(d.msg))) for d in out]
    assert max(sizes) < MAX_DATAGRAM_BYTES
    assert max(sizes) > MAX_DATAGRAM_BYTES // 2  # the budget was actually binding


def test_same_seed_same_sends() -> None:
    def run(seed: int) -> list[tuple[int, str, str, bytes]]:
        net = cluster(5, seed=seed)
        net.crashed.add(addr("n2"))
        net.run(3_000)
        return net.log

    assert run(21) == run(21)
    assert run(21) != run(22)
