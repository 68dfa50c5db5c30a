"""Active anti-entropy and tombstone reaping — pure.

**Trees.** For every partition a node keeps ``SEGMENTS`` segment hashes in memory: a key falls in
one segment of its partition (both from one hash of the key), and a segment's hash is the XOR of
``record_hash(key, record)`` over its keys — a hash of the key and the record's head (its causal
context and sibling dots, not the resolved value). The partition's root is the XOR of its
segments. XOR makes every update O(1): a write of a key XORs out the old record's hash and XORs
in the new one's (``Trees.update``, called for every change of a stored record, whichever path
made it: a coordinated write, a replica write, read repair, hint delivery, handoff, an exchange,
a cleanup or a reap), so a tree never needs a rebuild to stay current. Trees live in memory: they
are built in the background from the disk when a node starts (no exchange until then) and
rebuilt on a schedule (``rebuild_ms``), which catches what the disk changed behind the node's
back; a record changed meanwhile updates the new tree too once the build has passed its key.

**Exchanges.** Every ``interval_ms`` a node compares, with each co-replica (a member that owns a
partition with it), the roots of every partition they both own (``AaeRoots``). The peer answers
which roots differ and, for at most ``MAX_DIFF_PARTS`` of them, its segment hashes
(``AaeRootsReply``); the differing partitions it did not narrow go first in the next exchange
with that peer, which starts at once. The node then knows the differing segments and reconciles
their records both ways with the normal merge (``reconcile``; nothing is overwritten):

1. *pull*: it streams the peer's records of those segments — the same ``HandoffRequest`` /
   ``HandoffPage`` stream that moves partitions when the ring changes, with a segment filter —
   and merges each one;
2. *push*: it walks its own records of those segments and sends the peer (``AaePush``, merged
   there) every one whose hash differs from what the peer had: the differing segments are
   narrowed to the keys that differ.

A partition only one side holds anything of is pulled, or pushed, whole, without keeping the
other side's hashes. Pages of both directions are throttled to the handoff rate, and a push looks
at a bounded number of keys per tick. One exchange runs with each peer at a time; a step not
answered in ``STEP_TIMEOUT_MS`` ends it (the next one starts over).

**Reaping.** A tombstone (a record with no live sibling) is removed once every replica of its
partition holds it and ``grace_ms`` passed since it reached this node (by this node's clock;
for a tombstone found on disk when a node starts, since the delete). Each segment remembers the
counter of its last change, each comparison the counter at which its roots were sent: a
tombstone is a candidate when its segment compared equal with every other owner and has not
changed since. Only the partition's first owner reaps, only when its routing is settled (no
transfer, retirement or cleanup) and only when every member is up. It asks every member
(``ReapCheck``): an owner confirms it holds the same tombstone (same hash), any other member
that it holds no copy, and every member that it keeps no hint of the key (a fallback's hint of
an older value, handed on after the reap, would bring it back); each answers after a synced
write, so a confirmation survives a power loss. With every confirmation in, under the same
table, it deletes its copy and tells the other owners (``Reap``), who delete theirs if it is
still the same tombstone. A lost ``Reap`` only leaves a tombstone that anti-entropy copies back
and a later round reaps. Deleting through ``delete`` raises the node's counter floor
(``Node``), so a later write of the key never reuses a counter a replica that missed the reap
still remembers.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mmh3

from ring.core import messages as m
from ring.core import record as rec
from ring.core.layout import DATA, META, Storage
from ring.core.table import Table

SEGMENTS = 256  # segments per partition (a power of two)
MAX_DIFF_PARTS = 256  # partitions whose segments one exchange narrows, at most
BUILD_KEYS_PER_TICK = 2_000  # records a tree build reads per tick
PUSH_BYTES = 1024 * 1024  # about this much per push message
PUSH_KEYS_PER_TICK = 10_000  # keys a push looks at per tick, at most
PULL_BYTES = 1024 * 1024  # the page size asked for when pulling
STEP_TIMEOUT_MS = 5_000  # an exchange step not answered by then ends the exchange
REAP_PER_TICK = 500  # tombstones reaped per round, at most
REAP_LOOK_PER_TICK = 20_000  # tombstones looked at per round, about
REAP_CHECK_MS = 500  # how often a node looks for tombstones to reap
LOG_EVERY_MS = 60_000  # repairs and reaps are logged in aggregate at most this often

REAP_SYNC_KEY = META + b"reapcheck"  # written with sync before a ReapCheck is answered

_BIG = sys.byteorder == "big"
_ZERO = bytes(8 * SEGMENTS)
ALL_SEGMENTS = frozenset(range(SEGMENTS))

Send = Callable[[str, Any, list[m.Effect]], None]
Merge = Callable[[bytes, bytes, list[m.Effect]], bool]
Delete = Callable[[list[tuple[bytes, bytes]]], None]


def place(key: bytes, partitions: int) -> tuple[int, int]:
    """``(partition, segment)`` of a user key, from one hash (the partition is
    ``table.partition_of``)."""
    h0, h1 = mmh3.hash64(key, signed=False)
    return (h0 * partitions) >> 64, h1 & (SEGMENTS - 1)


def record_hash(key: bytes, raw: bytes) -> int:
    """The hash a stored record adds to its segment: the key and the record's head (context,
    dots, timestamps, tombstones), not its resolved value. Bytes that do not parse as a record
    hash whole (they differ from any good copy)."""
    n = raw[1] if len(raw) > 2 else 0
    head = raw[2 : 2 + n] if n != 255 and 2 + n <= len(raw) else raw
    return mmh3.hash64(key + b"\x00" + head, signed=False)[0] or 1


def tombstone_ts(raw: bytes) -> int | None:
    """The time of the newest delete of a record that holds no live sibling; None for a live
    record (or one that does not decode)."""
    if not raw or raw[0] != 0:
        return None
    try:
        sibs = rec.decode_head(raw)[2]
    except ValueError:
        return None
    stamps = [t for t in sibs[2::4] if type(t) is int]
    return max(stamps) if stamps else None


def _pack(a: array) -> bytes:  # type: ignore[type-arg]
    if _BIG:
        a = array("Q", a)
        a.byteswap()
    return a.tobytes()


def _unpack(data: bytes) -> array | None:  # type: ignore[type-arg]
    if not isinstance(data, bytes) or len(data) != 8 * SEGMENTS:
        return None
    a = array("Q")
    a.frombytes(data)
    if _BIG:
        a.byteswap()
    return a


def segment_bits(segs: Iterable[int]) -> bytes:
    out = bytearray(SEGMENTS // 8)
    for s in segs:
        out[s >> 3] |= 1 << (s & 7)
    return bytes(out)


def bits_segments(data: Any) -> frozenset[int] | None:
    """A segment filter from the wire: ``b""`` is the whole partition (None)."""
    if not isinstance(data, bytes) or not data:
        return None
    return frozenset(i for i in range(min(len(data) * 8, SEGMENTS)) if data[i >> 3] >> (i & 7) & 1)


Filter = Mapping[int, frozenset[int] | None]  # partition -> its segments (None: all of them)


def page(
    storage: Storage, filt: Filter, partitions: int, after: bytes | None, max_bytes: int,
    keys_per_page: int,
) -> tuple[list[Any], bytes | None, bool]:  # fmt: skip
    """One page of a node's records of the partitions (and segments) of ``filt``, in key order
    after ``after``: ``([key, record, ...], cursor, finished)``. Handoff and anti-entropy both
    stream with it. Keys are stored by user key, so a page looks at up to ``keys_per_page``
    keys and keeps those of ``filt``."""
    start = DATA if after is None else DATA + after + b"\x00"
    flat: list[Any] = []
    size = looked = 0
    last: bytes | None = after
    for skey, raw in storage.scan(DATA, start, None, False, keys_per_page):
        key = skey[1:]
        looked += 1
        last = key
        p, s = place(key, partitions)
        if p in filt:
            segs = filt[p]
            if segs is None or s in segs:
                flat += (key, raw)
                size += len(key) + len(raw)
                if size >= max_bytes:
                    return flat, last, False
    return flat, last, looked < keys_per_page


# --- trees -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tree:
    segs: list[array]  # type: ignore[type-arg]
    roots: array  # type: ignore[type-arg]
    tombs: list[dict[bytes, int]]  # per partition: tombstone key -> time of its newest delete

    @classmethod
    def empty(cls, partitions: int) -> _Tree:
        return cls(
            [array("Q", _ZERO) for _ in range(partitions)],
            array("Q", bytes(8 * partitions)),
            [{} for _ in range(partitions)],
        )

    def apply(self, p: int, s: int, x: int, key: bytes, new: bytes | None, now_ms: int) -> None:
        self.segs[p][s] ^= x
        self.roots[p] ^= x
        ts = None if new is None else tombstone_ts(new)
        if ts is None:
            self.tombs[p].pop(key, None)
        else:
            # The grace runs from when the tombstone reached this node (by this node's clock, so
            # clock skew between nodes does not shorten or stretch it); for one the first build
            # after a start finds on disk, from the delete (or the build, if earlier). A
            # negative ``now_ms`` says it is such a build.
            self.tombs[p][key] = now_ms if now_ms >= 0 else min(ts, -now_ms)


class Trees:
    """The segment hashes of every partition of one node, kept current with its disk."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.current: _Tree | None = None  # None until the first build ends
        self.build: _Tree | None = None
        self.build_after: bytes | None = None  # the last key the build has read
        self.built = 0  # builds finished
        # The change counter, and for each segment the counter of its last change.
        self.counter = 0
        self.versions = [array("Q", _ZERO) for _ in range(partitions)]
        self.now_ms = 0  # the time of the event being handled (the node sets it)

    @property
    def ready(self) -> bool:
        return self.current is not None

    def update(self, key: bytes, old: bytes | None, new: bytes | None) -> None:
        """A stored record changed from ``old`` to ``new`` (None: absent)."""
        p, s = place(key, self.partitions)
        self.counter += 1
        self.versions[p][s] = self.counter
        x = (0 if old is None else record_hash(key, old)) ^ (
            0 if new is None else record_hash(key, new)
        )
        if self.current is not None:
            self.current.apply(p, s, x, key, new, self.now_ms)
        b = self.build
        if b is not None and self.build_after is not None and key <= self.build_after:
            b.apply(p, s, x, key, new, self.now_ms)

    def start_build(self) -> None:
        self.build = _Tree.empty(self.partitions)
        self.build_after = None

    def build_step(self, storage: Storage, limit: int) -> bool:
        """Read up to ``limit`` records into the tree being built; True when it is done (and
        has replaced the current one)."""
        b = self.build
        if b is None:
            return False
        start = DATA if self.build_after is None else DATA + self.build_after + b"\x00"
        looked = 0
        parts = self.partitions
        cur = self.current
        for skey, raw in storage.scan(DATA, start, None, False, limit):
            looked += 1
            key = skey[1:]
            self.build_after = key
            p, s = place(key, parts)
            b.apply(p, s, record_hash(key, raw), key, raw, -self.now_ms)
            if cur is not None and key in b.tombs[p]:
                # A rebuild keeps when the node first had the tombstone.
                since = cur.tombs[p].get(key)
                if since is not None:
                    b.tombs[p][key] = since
        if looked < limit:
            self.current, self.build, self.build_after = b, None, None
            self.built += 1
            return True
        return False

    def roots(self, parts: list[int]) -> bytes:
        cur = self.current
        assert cur is not None
        return _pack(array("Q", [cur.roots[p] for p in parts]))

    def segments(self, p: int) -> bytes:
        cur = self.current
        assert cur is not None
        return b"" if cur.roots[p] == 0 and not any(cur.segs[p]) else _pack(cur.segs[p])


