"""Membership and failure detection by gossip: SWIM, pure.

Das, Gupta and Motivala, "SWIM: Scalable Weakly-consistent Infection-style Process Group
Membership Protocol" (DSN 2002), with the refinements of HashiCorp memberlist (push-pull sync,
a transmit-limited broadcast queue). Lifeguard's adaptive suspicion timeouts (Dadgar et al. 2018)
are *not* implemented: a suspicion always lasts ``suspect_timeout_ms``.

The object is sans-IO: ``handle`` / ``tick`` / ``join`` / ``leave`` take the time (``now_ms``)
and, where a choice is random, an ``rng`` (a ``random.Random``), and return the datagrams to send
(``SendDatagram``). It never reads a clock, never draws from a global random source, and never
lets the iteration order of a set or dict reach its output (names are sorted first), so a run
replays exactly from its seed.

**Records.** Every node keeps one ``Member`` per name, itself included: ``(address, incarnation,
state, since_ms)``. ``since_ms`` is when the current ``(incarnation, state)`` was adopted here.
Records travel as flat lists ``[name, address, incarnation, state]``. A member that is alive but
does not serve yet (it is joining or rejoining its cluster, ``ring.core.view``) is ``joining``:
it answers gossip and stores replicas, and it says ``up`` once it serves.

**Precedence** (``supersedes``), the only way a record changes on news from outside:

* ``left`` is final: nothing replaces it, and it replaces anything;
* otherwise the higher ``(incarnation, rank)`` wins, rank being
  ``joining < up < suspect < down``. So at one incarnation, down beats suspect beats up beats
  joining; and a node that restarts (or refutes) with a higher incarnation is alive again,
  whatever was said of its older incarnations.

**State transitions** of a peer's record, as seen by one node:

==========  ==================================  ==========  =============================
from        event                               to          incarnation
==========  ==================================  ==========  =============================
(unknown)   any record about it                 as heard    as heard
joining     it serves (its own news)            up          same
up/joining  our probe and ping-reqs got no ack  suspect     same
suspect     ``suspect_timeout_ms`` passed       down        same
any         its ``Leave`` (graceful)            down        its own
any         its ``Leave`` (permanent)           left        its own
any         a record that ``supersedes`` ours   as heard    as heard
left        anything                            left        unchanged
==========  ==================================  ==========  =============================

Only the node itself raises its incarnation. When it hears a record of itself that its own does
not supersede (suspected or declared down, or said to serve when it does not), it **refutes**:
incarnation = heard + 1, its own state (joining or up), and that record is gossiped. A "left"
heard about oneself is ignored (left is final, it cannot be refuted). After ``leave()`` the node
neither probes nor refutes; ``join()`` brings it back one incarnation higher.

**Failure detection.** Each ``probe_interval_ms`` the node pings the next member of a
round-robin list of the other up/suspect members, shuffled with ``rng`` at the start of every
pass (new members are appended to the current pass). No ack within ``ack_timeout_ms`` ->
``PingReq`` to ``indirect_checks`` random up members, which ping the target and relay its ack
(``IndirectAck``). No ack by the end of the probe period -> the target is suspect. So a node that
only one peer cannot reach is not suspected. Every ``down_probe_rounds`` rounds one random down
member is pinged as well (no consequence if it stays silent): a node that comes back without
calling ``join`` (or whose seeds are gone) is found again that way, and by push-pull sync, which
falls back to a down peer when no member is alive.

**Who learns what.** Every ``Ping``, ``Ack``, ``PingReq`` and ``IndirectAck`` carries the
sender's own record, plus — if we believe it is suspect or down — the *receiver's* record, so a
live node learns at once what is said about it and refutes; the rest of the datagram is filled
from the broadcast queue (fewest transmissions first, then newest), each update sent about
``retransmit_mult * ceil(log2(n + 1))`` times. A ``Ping`` from an unknown sender is answered and
its sender learned from the record it carries.

**Join.** ``join(seeds)`` sends ``Join`` to every seed but our own address, and ``tick`` repeats
it every ``join_retry_ms`` while the node does not serve (then also to ``JOIN_FANOUT`` members it
has heard of), or while no member other than it is known. A ``Join`` carries the settings every
member of a cluster shares (cluster name, N, ring size); a seed with other settings
answers ``JoinRefused`` with a reason that names both values and lets nothing in, and so does a
seed that knows the joiner's name as ``left`` (a name is not taken back). Otherwise the
seed adds the joiner (joining, at its incarnation) and answers with its full state in
``SyncReply`` datagrams.

**Table epochs.** Every ``Ping``, ``Ack``, ``Sync`` and ``SyncReply`` also carries the epoch
of the sender's ownership table (``ring.core.table``; ``epoch``, set by the node). A member that
gossips a higher epoch than ours is reported by ``drain_newer`` (the node then fetches that
table), and ``peer_epochs`` keeps the highest epoch each member gossiped.

**Sync** (push-pull). Every ``sync_interval_ms`` the full table goes to one random live peer in
``Sync`` datagrams; the receiver merges them and answers part 0 with its own table in
``SyncReply`` datagrams. A table too big for one datagram is split into several (``part`` of
``parts``); each part is merged on its own, so a lost part loses only its records until the next
sync. ``left`` records are kept as tombstones and synced like any other. Every part carries
the sender's settings (a table with other settings is dropped, and reported through
``drain_refusals``) and its flags: ``SERVING`` (it serves) and ``MEMBER`` (it belongs to a
cluster), which ``ring.core.view`` uses to decide when a node may serve.

**Size.** Every datagram packs (msgpack) to at most ``PAYLOAD_BUDGET`` bytes, leaving room under
``MAX_DATAGRAM_BYTES`` for the shell's framing and HMAC. Names and addresses are limited to
``MAX_FIELD_BYTES`` UTF-8 bytes each so one record always fits.

Invariants: our own record is never suspect (only joining or up, or down/left after
``leave``); a record only moves forward in ``supersedes`` order, except the node's own, which the
node alone writes; ``members()`` and ``ring_members()`` are sorted; ``ring_members()`` changes
only when a member appears or leaves for good, never on up/down.
"""

