"""What the outside review of the cluster found, fixed in the core, each with the behaviour a
user relies on: one bad record or request fails only itself; only a replica coordinates a
write; hint acknowledgements count only from their target; scans are bounded by bytes; hints are
indexed and delivered a window at a time, and written before the client is answered; a node
that stopped uncleanly takes a new actor epoch."""

from __future__ import annotations

import random
from typing import Any

import pytest

from ring.common import MAX_SCAN_PAGE
from ring.core import messages as m
from ring.core import record as rec
from ring.core.coordinator import HINT_WINDOW, Coordinator, forward_budget
from ring.core.layout import ACTOR_KEY, DATA, HINT, META, RUNNING_KEY, hint_key
from ring.core.node import Node, NodeConfig
from ring.core.replica import SCAN_PAGE_BYTES, Replica
from ring.storage import MemoryStorage
from tests.unit.corecluster import Cluster

CORRUPT = b"\x01\x05not-a-record"


@pytest.fixture
def cluster() -> Cluster:
    c = Cluster(["a", "b", "c"])
    c.settle()
    return c


def _record(c: Cluster, node: str, key: bytes) -> rec.Record:
    raw = c.storage[node].get(DATA + key)
    assert raw is not None
    return rec.decode(raw)


# --- one bad record or request fails only itself ----------------------------------------------


def test_a_corrupt_replica_counts_as_no_answer_and_is_repaired(cluster: Cluster) -> None:
    assert cluster.request("a", "put", key=b"k", value=b"v", w=3).error is None
    cluster.storage["b"].put(DATA + b"k", CORRUPT)
    # Healthy replicas answer; the bad one is not counted...
    assert cluster.request("a", "get", key=b"k", r=2).result == b"v"
    cluster.storage["b"].put(DATA + b"k", CORRUPT)
    reply = cluster.request("a", "get", key=b"k", r=3)
    assert reply.error == "quorum" and reply.result["replied"] == 2
    # ... and the read repair rewrote its copy.
    assert _record(cluster, "b", b"k") == _record(cluster, "a", b"k")
    # Through b itself, its own bad copy is no answer either.
    cluster.storage["b"].put(DATA + b"k", CORRUPT)
    assert cluster.request("b", "get", key=b"k", r=2).result == b"v"
    cluster.run(100)
    assert _record(cluster, "b", b"k").live[0].value == b"v"
    assert cluster.nodes["a"].stats["corrupt_records"] >= 2
    logged = [e.text for n, e in cluster.logs if n == "a" and "does not decode" in e.text]
    assert len(logged) == 1  # logged once, counted every time


def test_a_write_over_a_corrupt_local_record_fails_alone_and_repairs_it(
    cluster: Cluster,
) -> None:
    assert cluster.request("a", "put", key=b"k", value=b"1", w=3).error is None
    cluster.storage["a"].put(DATA + b"k", CORRUPT)
    reply = cluster.request("a", "put", key=b"k", value=b"2")
    assert reply.error == "corrupt" and "being repaired" in reply.result
    assert cluster.request("a", "put", key=b"other", value=b"x").error is None
    cluster.run(100)  # the repair read it started has landed
    assert _record(cluster, "a", b"k").live[0].value == b"1"
    assert cluster.request("a", "put", key=b"k", value=b"2").error is None