# --- exchanges ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Exchange:
    peer: str
    op_id: int
    parts: list[int]
    asked_ms: int
    table: Table  # the table the roots were sent under
    version: int  # our change counter when the roots were sent
    state: str = "roots"  # roots -> pull -> push
    pull: dict[int, frozenset[int] | None] = field(default_factory=dict)  # from the peer
    push: dict[int, frozenset[int] | None] = field(default_factory=dict)  # to the peer
    after: bytes | None = None
    # The peer's record hashes, from the pull, of the partitions both hold something of (the
    # push sends only the keys that differ); a partition only one side holds needs none.
    theirs: dict[bytes, int] = field(default_factory=dict)
    rest: list[int] = field(default_factory=list)  # differing partitions left for the next one
    repaired_here: int = 0
    push_done: bool = False


@dataclass(slots=True)
class Reaping:
    """Tombstones the first owner asked every member about (``ReapCheck``)."""

    op_id: int
    epoch: int  # the table the check was asked under
    found: dict[bytes, int]  # key -> record hash
    waiting: set[str]
    asked_ms: int


@dataclass(slots=True)
class Stats:
    exchanges: int = 0
    keys_repaired: int = 0
    tombstones_reaped: int = 0
    segments_differing: int = 0
    pulled_records: int = 0
    pushed_records: int = 0
    builds: int = 0