from __future__ import annotations

import math
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar, cast, dataclass_transform

from ring.common import settings_mismatch
from ring.core.messages import Gossip, SendDatagram, message, to_wire

JOINING = "joining"
UP = "up"
SUSPECT = "suspect"
DOWN = "down"
LEFT = "left"
STATES = (JOINING, UP, SUSPECT, DOWN, LEFT)
_RANK = {JOINING: 0, UP: 1, SUSPECT: 2, DOWN: 3, LEFT: 4}
_ALIVE = (JOINING, UP, SUSPECT)
_HEALTHY = (JOINING, UP)  # answering, and not suspected

# Flags of a full table (``Sync``/``SyncReply``): what the sender is.
SERVING = 1  # it serves: it knows the whole ring it belongs to
MEMBER = 2  # it belongs to a cluster (it serves, or it remembers a ring it is rejoining)
KNEW_YOU = 4  # (an answer to a Join) the joiner was in the sender's table before it asked

MAX_DATAGRAM_BYTES = 1400
PAYLOAD_BUDGET = MAX_DATAGRAM_BYTES - 100  # room for the shell's framing and HMAC
MAX_FIELD_BYTES = 128
JOIN_FANOUT = 3  # known members a node that does not serve yet also sends its Join to

_T = TypeVar("_T")


class RandomSource(Protocol):
    """The part of ``random.Random`` this module uses (``random`` itself may not be imported)."""

    def shuffle(self, x: MutableSequence[Any]) -> None: ...

    def choice(self, seq: Sequence[_T]) -> _T: ...

    def sample(self, population: Sequence[_T], k: int) -> list[_T]: ...

    def randrange(self, start: int, stop: int) -> int: ...


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    probe_interval_ms: int = 200  # one probe round per interval
    ack_timeout_ms: int = 100  # direct ping timeout before ping-req
    indirect_checks: int = 3  # k peers for ping-req
    suspect_timeout_ms: int = 1500  # suspect -> down
    sync_interval_ms: int = 5000  # periodic full-state push-pull with one random peer
    max_piggyback: int = 8  # records per datagram, the sender's own included
    retransmit_mult: int = 4  # an update is piggy-backed ~ retransmit_mult*log2(n+1) times
    join_retry_ms: int = 1000  # Join is resent this often until we serve and know a peer
    down_probe_rounds: int = 5  # every this many rounds, also ping one down member

    def __post_init__(self) -> None:
        if not 0 < self.ack_timeout_ms < self.probe_interval_ms:
            raise ValueError("need 0 < ack_timeout_ms < probe_interval_ms")
        if min(self.suspect_timeout_ms, self.sync_interval_ms, self.join_retry_ms) <= 0:
            raise ValueError("timeouts and intervals must be positive")
        if self.indirect_checks < 0 or self.max_piggyback < 2 or self.retransmit_mult < 1:
            raise ValueError("need indirect_checks >= 0, max_piggyback >= 2, retransmit_mult >= 1")
        if self.down_probe_rounds < 1:
            raise ValueError("down_probe_rounds must be at least 1")


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    address: str  # "host:port"
    incarnation: int
    state: str  # "up" | "suspect" | "down" | "left"
    since_ms: int

    def wire(self) -> list[Any]:
        return [self.name, self.address, self.incarnation, self.state]