def test_an_exception_in_one_operation_leaves_the_others_of_the_event_alone(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two reads time out in the same tick; expiring one of them raises. The other is answered
    as usual, the failed one gets an internal error, and nothing is left pending."""
    progress = Coordinator.progress_get

    def fragile(self: Any, op_id: int, op: Any, effects: list[Any], final: bool = False) -> None:
        if final and op.key == b"boom":
            raise RuntimeError("a bug")
        progress(self, op_id, op, effects, final)

    monkeypatch.setattr(Coordinator, "progress_get", fragile)
    cluster.hold("c")  # c is up but answers nothing: r=3 waits until the timeout
    boom = cluster.send("a", "get", key=b"boom", r=3)
    fine = cluster.send("a", "get", key=b"fine", r=3)
    cluster.run(600)
    assert cluster.replies[boom].error == "internal"
    assert cluster.replies[fine].error == "quorum"
    assert not cluster.nodes["a"].coordinator.ops
    assert cluster.nodes["a"].stats["errors"] == 1


def test_a_peer_message_that_raises_fails_only_its_operation(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, src: str, msg: Any, effects: list[Any]) -> None:
        raise RuntimeError("a bug in the replica path")

    monkeypatch.setattr(Replica, "on_get", broken)
    reply = cluster.request("a", "get", key=b"k", r=1)  # a answers for itself
    assert reply.error is None
    reply = cluster.request("a", "put", key=b"k", value=b"v", w=3)  # puts are untouched
    assert reply.error is None


def test_the_fast_merge_path_checks_what_it_stores() -> None:
    good = rec.encode(rec.write(rec.EMPTY, "a@1", b"v", 1))
    newer = rec.encode(rec.write(rec.decode(good), "a@1", b"w", 2))
    # A record that has seen everything stored (the path that stores it as is), but whose
    # sibling is not covered by its own context: refused, never stored.
    head = rec.decode_head(newer)
    head[2][1] = 99  # the sibling's counter, beyond the context
    import msgpack

    packed = msgpack.packb(head, use_bin_type=True)
    bad = b"\x01" + bytes([len(packed)]) + packed + b"w"
    with pytest.raises(ValueError):
        rec.merge_encoded(good, bad)
    with pytest.raises(ValueError):
        rec.merge_encoded(None, bad)
    with pytest.raises(rec.LocalCorrupt):
        rec.merge_encoded(CORRUPT, newer)
    assert rec.merge_encoded(good, newer) == newer


# --- only a replica coordinates a write -------------------------------------------------------


def _outsider(c: Cluster, key: bytes) -> tuple[tuple[str, ...], list[str]]:
    pl = c.nodes["a"].preference_list(key)
    return pl, [n for n in c.names if n not in pl]


def test_a_forward_that_reaches_a_non_replica_is_passed_on_not_coordinated() -> None:
    c = Cluster(["a", "b", "c", "d", "e"], n=2, r=1, w=2)
    c.settle()
    key = b"fwd"
    pl, outsiders = _outsider(c, key)
    x, y = outsiders[0], outsiders[1]
    args = {"key": key, "value": b"v"}
    out = c.nodes[x].handle(m.PeerMessage(y, m.Forward(7, "put", args, 0, 400)), c.now)
    [fwd] = [e for e in out if isinstance(e, m.Send)]
    assert fwd.dest in pl and isinstance(fwd.msg, m.Forward)
    assert fwd.msg.hops == 1 and fwd.msg.timeout_ms == forward_budget(400) < 400
    # A sender that claims to wait longer than this node's own timeout gets no more than that.
    out = c.nodes[x].handle(m.PeerMessage(y, m.Forward(6, "put", args, 0, 10**9)), c.now)
    [fwd] = [e for e in out if isinstance(e, m.Send)]
    assert fwd.msg.timeout_ms == 500  # the cluster's request timeout in these tests
    assert c.storage[x].get(DATA + key) is None  # x stored nothing and asked no replica
    # Passed on too often already: refused, never coordinated.
    out = c.nodes[x].handle(m.PeerMessage(y, m.Forward(8, "put", args, 1, 2000)), c.now)
    [reply] = [e.msg for e in out if isinstance(e, m.Send)]
    assert isinstance(reply, m.ForwardReply) and reply.error == "unavailable"
    assert "not a replica" in reply.result and c.storage[x].get(DATA + key) is None


def test_writes_through_any_node_reach_their_replicas_only() -> None:
    c = Cluster(["a", "b", "c", "d", "e"], n=2, r=1, w=2)
    c.settle()
    for i in range(20):
        key = b"w%d" % i
        pl, outsiders = _outsider(c, key)
        assert c.request(outsiders[i % len(outsiders)], "put", key=key, value=b"v").error is None
        assert all(c.storage[n].get(DATA + key) is None for n in outsiders)
        assert all(c.storage[n].get(DATA + key) is not None for n in pl)


def test_a_forwarded_write_is_answered_before_its_sender_gives_up() -> None:
    c = Cluster(["a", "b", "c", "d", "e"], n=2, r=1, w=2)
    c.settle()
    key = b"slow"
    (first, second), outsiders = _outsider(c, key)
    sender = outsiders[0]
    c.hold(second)  # W=2 cannot be met
    c.hold(sender)  # to see what the coordinator answers, and when
    # The sender waits 400 ms, less than the coordinator's own request timeout (500 ms).
    forward = m.Forward(9, "put", {"key": key, "value": b"v"}, 0, 400)
    c.handle(first, m.PeerMessage(sender, forward))
    start = c.now

    def answers() -> list[m.ForwardReply]:
        return [e.msg for s, e in c.held if s == first and isinstance(e.msg, m.ForwardReply)]

    while not answers() and c.now - start < 2000:
        c.run(20)
    [reply] = answers()
    assert reply.op_id == 9 and reply.error == "quorum"
    # The coordinator gave up within the sender's budget, so the sender learns the outcome.
    assert c.now - start <= forward_budget(400) + 40 < 400


# --- hint acknowledgements count only from their target --------------------------------------


def test_a_hint_acknowledgement_from_another_node_is_ignored(cluster: Cluster) -> None:
    cluster.crash("c")
    cluster.settle()
    assert cluster.request("a", "put", key=b"h", value=b"v").error is None
    assert cluster.nodes["a"].coordinator.hints.counts() == {"c": 1}
    cluster.start("c", incarnation=1)
    cluster.hold("c")
    cluster.settle()
    ops = cluster.nodes["a"].coordinator.ops

    def in_flight() -> list[Any]:
        return [
            e for s, e in cluster.held if isinstance(e.msg, m.ReplicaPut) and e.msg.op_id in ops
        ]

    for _ in range(100):  # until a delivery of the hint is in flight
        if in_flight():
            break
        cluster.run(20)
    [delivery] = in_flight()
    cluster.handle("a", m.PeerMessage("b", m.ReplicaPutAck(delivery.msg.op_id, True)))
    assert cluster.nodes["a"].coordinator.hints.counts() == {"c": 1}  # b cannot clear c's hint
    cluster.handle("a", m.PeerMessage("c", m.ReplicaPutAck(delivery.msg.op_id, True)))
    assert cluster.nodes["a"].coordinator.hints.counts() == {}


# --- scans are bounded by bytes --------------------------------------------------------------


def test_scan_pages_are_cut_by_bytes_and_page_through_large_values(cluster: Cluster) -> None:
    big = 3 * 1024 * 1024
    for i in range(5):
        assert cluster.request("a", "put", key=b"s%d" % i, value=bytes([i]) * big).error is None
    flat, more = cluster.nodes["b"].coordinator.replica.scan(
        None, None, False, 100, SCAN_PAGE_BYTES
    )
    assert len(flat) // 2 == 1 and more  # a second 3 MiB record would pass the 4 MiB budget
    keys: list[bytes] = []
    start = None
    while True:
        reply = cluster.request("c", "scan", limit=100, **({"start": start} if start else {}))
        items, bound = reply.result
        assert sum(len(v) for v in items[1::2]) <= 8 * 1024 * 1024 + big
        keys += items[0::2]
        if bound is None:
            break
        start = bound + b"\x00"
    assert keys == [b"s%d" % i for i in range(5)]


def test_a_scan_limit_above_the_maximum_is_refused(cluster: Cluster) -> None:
    reply = cluster.request("a", "scan", limit=MAX_SCAN_PAGE + 1)
    assert reply.error == "invalid" and str(MAX_SCAN_PAGE) in reply.result
    assert cluster.request("a", "scan", limit=MAX_SCAN_PAGE).error is None


# --- hints: indexed, delivered a window at a time, written before the answer -----------------


class CountingStorage(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.scans = 0

    def scan(self, *args: Any, **kwargs: Any) -> Any:
        self.scans += 1
        return super().scan(*args, **kwargs)


def test_hints_are_counted_per_target_and_delivered_without_rescanning() -> None:
    storage = CountingStorage()
    record = rec.encode(rec.write(rec.EMPTY, "x@1", b"v", 1))
    for i in range(1000):
        storage.put(hint_key("b", b"k%04d" % i), record)
    for i in range(5):
        storage.put(hint_key("c", b"k%d" % i), record)
    c = Cluster(["a", "b", "c"])
    c.settle()
    cfg = c.nodes["a"].config
    for skey, value in c.storage["a"].scan(META):  # a restart of a: the ring it belongs to
        storage.put(skey, value)
    c.storage["a"] = storage
    node = Node(cfg, storage, now_ms=c.now, rng=random.Random(2), incarnation=5)
    c.nodes["a"] = node
    c.queue += [("a", e) for e in node.start(c.now)]
    # A restart forgets the epoch each hint was routed on (unknown: given to every member of the
    # key's lists, in case the partition moved meanwhile); these were made on the current table.
    hints = node.coordinator.hints
    for skey, _ in c.storage["a"].scan(HINT):
        hints._epochs[skey] = node.ring.epoch
    c.hold("b")
    c.settle()
    assert node.status()["hints"] == {"b": 1000, "c": 5}
    scans = storage.scans
    c.run(200)
    sent = [e for s, e in c.held if s == "a" and isinstance(e.msg, m.ReplicaPut)]
    assert 0 < len(sent) <= HINT_WINDOW  # a window in flight, not all 1000
    assert storage.scans == scans  # delivery walks the index, never the hint space
    c.release("b")
    c.run(2000)
    assert node.status()["hints"] == {}


def test_a_replica_that_has_not_stored_a_write_gets_a_hint_before_the_answer(
    cluster: Cluster,
) -> None:
    cluster.hold("c")  # c is up, but its acknowledgement has not come when W=2 is met
    req = cluster.send("a", "put", key=b"k", value=b"v")
    assert cluster.replies[req].error is None
    hint = cluster.storage["a"].get(hint_key("c", b"k"))
    assert hint is not None and rec.decode(hint).live[0].value == b"v"
    cluster.release("c")  # c acknowledges after all: the hint is not needed
    assert cluster.storage["a"].get(hint_key("c", b"k")) is None
    assert not any(True for _ in cluster.storage["a"].scan(HINT))


# --- identity after an unclean stop ----------------------------------------------------------


def _start(storage: MemoryStorage, *, sync: bool = False) -> Node:
    cfg = NodeConfig(name="n", address="n:1", new_cluster=True, sync=sync)
    node = Node(cfg, storage, now_ms=0, rng=random.Random(len(storage.get(ACTOR_KEY) or b"")))
    node.start(0)
    return node


def test_an_unclean_stop_without_sync_takes_a_new_actor_epoch() -> None:
    storage = MemoryStorage()
    first = _start(storage)
    assert storage.get(RUNNING_KEY) == b"0"
    first.stop(1)
    assert storage.get(RUNNING_KEY) is None
    assert _start(storage).actor == first.actor  # a clean stop keeps it
    # ... that node was not stopped (killed, or the machine lost power):
    again = _start(storage)
    assert again.actor != first.actor and again.actor.startswith("n@")
    # With --sync every acknowledged write was on disk: the actor stays.
    synced = _start(storage, sync=True)
    assert synced.actor == again.actor
    assert _start(storage).actor == again.actor  # the synced run ended uncleanly too


def test_a_hint_for_a_key_already_hinted_merges_with_it() -> None:
    from ring.core.hints import HintStore

    store = HintStore(MemoryStorage())
    one = rec.encode(rec.write(rec.EMPTY, "x@1", b"1", 1))
    two = rec.encode(rec.write(rec.EMPTY, "y@1", b"2", 2))  # concurrent with one
    store.store_own("t", b"k", one)
    store.store_own("t", b"k", two)
    kept = store.storage.get(hint_key("t", b"k"))
    assert kept is not None and sorted(s.value for s in rec.decode(kept).live) == [b"1", b"2"]
    assert store.counts() == {"t": 1}
    store.drop("t", b"k")
    assert store.counts() == {} and store.storage.get(hint_key("t", b"k")) is None


def test_a_tombstone_with_trailing_bytes_is_corrupt_and_the_read_is_answered(
    cluster: Cluster,
) -> None:
    """``check_encoded`` and ``decode`` agree: a record ``decode`` refuses is never taken as an
    answer (it made the read raise after it was marked answered: the client never heard)."""
    assert cluster.request("a", "put", key=b"k", value=b"v", w=3).error is None
    assert cluster.request("a", "del", key=b"k", w=3).error is None
    good = cluster.storage["b"].get(DATA + b"k")
    assert good is not None
    cluster.storage["b"].put(DATA + b"k", good + b"!")
    for via in ("a", "b"):
        reply = cluster.request(via, "get", key=b"k")
        assert reply.error is None and reply.result is None
    cluster.run(100)
    assert cluster.storage["b"].get(DATA + b"k") == good  # repaired
    assert not any(node.coordinator.ops for node in cluster.nodes.values())


def test_an_answer_taken_back_by_a_failure_is_replaced_by_an_error(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read is answered, then the same piece of work raises (in its read repair): the
    answer is taken back with the rest, so the client gets an error instead of nothing."""

    def broken(self: Any, op: Any, effects: list[Any]) -> None:
        raise RuntimeError("a bug in read repair")

    monkeypatch.setattr(Coordinator, "_read_repair", broken)
    reply = cluster.request("a", "get", key=b"nothing", r=3)  # answered with the last reply
    assert reply.error == "internal"
    cluster.run(600)
    assert not cluster.nodes["a"].coordinator.ops


def test_a_corrupt_record_with_no_good_copy_anywhere_is_set_aside(cluster: Cluster) -> None:
    from ring.core.layout import QUARANTINE

    cluster.storage["a"].put(DATA + b"only", CORRUPT)  # no other replica holds the key
    reply = cluster.request("a", "put", key=b"only", value=b"v")
    assert reply.error == "corrupt"
    cluster.run(100)  # the repair read: every replica answered, none has a good copy
    assert cluster.storage["a"].get(QUARANTINE + DATA + b"only") == CORRUPT  # kept, aside
    assert cluster.request("a", "put", key=b"only", value=b"v").error is None
    assert cluster.request("b", "get", key=b"only", r=3).result == b"v"


def test_a_hint_its_target_refuses_is_set_aside_and_the_others_still_go(
    cluster: Cluster,
) -> None:
    from ring.core.layout import QUARANTINE

    cluster.crash("c")
    cluster.settle()
    hints = cluster.nodes["a"].coordinator.hints
    hints.store_own("c", b"bad", CORRUPT, cluster.nodes["a"].ring.epoch)  # c will refuse it
    assert cluster.request("a", "put", key=b"good", value=b"v").error is None
    assert hints.counts() == {"c": 2}
    cluster.start("c", incarnation=1)
    cluster.settle()
    cluster.run(1000)
    assert hints.counts() == {}
    assert cluster.storage["a"].get(QUARANTINE + hint_key("c", b"bad")) == CORRUPT
    assert _record(cluster, "c", b"good").live[0].value == b"v"
    assert cluster.nodes["a"].stats["hints_refused"] == 1