class AntiEntropy:
    def __init__(
        self,
        name: str,
        storage: Storage,
        *,
        partitions: int,
        interval_ms: int,
        grace_ms: int,
        rebuild_ms: int,
        rate_bytes_s: int,
        first_op_id: int,
        now_ms: int,
        send: Send,
        merge: Merge,
        delete: Delete,
        jitter: Callable[[int], int],
        hinted: Callable[[bytes], bool] = lambda key: False,
    ) -> None:
        self.name = name
        self.storage = storage
        self.partitions = partitions
        self.interval_ms = max(1, interval_ms)
        self.grace_ms = max(0, grace_ms)
        self.rebuild_ms = rebuild_ms
        self.rate_bytes_s = max(1, rate_bytes_s)
        self.send = send
        self.merge = merge
        self.delete = delete
        self.jitter = jitter  # a random offset in [0, n)
        self.hinted = hinted  # whether this node keeps a hint of a key (for any target)
        self.trees = Trees(partitions)
        self.trees.start_build()
        self._next_op = first_op_id
        self.exchanges: dict[str, Exchange] = {}  # peer -> the exchange with it under way
        self.rest: dict[str, list[int]] = {}  # peer -> differing partitions not narrowed yet
        self.reaping: Reaping | None = None
        self._reap_cursor = 0  # the partition the next reap round starts at
        self.next_ms: dict[str, int] = {}  # peer -> when to compare with it next
        self._next_page_ms = 0
        self._next_reap_ms = 0
        self._next_build_ms = 0
        self._started_ms = now_ms
        # (partition, peer) -> (the partition's routing epoch, our change counter, differing
        # segments) of the last comparison; and when it was made.
        self.confirmed: dict[tuple[int, str], tuple[int, int, frozenset[int]]] = {}
        self.compared_ms: dict[tuple[int, str], int] = {}
        self.stats = Stats()
        self._logged = Stats()
        self._next_log_ms = now_ms + LOG_EVERY_MS

    def owns(self, src: str, op_id: Any) -> bool:
        x = self.exchanges.get(src)
        return x is not None and x.op_id == op_id

    def _new_op(self) -> int:
        self._next_op += 1
        return self._next_op

    # --- the table changed ---------------------------------------------------------------------

    def refresh(self, table: Table) -> None:
        """Forget comparisons made under another routing of their partition, and peers that
        share nothing with us any more; a reap asked under another table is dropped."""
        self.confirmed = {k: v for k, v in self.confirmed.items() if v[0] == table.changed[k[0]]}
        peers = set(_co_replicas(table, self.name))
        for d in (self.next_ms, self.exchanges, self.rest):
            for peer in [q for q in d if q not in peers]:
                del d[peer]
        self.compared_ms = {k: v for k, v in self.compared_ms.items() if k[1] in peers}
        if self.reaping is not None and self.reaping.epoch != table.epoch:
            self.reaping = None

    # --- timers --------------------------------------------------------------------------------

    def tick(
        self,
        now_ms: int,
        table: Table,
        alive: Callable[[str], bool],
        effects: list[m.Effect],
        log: list[m.Log],
    ) -> None:
        trees = self.trees
        rebuild_due = self.rebuild_ms > 0 and now_ms >= self._next_build_ms
        if trees.build is None and trees.ready and rebuild_due:
            if self._next_build_ms:
                trees.start_build()
            self._next_build_ms = now_ms + self.rebuild_ms
        if trees.build is not None and trees.build_step(self.storage, BUILD_KEYS_PER_TICK):
            self.stats.builds += 1
            if not self._next_build_ms:
                self._next_build_ms = now_ms + self.rebuild_ms
        if not trees.ready:
            return
        for x in list(self.exchanges.values()):
            self._step(x, now_ms, table, effects)
        self._maybe_start(now_ms, table, alive, effects)
        if now_ms >= self._next_reap_ms:
            self._next_reap_ms = now_ms + REAP_CHECK_MS
            self._reap(now_ms, table, alive, effects)
        if now_ms >= self._next_log_ms:
            self._next_log_ms = now_ms + LOG_EVERY_MS
            self._log(log)

    def _maybe_start(
        self, now_ms: int, table: Table, alive: Callable[[str], bool], effects: list[m.Effect]
    ) -> None:
        """Start an exchange with every co-replica whose turn it is (one with each at a time)."""
        for peer in _co_replicas(table, self.name):
            when = self.next_ms.get(peer)
            if when is None:
                # First comparison with a peer: somewhere in the first interval.
                when = self.next_ms[peer] = now_ms + self.jitter(self.interval_ms)
            if when > now_ms or peer in self.exchanges or not alive(peer):
                continue
            both = [p for p in range(table.partitions) if _both_own(table, p, self.name, peer)]
            # Partitions that differed last time and were not narrowed go first.
            rest = [p for p in self.rest.pop(peer, ()) if _both_own(table, p, self.name, peer)]
            first = set(rest)
            parts = rest + [p for p in both if p not in first]
            # The next comparison with this peer: within the interval (a little earlier, so
            # that a slow step never makes it later than the interval).
            self.next_ms[peer] = (
                now_ms + self.interval_ms - self.jitter(max(1, self.interval_ms // 10))
            )
            if not parts:
                continue
            x = Exchange(peer, self._new_op(), parts, now_ms, table, self.trees.counter)
            self.exchanges[peer] = x
            roots = self.trees.roots(parts)
            self.send(peer, m.AaeRoots(x.op_id, table.epoch, parts, roots), effects)

    def _step(self, x: Exchange, now_ms: int, table: Table, effects: list[m.Effect]) -> None:
        if x.asked_ms and now_ms - x.asked_ms >= STEP_TIMEOUT_MS:
            # The peer did not answer: the next exchange with it starts over.
            self.exchanges.pop(x.peer, None)
            return
        if x.asked_ms or now_ms < self._next_page_ms:
            return
        if x.state == "pull":
            self._ask_page(x, now_ms, table, effects)
        elif x.state == "push":
            self._push_page(x, now_ms, table, effects)

    # --- the initiator -------------------------------------------------------------------------

    def on_roots_reply(
        self, src: str, msg: m.AaeRootsReply, now_ms: int, table: Table, effects: list[m.Effect]
    ) -> None:
        x = self.exchanges.get(src)
        if x is None or x.op_id != msg.op_id or x.state != "roots":
            return
        well_formed = isinstance(msg.diff, list) and isinstance(msg.segs, list)
        if msg.ready is not True or not well_formed:
            del self.exchanges[src]  # the peer's tree is not built yet, or its table differs
            self.next_ms[src] = min(self.next_ms.get(src, now_ms), now_ms + 1_000)
            return
        cur = self.trees.current
        assert cur is not None
        asked = set(x.parts)
        # The peer compared our roots as they were when we sent them: a comparison stands for
        # what we held then (the counter and the table of that moment).
        diff: list[int] = []
        narrowed: dict[int, Any] = {}
        for i, p in enumerate(msg.diff):
            if type(p) is not int or p not in asked or p in narrowed or p in diff:
                continue
            diff.append(p)
            if i < len(msg.segs):
                narrowed[p] = msg.segs[i]
        for p in x.parts:
            if p not in diff:
                self._confirm(p, src, x, frozenset(), now_ms)
        for p in diff:
            theirs = narrowed.get(p)
            ours_empty = cur.roots[p] == 0 and not any(cur.segs[p])
            if theirs is None:
                self.confirmed.pop((p, src), None)
                x.rest.append(p)
            elif ours_empty and theirs == b"":
                self.confirmed.pop((p, src), None)  # both empty, yet the roots differed
            elif ours_empty:
                x.pull[p] = None
                self._confirm(p, src, x, ALL_SEGMENTS, now_ms)
            elif theirs == b"":
                x.push[p] = None
                self._confirm(p, src, x, ALL_SEGMENTS, now_ms)
            elif (segs := _unpack(theirs)) is None:
                self.confirmed.pop((p, src), None)
            else:
                mine = cur.segs[p]
                d = frozenset(s for s in range(SEGMENTS) if segs[s] != mine[s])
                self._confirm(p, src, x, d, now_ms)
                if d:
                    x.pull[p] = x.push[p] = d
        if not x.pull and not x.push:
            self._finish(x, now_ms)
            return
        for p in x.pull.keys() | x.push.keys():
            f = x.pull[p] if p in x.pull else x.push[p]
            self.stats.segments_differing += SEGMENTS if f is None else len(f)
        x.state, x.asked_ms, x.after = ("pull" if x.pull else "push"), 0, None
        self._step(x, now_ms, table, effects)

    def _confirm(self, p: int, peer: str, x: Exchange, diff: frozenset[int], now_ms: int) -> None:
        self.confirmed[(p, peer)] = (x.table.changed[p], x.version, diff)
        self.compared_ms[(p, peer)] = now_ms

    def _ask_page(self, x: Exchange, now_ms: int, table: Table, effects: list[m.Effect]) -> None:
        x.op_id, x.asked_ms = self._new_op(), now_ms
        parts = sorted(x.pull)
        bits = [b"" if x.pull[p] is None else segment_bits(x.pull[p] or ()) for p in parts]
        msg = m.HandoffRequest(x.op_id, table.epoch, parts, x.after, PULL_BYTES, bits)
        self.send(x.peer, msg, effects)

    def on_page(
        self, src: str, msg: m.HandoffPage, now_ms: int, table: Table, effects: list[m.Effect]
    ) -> None:
        x = self.exchanges.get(src)
        if x is None or x.state != "pull" or x.op_id != msg.op_id:
            return
        if not isinstance(msg.items, list):
            del self.exchanges[src]
            return
        x.asked_ms = 0
        size = 0
        items = msg.items
        for key, raw in zip(items[0::2], items[1::2]):
            if not isinstance(key, bytes) or not isinstance(raw, bytes):
                continue
            p, s = place(key, self.partitions)
            segs = x.pull.get(p, frozenset())
            if p not in x.pull or (segs is not None and s not in segs):
                continue
            if p in x.push:
                x.theirs[key] = record_hash(key, raw)
            size += len(key) + len(raw)
            if self.name not in table.write_list(p):
                continue
            try:
                if self.merge(DATA + key, raw, effects):
                    x.repaired_here += 1
            except ValueError:
                continue  # the peer's copy does not decode: our push replaces it
        self.stats.pulled_records += len(items) // 2
        x.after = msg.after if isinstance(msg.after, bytes) else x.after
        self._next_page_ms = max(self._next_page_ms, now_ms) + size * 1000 // self.rate_bytes_s
        if msg.done is True:
            x.state, x.after = "push", None
            if not x.push:
                self._finish(x, now_ms)
                return
        self._step(x, now_ms, table, effects)

    def _push_page(self, x: Exchange, now_ms: int, table: Table, effects: list[m.Effect]) -> None:
        """Send the peer our records of the differing segments that it lacks or holds
        differently (one message in flight; at most ``PUSH_KEYS_PER_TICK`` keys looked at per
        tick)."""
        flat: list[Any] = []
        size = looked = 0
        done = False
        while not done and size < PUSH_BYTES and looked < PUSH_KEYS_PER_TICK:
            items, after, done = page(
                self.storage, x.push, self.partitions, x.after, PUSH_BYTES - size, 5_000
            )
            looked += 5_000
            x.after = after
            for key, raw in zip(items[0::2], items[1::2]):
                if x.theirs.get(key) != record_hash(key, raw):
                    flat += (key, raw)
                    size += len(key) + len(raw)
        if flat:
            x.op_id, x.asked_ms = self._new_op(), now_ms
            self.stats.pushed_records += len(flat) // 2
            x.push_done = done
            self.send(x.peer, m.AaePush(x.op_id, table.epoch, flat), effects)
            self._next_page_ms = max(self._next_page_ms, now_ms) + size * 1000 // self.rate_bytes_s
        elif done:
            self._finish(x, now_ms)

    def on_push_ack(self, src: str, msg: m.AaePushAck, now_ms: int) -> None:
        x = self.exchanges.get(src)
        if x is None or x.state != "push" or x.op_id != msg.op_id:
            return
        x.asked_ms = 0
        if type(msg.changed) is int and msg.changed > 0:
            self.stats.keys_repaired += msg.changed
        if x.push_done:
            self._finish(x, now_ms)

    def _finish(self, x: Exchange, now_ms: int) -> None:
        self.exchanges.pop(x.peer, None)
        self.stats.exchanges += 1
        self.stats.keys_repaired += x.repaired_here
        if x.rest:
            self.rest[x.peer] = x.rest
            self.next_ms[x.peer] = now_ms  # the partitions this one did not narrow, at once

    # --- the responder -------------------------------------------------------------------------

    def on_roots(self, src: str, msg: m.AaeRoots, table: Table, effects: list[m.Effect]) -> None:
        cur = self.trees.current
        parts = msg.parts
        theirs = _unpack_roots(msg.roots, parts)
        if cur is None or msg.epoch != table.epoch or theirs is None:
            self.send(src, m.AaeRootsReply(msg.op_id, False, [], []), effects)
            return
        diff: list[int] = []
        segs: list[bytes] = []
        roots = cur.roots
        for p, root in zip(parts, theirs):
            if type(p) is not int or not 0 <= p < self.partitions:
                continue
            if roots[p] != root and self.name in table.owners[p]:
                diff.append(p)
                if len(segs) < MAX_DIFF_PARTS:
                    segs.append(self.trees.segments(p))
        self.send(src, m.AaeRootsReply(msg.op_id, True, diff, segs), effects)

    def on_push(self, src: str, msg: m.AaePush, table: Table, effects: list[m.Effect]) -> None:
        changed = 0
        items = msg.items if isinstance(msg.items, list) else []
        for key, raw in zip(items[0::2], items[1::2]):
            if not isinstance(key, bytes) or not isinstance(raw, bytes):
                continue
            if self.name not in table.write_list(table.partition_of(key)):
                continue
            try:
                if self.merge(DATA + key, raw, effects):
                    changed += 1
            except ValueError:
                continue
        self.send(src, m.AaePushAck(msg.op_id, changed), effects)

    def on_reap(self, src: str, msg: m.Reap, table: Table) -> None:
        """The partition's first owner found these tombstones on every replica: delete ours if
        it is still the same tombstone."""
        items = msg.items if isinstance(msg.items, list) else []
        gone: list[tuple[bytes, bytes]] = []
        for key, h in zip(items[0::2], items[1::2]):
            if not isinstance(key, bytes) or type(h) is not int:
                continue
            p = table.partition_of(key)
            if not table.owners[p] or table.owners[p][0] != src or not _settled(table, p):
                continue
            raw = self.storage.get(DATA + key)
            if raw is not None and record_hash(key, raw) == h and tombstone_ts(raw) is not None:
                gone.append((DATA + key, raw))
        if gone:
            self.delete(gone)
            self.stats.tombstones_reaped += len(gone)

    # --- reaping -------------------------------------------------------------------------------

    def _reap(
        self, now_ms: int, table: Table, alive: Callable[[str], bool], effects: list[m.Effect]
    ) -> None:
        """Find tombstones to reap (first owner only): past the grace period, and confirmed on
        every other owner by the last exchanges; ask every other member to check
        (``ReapCheck``): the owners that they hold the same tombstone, everyone that they keep
        no hint of the key (a hint of an older write, handed on after the reap, would bring it
        back). So nothing is reaped while any member is down."""
        members = self._to_ask([q for q in table.members() if q != self.name], alive)
        if members is None:
            return
        cur = self.trees.current
        r = self.reaping
        if r is not None:
            if now_ms - r.asked_ms < STEP_TIMEOUT_MS:
                return
            self.reaping = None  # an owner did not answer: found again next time
        if cur is None:
            return
        versions = self.trees.versions
        found: dict[bytes, int] = {}
        looked = 0
        # Partitions in turn from a cursor, a bounded number of tombstones per round: a large
        # number of them costs little per round, and none waits behind others found again.
        for i in range(self.partitions):
            if len(found) >= REAP_PER_TICK or looked >= REAP_LOOK_PER_TICK:
                break
            p = (self._reap_cursor + i) % self.partitions
            self._reap_cursor = (p + 1) % self.partitions
            tombs = cur.tombs[p]
            if not tombs:
                continue
            owners = table.owners[p]
            if not owners or owners[0] != self.name or not _settled(table, p):
                continue
            others = [q for q in owners[1:] if q in members]
            checks = [self.confirmed.get((p, q)) for q in others]
            if any(c is None or c[0] != table.changed[p] for c in checks):
                continue
            looked += len(tombs)
            for key, ts in tombs.items():
                if now_ms - ts < self.grace_ms:
                    continue
                _, s = place(key, self.partitions)
                v = versions[p][s]
                if self._confirmed_by_all(checks, s, v):
                    raw = self.storage.get(DATA + key)
                    if raw is not None and tombstone_ts(raw) is not None and not self.hinted(key):
                        found[key] = record_hash(key, raw)
                        if len(found) >= REAP_PER_TICK:
                            break
        if not found:
            return
        if not members:
            self._reap_now(found, table, effects)
            return
        flat: list[Any] = []
        for key, h in found.items():
            flat += (key, h)
        self.reaping = Reaping(self._new_op(), table.epoch, found, set(members), now_ms)
        for q in members:
            self.send(q, m.ReapCheck(self.reaping.op_id, table.epoch, flat), effects)

    @staticmethod
    def _to_ask(members: list[str], alive: Callable[[str], bool]) -> list[str] | None:
        """The members a reap must ask: all of them, and none may be down (None)."""
        return members if all(alive(q) for q in members) else None

    @staticmethod
    def _confirmed_by_all(
        checks: list[tuple[int, int, frozenset[int]] | None], s: int, version: int
    ) -> bool:
        """Segment ``s`` compared equal with every other owner, and has not changed here since
        (its last change, ``version``, is no later than each comparison)."""
        return all(c is not None and s not in c[2] and version <= c[1] for c in checks)

    def on_reap_check(
        self, src: str, msg: m.ReapCheck, table: Table, effects: list[m.Effect]
    ) -> None:
        """The keys whose tombstone we hold exactly as the first owner does (an owner), or of
        which we hold nothing (any other member), and of which we keep no hint; made durable
        before we say so (the answer leaves after the sync)."""
        items = msg.items if isinstance(msg.items, list) else []
        same: list[bytes] = []
        if msg.epoch == table.epoch:
            for key, h in zip(items[0::2], items[1::2]):
                if not isinstance(key, bytes) or type(h) is not int:
                    continue
                p = table.partition_of(key)
                if table.owners[p][0] != src or not _settled(table, p) or self.hinted(key):
                    continue
                raw = self.storage.get(DATA + key)
                if self.name not in table.owners[p]:
                    if raw is None:
                        same.append(key)
                    continue
                if raw is None or record_hash(key, raw) != h:
                    continue  # not the same record
                if tombstone_ts(raw) is not None:
                    same.append(key)
        if same:
            self.storage.write([(REAP_SYNC_KEY, b"")], sync=True)
        self.send(src, m.ReapAck(msg.op_id, same), effects)

    def on_reap_ack(self, src: str, msg: m.ReapAck, table: Table, effects: list[m.Effect]) -> None:
        r = self.reaping
        if r is None or r.op_id != msg.op_id or src not in r.waiting:
            return
        if r.epoch != table.epoch:
            self.reaping = None  # asked under another table: found and asked again
            return
        r.waiting.discard(src)
        keys = set(msg.keys) if isinstance(msg.keys, list) else set()
        for key in list(r.found):
            if key not in keys:
                del r.found[key]
        if r.waiting:
            return
        self.reaping = None
        if r.found:
            self._reap_now(r.found, table, effects)

    def _reap_now(self, found: dict[bytes, int], table: Table, effects: list[m.Effect]) -> None:
        """Every owner holds these tombstones: delete ours (if unchanged) and tell the others."""
        gone: list[tuple[bytes, bytes]] = []
        for key, h in found.items():
            p = table.partition_of(key)
            if table.owners[p][0] != self.name or not _settled(table, p):
                continue
            raw = self.storage.get(DATA + key)
            if raw is not None and record_hash(key, raw) == h:
                gone.append((DATA + key, raw))
        if not gone:
            return
        self.delete(gone)
        self.stats.tombstones_reaped += len(gone)
        by_owner: dict[str, list[Any]] = {}
        for skey, _ in gone:
            key = skey[1:]
            for q in table.owners[table.partition_of(key)][1:]:
                by_owner.setdefault(q, []).extend((key, found[key]))
        for q, items in sorted(by_owner.items()):
            self.send(q, m.Reap(table.epoch, items), effects)

    # --- visibility ----------------------------------------------------------------------------

    def last_sweep_s(self, now_ms: int, table: Table | None) -> float:
        """Seconds since every partition this node owns was last compared with each of its
        co-replicas (since the node started, for one never compared)."""
        if table is None:
            return 0.0
        oldest = now_ms
        for p, owners in enumerate(table.owners):
            if self.name not in owners:
                continue
            for q in owners:
                if q != self.name:
                    oldest = min(oldest, self.compared_ms.get((p, q), self._started_ms))
        return round((now_ms - oldest) / 1000, 3)

    def _log(self, log: list[m.Log]) -> None:
        s, before = self.stats, self._logged
        repaired = s.keys_repaired - before.keys_repaired
        reaped = s.tombstones_reaped - before.tombstones_reaped
        if repaired or reaped:
            exchanges = s.exchanges - before.exchanges
            text = (
                f"anti-entropy: {exchanges} exchange(s), {repaired} key(s) "
                f"repaired, {reaped} tombstone(s) reaped in the last {LOG_EVERY_MS // 1000} s"
            )
            fields = {
                "exchanges": exchanges,
                "keys_repaired": repaired,
                "tombstones_reaped": reaped,
                "seconds": LOG_EVERY_MS // 1000,
            }
            log.append(m.Log("info", text, "aae_summary", fields))
        self._logged = Stats(**{f: getattr(s, f) for f in s.__dataclass_fields__})


def _co_replicas(table: Table, name: str) -> list[str]:
    peers: set[str] = set()
    for owners in table.owners:
        if name in owners:
            peers.update(owners)
    peers.discard(name)
    return sorted(peers)


def _both_own(table: Table, p: int, a: str, b: str) -> bool:
    owners = table.owners[p]
    return a in owners and b in owners


def _settled(table: Table, p: int) -> bool:
    """No transfer, retirement or cleanup of ``p`` is under way."""
    return p not in table.pending and p not in table.retiring and p not in table.cleanup


def _unpack_roots(data: Any, parts: Any) -> list[int] | None:
    if not isinstance(data, bytes) or not isinstance(parts, list) or len(data) != 8 * len(parts):
        return None
    a = array("Q")
    a.frombytes(data)
    if _BIG:
        a.byteswap()
    return a.tolist()