def supersedes(new: tuple[int, str], old: tuple[int, str]) -> bool:
    """Whether a record ``(incarnation, state)`` replaces the record ``old`` of the same member."""
    if old[1] == LEFT:
        return False
    if new[1] == LEFT:
        return True
    return (new[0], _RANK[new[1]]) > (old[0], _RANK[old[1]])


# --- gossip messages (UDP), tags 20..39 ---------------------------------------------------------


@dataclass_transform(frozen_default=True)
def _gossip(tag: int) -> Callable[[type[_T]], type[_T]]:
    """``messages.message(tag)``, typed so that mypy sees the dataclass it makes."""
    return message(tag)


@_gossip(20)
class Ping(Gossip):
    seq: int
    src_name: str
    updates: list[Any]
    epoch: int = 0  # the sender's ownership table epoch (``ring.core.table``); 0: none yet


@_gossip(21)
class Ack(Gossip):
    seq: int
    src_name: str
    updates: list[Any]
    epoch: int = 0


@_gossip(22)
class PingReq(Gossip):
    """Ask the receiver to ping ``target`` for us and relay its ack as ``IndirectAck``."""

    seq: int
    src_name: str
    target_name: str
    target_address: str
    updates: list[Any]


@_gossip(23)
class IndirectAck(Gossip):
    """``target_name`` answered the ping that ``src_name`` sent on behalf of our ``seq``."""

    seq: int
    src_name: str
    target_name: str
    updates: list[Any]


@_gossip(24)
class Join(Gossip):
    """Ask to be let in. ``settings`` are the ones every member must share (cluster name, N,
    ring size); a seed with other settings answers ``JoinRefused``. ``seed`` is the
    address the Join was sent to, echoed in the answer so the joiner knows which seed answered
    (a name and an IP of one node look different)."""

    name: str
    address: str
    incarnation: int
    settings: dict[str, Any]
    seed: str


@_gossip(25)
class Sync(Gossip):
    """Part ``part`` of ``parts`` of the sender's full table; part 0 asks for a ``SyncReply``.
    ``flags`` say what the sender is (``SERVING``, ``MEMBER``); a table whose ``settings``
    differ from ours is dropped."""

    src_name: str
    part: int
    parts: int
    members: list[Any]
    flags: int
    settings: dict[str, Any]
    seed: str  # in an answer to a Join: the address that Join was sent to; else ""
    epoch: int = 0


@_gossip(26)
class SyncReply(Gossip):
    src_name: str
    part: int
    parts: int
    members: list[Any]
    flags: int
    settings: dict[str, Any]
    seed: str
    epoch: int = 0


@_gossip(28)
class JoinRefused(Gossip):
    """A seed's answer to a ``Join`` whose settings differ from its cluster's: ``reason`` names
    both values."""

    src_name: str
    reason: str


@_gossip(27)
class Leave(Gossip):
    name: str
    incarnation: int
    permanent: bool


_SHAPES: dict[type[Any], tuple[type[Any], ...]] = {
    Ping: (int, str, list, int),
    Ack: (int, str, list, int),
    PingReq: (int, str, str, str, list),
    IndirectAck: (int, str, str, list),
    Join: (str, str, int, dict, str),
    Sync: (str, int, int, list, int, dict, str, int),
    SyncReply: (str, int, int, list, int, dict, str, int),
    Leave: (str, int, bool),
    JoinRefused: (str, str),
}


# --- helpers -------------------------------------------------------------------------------------


def packed_size(obj: object) -> int:
    """The exact size of ``obj`` packed by msgpack (str as raw, ints in the smallest form)."""
    if obj is None or isinstance(obj, bool):
        return 1
    if isinstance(obj, int):
        if -32 <= obj < 128:
            return 1
        if -(1 << 7) <= obj < (1 << 8):
            return 2
        if -(1 << 15) <= obj < (1 << 16):
            return 3
        if -(1 << 31) <= obj < (1 << 32):
            return 5
        return 9
    if isinstance(obj, str | bytes):
        n = len(obj.encode()) if isinstance(obj, str) else len(obj)
        small = 32 if isinstance(obj, str) else 0
        return n + (1 if n < small else 2 if n < 256 else 3 if n < 65536 else 5)
    if isinstance(obj, list | tuple):
        n = len(obj)
        return (1 if n < 16 else 3 if n < 65536 else 5) + sum(packed_size(x) for x in obj)
    if isinstance(obj, dict):
        n = len(obj)
        head = 1 if n < 16 else 3 if n < 65536 else 5
        return head + sum(packed_size(k) + packed_size(v) for k, v in obj.items())
    raise TypeError(f"cannot pack {type(obj).__name__}")


def _fits(text: str) -> bool:
    return 0 < len(text.encode()) <= MAX_FIELD_BYTES


def parse_record(obj: object) -> tuple[str, str, int, str] | None:
    """A wire record ``[name, address, incarnation, state]``, or None if malformed."""
    if not isinstance(obj, list) or len(obj) != 4:
        return None
    name, address, inc, state = obj
    if not (isinstance(name, str) and isinstance(address, str) and _fits(name)):
        return None
    if not _fits(address) or not isinstance(state, str) or state not in _RANK:
        return None
    if not isinstance(inc, int) or isinstance(inc, bool) or not 0 <= inc < (1 << 63):
        return None
    return name, address, inc, state


def _well_formed(msg: object) -> bool:
    shape = _SHAPES.get(type(msg))
    if shape is None:
        return False
    values = [getattr(msg, f) for f in cast(Any, type(msg)).FIELDS]
    return all(
        isinstance(v, t) and (t is bool or not isinstance(v, bool)) for v, t in zip(values, shape)
    )


@dataclass(slots=True)
class _Probe:
    seq: int
    target: str
    started_ms: int
    deadline_ms: int
    indirect_sent: bool = False


@dataclass(frozen=True, slots=True)
class _Relay:
    requester: str  # address to send the IndirectAck to
    seq: int  # the requester's seq
    target: str
    expires_ms: int


# --- the protocol --------------------------------------------------------------------------------


class Membership:
    """One node's view of the cluster, kept by SWIM gossip."""

    def __init__(
        self,
        name: str,
        address: str,
        *,
        incarnation: int = 0,
        config: MembershipConfig | None = None,
        now_ms: int = 0,
        settings: dict[str, Any] | None = None,
        serving: bool = True,
        member: bool = True,
    ) -> None:
        if not _fits(name) or not _fits(address):
            raise ValueError(f"name and address must be 1..{MAX_FIELD_BYTES} bytes of UTF-8")
        if not 0 <= incarnation < (1 << 63):
            raise ValueError("incarnation must be a non-negative 63-bit integer")
        self.name = name
        self.address = address
        self.config = config or MembershipConfig()
        self._members: dict[str, Member] = {}
        self._changes: list[tuple[str, str | None, str]] = []
        self._queue: dict[str, int] = {}  # name -> times piggy-backed so far
        self._queued_at: dict[str, int] = {}  # name -> enqueue counter, newest is highest
        self._enqueues = 0
        self._seq = 0
        self._probe: _Probe | None = None
        self._probe_order: list[str] = []
        self._newcomers: list[str] = []  # joined since the pass began
        self._probe_pos = 0
        self._rounds = 0
        self._relays: dict[int, _Relay] = {}
        self._seeds: list[str] = []
        self._active = True
        self._next_probe_ms = now_ms
        self._next_sync_ms = now_ms + self.config.sync_interval_ms
        self._next_join_ms = now_ms
        # The settings every member shares; Joins and tables with others are refused.
        self.settings: dict[str, Any] = dict(settings or {})
        self.serving = serving  # our own record is "joining" until we serve
        self.member = member
        self._refusals: list[tuple[str, str]] = []  # (sender, reason), for the node to report
        self.own_seeds: set[str] = set()  # seed addresses that turned out to be this node
        self.epoch = 0  # our ownership table's epoch, carried by pings, acks and tables
        self._newer: dict[str, int] = {}  # member -> a higher table epoch it gossiped
        self.newest_epoch = 0  # the highest table epoch heard of (ours included)
        self.peer_epochs: dict[str, int] = {}  # member -> the highest table epoch it gossiped
        self._set(Member(name, address, incarnation, UP if serving else JOINING, now_ms))

    # --- queries ---------------------------------------------------------------------------------

    @property
    def incarnation(self) -> int:
        return self._members[self.name].incarnation

    def members(self) -> list[Member]:
        return [self._members[n] for n in sorted(self._members)]

    def get(self, name: str) -> Member | None:
        return self._members.get(name)

    def is_up(self, name: str) -> bool:
        m = self._members.get(name)
        return m is not None and m.state == UP

    def may_coordinate(self, name: str) -> bool:
        """Up or suspect: a member that serves as far as we know (a joining one refuses)."""
        m = self._members.get(name)
        return m is not None and m.state in (UP, SUSPECT)

    def remember(self, members: dict[str, str], now_ms: int) -> None:
        """Members of the ring a restarted node remembers, known as down until they are heard
        from: they stay in the ring (ownership does not change because nobody spoke yet), and
        the tables this node sends name them, so a peer rejoining with an older ring learns of
        them. Incarnation 0: anything a live member says of itself outranks it."""
        for name, address in sorted(members.items()):
            if name != self.name and name not in self._members and address and _fits(address):
                self._set(Member(name, address, 0, DOWN, now_ms))

    def is_healthy(self, name: str) -> bool:
        """Up or joining: answering, and not suspected (hints are handed to such members)."""
        m = self._members.get(name)
        return m is not None and m.state in _HEALTHY

    def is_alive(self, name: str) -> bool:
        """Joining, up or suspect: a suspect member is still routed to until it is declared
        down, and a joining one stores replicas although it does not coordinate yet."""
        m = self._members.get(name)
        return m is not None and m.state in _ALIVE

    def ring_members(self) -> list[str]:
        return sorted(n for n, m in self._members.items() if m.state != LEFT)

    def drain_changes(self) -> list[tuple[str, str | None, str]]:
        """``(name, old state or None if new, new state)`` since the last call, in order."""
        out, self._changes = self._changes, []
        return out

    def drain_newer(self) -> dict[str, int]:
        """Members that gossiped a table epoch above ours since the last call: name -> epoch."""
        out, self._newer = self._newer, {}
        return {n: e for n, e in out.items() if e > self.epoch}

    def mark_left(self, name: str, now_ms: int) -> None:
        """``name`` is out of the cluster for good (it left, or was removed): ``left`` is
        final and gossiped like any record."""
        member = self._members.get(name)
        if name == self.name or (member is not None and member.state == LEFT):
            return
        if member is None:  # a name it never heard of: kept, so that its Join is refused
            self._set(Member(name, "", 0, LEFT, now_ms))
        else:
            self._set(replace(member, state=LEFT, since_ms=now_ms))

    def drain_refusals(self) -> list[tuple[str, str]]:
        """``(sender, reason)`` of every ``JoinRefused`` received and every table dropped for
        its settings since the last call; a reason of a refused Join starts with "refused: "."""
        out, self._refusals = self._refusals, []
        return out

    def set_serving(self, now_ms: int) -> None:
        """We serve from now on (a whole view of the ring): our record goes from joining to up,
        which outranks it at the same incarnation, and is gossiped."""
        self.serving = self.member = True
        me = self._members[self.name]
        if me.state == JOINING:
            self._set(replace(me, state=UP, since_ms=now_ms))

    def _own_state(self) -> str:
        return UP if self.serving else JOINING

    def flags(self) -> int:
        return (SERVING if self.serving else 0) | (MEMBER if self.member else 0)

    # --- lifecycle -------------------------------------------------------------------------------

    def join(self, seeds: list[str], now_ms: int) -> list[SendDatagram]:
        """Announce ourselves to ``seeds`` (addresses); ``tick`` retries until a peer is known."""
        me = self._members[self.name]
        if not self._active or me.state not in _HEALTHY:
            # Coming back after leave(): a higher incarnation beats our own down/left record.
            self._active = True
            state = self._own_state()
            self._set(Member(self.name, self.address, me.incarnation + 1, state, now_ms))
        self._seeds = [s for s in dict.fromkeys(seeds) if s != self.address]
        self._next_join_ms = now_ms + self.config.join_retry_ms
        return self._joins()

    def leave(self, now_ms: int, *, permanent: bool = False) -> list[SendDatagram]:
        """Tell every live member we are going: ``down`` (we may come back, with a higher
        incarnation) or, if ``permanent``, ``left`` (out of the ring; the name is then spent)."""
        me = self._members[self.name]
        state = LEFT if permanent else DOWN
        if me.state != LEFT:
            self._set(replace(me, state=state, since_ms=now_ms))
        self._active = False
        self._probe = None
        self._relays.clear()
        msg = Leave(self.name, me.incarnation, permanent)
        return [SendDatagram(m.address, msg) for m in self._others(_ALIVE)]

    # --- events ----------------------------------------------------------------------------------

    def handle(self, src: str, msg: object, now_ms: int, rng: RandomSource) -> list[SendDatagram]:
        """Take one gossip datagram from address ``src``; malformed ones are ignored."""
        if not _well_formed(msg):
            return []
        if not self._active:
            # Shutting down: still answer pings, with our own down/left record only.
            if isinstance(msg, Ping):
                return [
                    SendDatagram(src, Ack(msg.seq, self.name, [self._wire(self.name)], self.epoch))
                ]
            return []
        out: list[SendDatagram] = []
        epoch = getattr(msg, "epoch", 0)
        if isinstance(msg, Ping | Ack | Sync | SyncReply):
            self.peer_epochs[msg.src_name] = max(self.peer_epochs.get(msg.src_name, 0), epoch)
        if epoch > self.epoch and isinstance(msg, Ping | Ack | Sync | SyncReply):
            if epoch > self._newer.get(msg.src_name, 0):
                self._newer[msg.src_name] = epoch
            self.newest_epoch = max(self.newest_epoch, epoch)
        if isinstance(msg, Ping):
            self._merge(msg.updates, now_ms)
            self._send(out, src, lambda u: Ack(msg.seq, self.name, u, self.epoch), msg.src_name)
        elif isinstance(msg, Ack):
            self._merge(msg.updates, now_ms)
            self._on_ack(msg.seq, msg.src_name, msg.updates, out)
        elif isinstance(msg, PingReq):
            self._merge(msg.updates, now_ms)
            self._on_ping_req(src, msg, now_ms, out)
        elif isinstance(msg, IndirectAck):
            self._merge(msg.updates, now_ms)
            if self._probe and (self._probe.seq, self._probe.target) == (msg.seq, msg.target_name):
                self._probe = None
        elif isinstance(msg, Join):
            if msg.name == self.name:
                # Our own Join came back: that seed address is us (or a name clash).
                if _fits(msg.seed):
                    self.own_seeds.add(msg.seed)
                return []
            why = settings_mismatch(self.settings, msg.settings, self.name, msg.name)
            if why:
                self._refusals.append((msg.name, f"refused the join of {msg.name}: {why}"))
                return [SendDatagram(src, JoinRefused(self.name, why))]
            known = self._members.get(msg.name)
            if known is not None and known.state == LEFT:
                why = (
                    f"the name {msg.name} left this cluster for good (a name is not taken back): "
                    "start the node with a new --name and an empty data directory"
                )
                self._refusals.append((msg.name, f"refused the join of {msg.name}: {why}"))
                return [SendDatagram(src, JoinRefused(self.name, why))]
            knew = known is not None
            # A joiner is joining at its incarnation; what it says later (up) outranks that.
            self._merge([[msg.name, msg.address, msg.incarnation, JOINING]], now_ms)
            seed = msg.seed if _fits(msg.seed) else ""
            out += self._table(src, SyncReply, seed, KNEW_YOU if knew else 0)
        elif isinstance(msg, Sync | SyncReply):
            why = settings_mismatch(self.settings, msg.settings, self.name, msg.src_name)
            if why:
                self._refusals.append((msg.src_name, f"dropped the table of {msg.src_name}: {why}"))
                return []
            self._merge(msg.members, now_ms)
            if isinstance(msg, Sync) and msg.part == 0:
                out += self._table(src, SyncReply)
        elif isinstance(msg, JoinRefused):
            self._refusals.append((msg.src_name, f"refused: {msg.reason}"))
        elif isinstance(msg, Leave):
            known = self._members.get(msg.name)
            address = known.address if known else src
            state = LEFT if msg.permanent else DOWN
            self._merge([[msg.name, address, msg.incarnation, state]], now_ms)
        return out

    def tick(self, now_ms: int, rng: RandomSource) -> list[SendDatagram]:
        """Run the timers: join retries, probe rounds and their timeouts, suspicion expiry, sync."""
        if not self._active:
            return []
        out: list[SendDatagram] = []
        if now_ms >= self._next_join_ms and self._still_joining():
            self._next_join_ms = now_ms + self.config.join_retry_ms
            out += self._joins(rng)
        for seq in sorted(self._relays):
            if now_ms >= self._relays[seq].expires_ms:
                del self._relays[seq]
        self._check_probe(now_ms, rng, out)
        self._expire_suspicions(now_ms)
        if now_ms >= self._next_probe_ms and self._probe is None:
            interval = self.config.probe_interval_ms
            self._next_probe_ms = max(self._next_probe_ms + interval, now_ms + 1)
            self._probe_round(now_ms, rng, out)
        if now_ms >= self._next_sync_ms:
            self._next_sync_ms = now_ms + self.config.sync_interval_ms
            peers = self._others(_ALIVE) or self._others((DOWN,))
            if peers:
                out += self._table(rng.choice(peers).address, Sync)
        return out

    # --- probing ---------------------------------------------------------------------------------

    def _probe_round(self, now_ms: int, rng: RandomSource, out: list[SendDatagram]) -> None:
        self._rounds += 1
        target = self._next_target(rng)
        if target is not None:
            seq = self._new_seq()
            deadline = now_ms + self.config.probe_interval_ms
            self._probe = _Probe(seq, target.name, now_ms, deadline)
            self._send(
                out, target.address, lambda u: Ping(seq, self.name, u, self.epoch), target.name
            )
        if self._rounds % self.config.down_probe_rounds == 0:
            down = self._others((DOWN,))
            if down:
                # Unrecorded: silence changes nothing, an answer refutes or re-announces it.
                gone = rng.choice(down)
                seq = self._new_seq()
                self._send(
                    out, gone.address, lambda u: Ping(seq, self.name, u, self.epoch), gone.name
                )

    def _next_target(self, rng: RandomSource) -> Member | None:
        while True:
            if self._probe_pos >= len(self._probe_order):
                order = [m.name for m in self._others(_ALIVE)]
                if not order:
                    return None
                rng.shuffle(order)
                self._probe_order, self._probe_pos = order, 0
                self._newcomers.clear()  # already in the new pass
            for name in self._newcomers:  # SWIM: at a random place in the rest of the pass
                at = rng.randrange(self._probe_pos, len(self._probe_order) + 1)
                self._probe_order.insert(at, name)
            self._newcomers.clear()
            m = self._members[self._probe_order[self._probe_pos]]
            self._probe_pos += 1
            if m.state in _ALIVE:
                return m

    def _check_probe(self, now_ms: int, rng: RandomSource, out: list[SendDatagram]) -> None:
        p = self._probe
        if p is None:
            return
        target = self._members[p.target]
        if target.state not in _ALIVE:
            self._probe = None
            return
        if not p.indirect_sent and now_ms >= p.started_ms + self.config.ack_timeout_ms:
            p.indirect_sent = True
            helpers = [m for m in self._others(_HEALTHY) if m.name != p.target]
            k = min(self.config.indirect_checks, len(helpers))
            for helper in rng.sample(helpers, k):
                self._send(
                    out,
                    helper.address,
                    lambda u: PingReq(p.seq, self.name, target.name, target.address, u),
                )
            # A coarse tick must still leave the helpers their share of the period.
            rest = self.config.probe_interval_ms - self.config.ack_timeout_ms
            p.deadline_ms = max(p.deadline_ms, now_ms + rest)
        if now_ms >= p.deadline_ms:
            self._probe = None
            if target.state in _HEALTHY:
                self._set(replace(target, state=SUSPECT, since_ms=now_ms))

    def _on_ack(self, seq: int, src_name: str, updates: list[Any], out: list[SendDatagram]) -> None:
        if self._probe and (self._probe.seq, self._probe.target) == (seq, src_name):
            self._probe = None
        relay = self._relays.get(seq)
        if relay is not None and relay.target == src_name:
            del self._relays[seq]
            self._send(
                out, relay.requester, lambda u: IndirectAck(relay.seq, self.name, src_name, u)
            )

    def _on_ping_req(self, src: str, msg: PingReq, now_ms: int, out: list[SendDatagram]) -> None:
        if msg.target_name == self.name:
            self._send(out, src, lambda u: IndirectAck(msg.seq, self.name, self.name, u))
            return
        if not _fits(msg.target_address):
            return
        seq = self._new_seq()
        expires = now_ms + self.config.probe_interval_ms
        self._relays[seq] = _Relay(src, msg.seq, msg.target_name, expires)
        ping = lambda u: Ping(seq, self.name, u, self.epoch)  # noqa: E731
        self._send(out, msg.target_address, ping, msg.target_name)

    def _expire_suspicions(self, now_ms: int) -> None:
        for m in self._others((SUSPECT,)):
            if now_ms >= m.since_ms + self.config.suspect_timeout_ms:
                self._set(replace(m, state=DOWN, since_ms=now_ms))

    # --- records ---------------------------------------------------------------------------------

    def _merge(self, records: list[Any], now_ms: int) -> None:
        for obj in records:
            rec = parse_record(obj)
            if rec is None:
                continue
            name, address, inc, state = rec
            if name == self.name:
                self._hear_about_self(inc, state, now_ms)
                continue
            old = self._members.get(name)
            if old is None:
                self._set(Member(name, address, inc, state, now_ms))
            elif supersedes((inc, state), (old.incarnation, old.state)):
                # Same incarnation, same node: keep the address we know.
                address = address if inc > old.incarnation else old.address
                self._set(Member(name, address, inc, state, now_ms))
            elif old.state == LEFT and not old.address and _fits(address) and address:
                # A member we marked left knowing its name only (from a table): its address,
                # so that it still gets the answers to what it sends while it hands off.
                self._members[name] = replace(old, address=address)

    def _hear_about_self(self, inc: int, state: str, now_ms: int) -> None:
        me = self._members[self.name]
        if me.state not in _HEALTHY or state == LEFT:
            return
        if (inc, state) == (me.incarnation, me.state):
            return
        if supersedes((me.incarnation, me.state), (inc, state)):
            return
        if state == me.state:  # we restarted below an incarnation already used: catch up
            self._set(replace(me, incarnation=inc, since_ms=now_ms))
        else:  # suspected, declared down, or said to serve when we do not yet: refute
            self._set(replace(me, incarnation=inc + 1, since_ms=now_ms))

    def _set(self, member: Member) -> None:
        old = self._members.get(member.name)
        assert old is None or member.name == self.name or old.state != LEFT, "left is final"
        self._members[member.name] = member
        if old is None or old.state != member.state:
            self._changes.append((member.name, None if old is None else old.state, member.state))
        if old is None and member.state in _ALIVE and member.name != self.name:
            self._newcomers.append(member.name)  # probed in the current pass
        self._enqueues += 1
        self._queue[member.name] = 0
        self._queued_at[member.name] = self._enqueues

    def _others(self, states: tuple[str, ...]) -> list[Member]:
        """Other members in one of ``states``, sorted by name."""
        return [
            self._members[n]
            for n in sorted(self._members)
            if n != self.name and self._members[n].state in states
        ]

    def _wire(self, name: str) -> list[Any]:
        return self._members[name].wire()

    def _new_seq(self) -> int:
        self._seq += 1
        return self._seq

    # --- datagrams -------------------------------------------------------------------------------

    def _send(
        self,
        out: list[SendDatagram],
        address: str,
        make: Callable[[list[Any]], Gossip],
        peer: str | None = None,
    ) -> None:
        """Append ``make(updates)`` for ``address``, filled with piggy-backed records: ours, the
        peer's if we believe it suspect or down, then the broadcast queue."""
        names = [self.name]
        known = self._members.get(peer) if peer is not None else None
        if known is not None and known.state in (SUSPECT, DOWN) and known.name != self.name:
            names.append(known.name)
        budget = PAYLOAD_BUDGET - packed_size(to_wire(make([]))) - 2
        size = sum(packed_size(self._wire(n)) for n in names)
        queued = sorted(self._queue, key=lambda n: (self._queue[n], -self._queued_at[n]))
        for name in queued:
            if len(names) >= self.config.max_piggyback:
                break
            if name in names:
                continue
            s = packed_size(self._wire(name))
            if size + s <= budget:
                names.append(name)
                size += s
        n = sum(1 for m in self._members.values() if m.state != LEFT)
        limit = self.config.retransmit_mult * math.ceil(math.log2(n + 1))
        for name in names:
            if name in self._queue:
                self._queue[name] += 1
                if self._queue[name] >= limit:
                    del self._queue[name], self._queued_at[name]
        msg = make([self._wire(n) for n in names])
        assert packed_size(to_wire(msg)) <= PAYLOAD_BUDGET
        out.append(SendDatagram(address, msg))

    def _table(
        self,
        address: str,
        kind: type[Sync] | type[SyncReply],
        seed: str = "",
        extra_flags: int = 0,
    ) -> list[SendDatagram]:
        """Our full table for ``address``, split into datagrams that each fit the budget."""
        flags = self.flags() | extra_flags
        empty = kind(self.name, 0, 0, [], flags, self.settings, seed, self.epoch)
        overhead = packed_size(to_wire(empty)) + 2 + 8  # list head, part(s)
        chunks: list[list[Any]] = [[]]
        size = 0
        for m in self.members():
            rec = m.wire()
            s = packed_size(rec)
            if chunks[-1] and overhead + size + s > PAYLOAD_BUDGET:
                chunks.append([])
                size = 0
            chunks[-1].append(rec)
            size += s
        parts = len(chunks)
        return [
            SendDatagram(
                address, kind(self.name, i, parts, chunk, flags, self.settings, seed, self.epoch)
            )
            for i, chunk in enumerate(chunks)
        ]

    def _still_joining(self) -> bool:
        """Joins are repeated until we serve (a full table from a member makes the node serve)
        and some other member is known."""
        return bool(self._seeds or not self.serving) and (
            not self.serving or not self._others((JOINING, UP, SUSPECT, DOWN))
        )

    def _joins(self, rng: RandomSource | None = None) -> list[SendDatagram]:
        """Join to every seed; while we do not serve, also to a few members we know (a
        restarted node whose seeds are gone asks the members it has heard of)."""
        targets = list(self._seeds)
        if not self.serving and rng is not None:
            known = [m.address for m in self._others((JOINING, UP, SUSPECT, DOWN))]
            extra = [a for a in known if a not in targets]
            targets += rng.sample(extra, min(JOIN_FANOUT, len(extra)))
        return [
            SendDatagram(
                address, Join(self.name, self.address, self.incarnation, self.settings, address)
            )
            for address in targets
        ]
