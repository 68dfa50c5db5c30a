"""Events the core consumes, effects it produces, and the messages nodes exchange.

Everything here is a ``struct`` (``ring.core.structs``: a slotted dataclass, frozen for the type
checker). Node-to-node messages are registered with a small integer tag and travel as the
msgpack array ``[tag, field1, field2, ...]`` (``to_wire`` / ``from_wire``); the shell frames
them, the core never sees bytes on the wire.

Rules:

* a message class lists only msgpack-native fields (int, str, bytes, None, bool, list, dict);
  records travel in their ``record.to_wire`` form;
* ``from_wire`` checks the tag, the field count and each field's type against the class's
  annotations (``int`` is an integer and not a boolean, ``bytes | None`` bytes or nil,
  ``list[int]`` a list of integers, ``dict[str, Any]`` a map with string keys; ``Any`` and
  ``list[Any]`` are checked by whoever reads them) and raises :class:`MessageError` (a
  ``ValueError``) naming the field for anything else, so a malformed frame is refused before
  the core acts on it, never a crash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, dataclass_transform

from ring.core.structs import struct

# --- registry ------------------------------------------------------------------------------

_BY_TAG: dict[int, type[Any]] = {}


_T = TypeVar("_T")


class MessageError(ValueError):
    """A value that is not a node-to-node message: not ``[tag, fields...]``, an unknown tag, the
    wrong number of fields, or a field of the wrong type. The message says which."""


# What a field annotation asks of a decoded value: the exact types it may have (``type(v) is
# int``, so a msgpack boolean is no integer) and, for a list or a map among them, the exact
# types of its elements or keys. ``Any`` asks nothing.
_Spec = tuple[tuple[type, ...], type | None, frozenset[type] | None]  # kinds, container, inner


def _spec(hint: Any) -> _Spec | None:
    if hint is Any:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        specs = [_spec(a) for a in args]
        boxes = [sp for sp in specs if sp is not None and sp[1] is not None]
        if any(sp is None for sp in specs) or len(boxes) > 1:
            raise TypeError(f"a message field cannot be {hint!r}")
        kinds = tuple(t for sp in specs if sp is not None for t in sp[0])
        return (kinds, boxes[0][1], boxes[0][2]) if boxes else (kinds, None, None)
    if origin in (list, dict):
        inner = _spec(args[0]) if args else None
        if inner is not None and inner[1] is not None:
            raise TypeError(f"a message field cannot be {hint!r}")
        return (origin,), origin, (None if inner is None else frozenset(inner[0]))
    if isinstance(hint, type) and hint in (int, bool, str, bytes, type(None), float):
        return (hint,), None, None
    raise TypeError(f"a message field cannot be {hint!r}")


def _describe(spec: _Spec) -> str:
    kinds, box, inner = spec
    names = []
    for t in kinds:
        if t is box and inner is not None:
            of = " or ".join(sorted(i.__name__ for i in inner))
            names.append(f"a map with {of} keys" if box is dict else f"a list of {of}")
        else:
            names.append("nil" if t is type(None) else t.__name__)
    return " or ".join(names)


def _fits(spec: _Spec, v: Any) -> bool:
    kinds, box, inner = spec
    kind = type(v)
    return kind in kinds and (kind is not box or inner is None or inner.issuperset(map(type, v)))


def _checker(cls: type[Any]) -> Callable[[list[Any]], bool]:
    """A function that tells whether a wire list ``[tag, f1, f2, ...]`` of the right length has
    fields of the annotated types (the hot path: a type lookup per field); ``_why`` says what
    is wrong when it has not."""
    hints = typing.get_type_hints(cls)
    flat: list[tuple[int, tuple[type, ...]]] = []  # fields without elements to check
    deep: list[tuple[int, _Spec]] = []
    for i, name in enumerate(cls.FIELDS, 1):
        spec = _spec(hints[name])
        if spec is not None and spec[2] is None:
            flat.append((i, spec[0]))
        elif spec is not None:
            deep.append((i, spec))

    def check(o: list[Any]) -> bool:
        for i, kinds in flat:
            if type(o[i]) not in kinds:
                return False
        return not deep or all(_fits(spec, o[i]) for i, spec in deep)

    return check


def _why(cls: type[Any], obj: list[Any]) -> str:
    hints = typing.get_type_hints(cls)
    for i, name in enumerate(cls.FIELDS, 1):
        spec = _spec(hints[name])
        v = obj[i]
        if spec is None or _fits(spec, v):
            continue
        if type(v) in spec[0]:
            bad = next(x for x in v if type(x) not in (spec[2] or ()))
            part = "key" if type(v) is dict else "element"
            got = f"; one {part} is {type(bad).__name__}"
        else:
            got = f", not {type(v).__name__}"
        return f"{cls.__name__}.{name} must be {_describe(spec)}{got}"
    return f"{cls.__name__} is malformed"


@dataclass_transform(frozen_default=True)
def message(tag: int) -> Callable[[type[_T]], type[_T]]:
    """Class decorator: make a ``struct`` and register it under ``tag``."""

    def wrap(cls: type[_T]) -> type[_T]:
        dc = dataclass(slots=True, unsafe_hash=True)(cls)
        if tag in _BY_TAG:
            raise RuntimeError(f"message tag {tag} is used twice")
        dc.TAG = tag  # type: ignore[attr-defined]
        fields = tuple(f.name for f in dataclasses.fields(dc))  # type: ignore[arg-type]
        dc.FIELDS = fields  # type: ignore[attr-defined]
        # attrgetter reads every field in one C call; it returns a bare value for one field.
        get = operator.attrgetter(*fields)
        one = staticmethod(lambda obj: (get(obj),))  # a plain function is bound as a method
        dc._VALUES = get if len(fields) > 1 else one  # type: ignore[attr-defined]
        dc._CHECK = _checker(dc)  # type: ignore[attr-defined]
        _BY_TAG[tag] = dc
        return dc

    return wrap


def to_wire(msg: Any) -> list[Any]:
    return [msg.TAG, *msg._VALUES(msg)]


def from_wire(obj: Any) -> Any:
    """The message of a decoded wire list; :class:`MessageError` if it is none (see above)."""
    if type(obj) is not list or not obj or type(obj[0]) is not int:
        raise MessageError("a message is an array [tag, fields...]")
    cls = _BY_TAG.get(obj[0])
    if cls is None:
        raise MessageError(f"unknown message tag {obj[0]}")
    if len(obj) - 1 != len(cls.FIELDS):
        raise MessageError(f"{cls.__name__} takes {len(cls.FIELDS)} fields, got {len(obj) - 1}")
    if not cls._CHECK(obj):
        raise MessageError(_why(cls, obj))
    return cls(*obj[1:])


# --- events: what the shell (or the simulator) feeds the core --------------------------------


@struct
class Tick:
    """Time passed. The shell sends one every ``tick_ms``; the core runs its timers from it."""


@struct
class ClientRequest:
    """A request from a client connection. ``req_id`` is unique within this node's process."""

    req_id: int
    op: str
    args: dict[str, Any]


@struct
class PeerMessage:
    """A message from another node (over TCP), identified by the name from its hello."""

    src: str
    msg: Any


@struct
class Datagram:
    """A gossip datagram (over UDP) from ``src``, a ``host:port`` address."""

    src: str
    msg: Any


# --- effects: what the core asks the shell to do ---------------------------------------------


@struct
class Send:
    """Send ``msg`` to node ``dest`` at ``address`` over the node-to-node TCP link."""

    dest: str
    address: str
    msg: Any


@struct
class SendDatagram:
    """Send a gossip message to ``address`` over UDP."""

    address: str
    msg: Any


@struct
class Reply:
    """Answer client request ``req_id``. ``error`` is None on success, else an error kind
    (``"quorum"``, ``"invalid"``, ``"unavailable"``, ``"timeout"``...) and ``result`` its message;
    for quorum errors ``result`` is ``{"message": str, "replied": int, "needed": int}``."""

    req_id: int
    error: str | None
    result: Any


@struct
class Log:
    """A log line: ``text`` for people, ``event`` (a stable short name) and ``fields`` for
    machines (``ring.logs``). Never a key's or a value's contents: see ``key_ref``."""

    level: str
    text: str
    event: str = "node"
    fields: dict[str, Any] | None = None


def key_ref(key: bytes) -> str:
    """How logs name a key: a fingerprint (``key#`` and 12 hex digits of its BLAKE2b hash),
    never its contents."""
    return "key#" + hashlib.blake2b(key, digest_size=6).hexdigest()


@struct
class Serving:
    """The node serves from now on: it knows the whole ring it belongs to (once per life)."""


@struct
class Retired:
    """The node left the cluster for good (its data is handed off); the shell stops it and
    exits 0."""

    reason: str


@struct
class Halt:
    """The node cannot go on (its settings were refused by the cluster it tries to join); the
    shell stops it with a usage error and ``reason``."""

    reason: str


# Every effect a core returns; the shell's dispatch handles each of them.
Effect = Send | SendDatagram | Reply | Log | Serving | Halt | Retired


# --- node-to-node messages (TCP) ---------------------------------------------------------------


@message(1)
class ReplicaPut:
    """Store ``record`` (merged by reconcile) and acknowledge once durable. With ``hint_for`` set,
    the receiver is a fallback keeping it for that node."""

    op_id: int
    key: bytes
    record: bytes  # encoded as stored (``record.encode``)
    hint_for: str | None
    epoch: int  # the table the sender routed it on (``ring.core.table``)


@message(2)
class ReplicaPutAck:
    op_id: int
    ok: bool


@message(3)
class ReplicaGet:
    op_id: int
    key: bytes
    epoch: int


@message(4)
class ReplicaGetReply:
    op_id: int
    record: bytes | None  # encoded as stored, or None when the replica has nothing


@message(5)
class Forward:
    """A client write passed to a node of the key's preference list, which coordinates it.
    ``hops`` counts how often it was passed on already; ``timeout_ms`` is the time the sender
    still waits for the answer, so the coordinator gives up in time to report its outcome.
    ``args`` are the client's, as it sent them: a map, whatever else it holds (the coordinator
    checks what it uses)."""

    op_id: int
    op: str
    args: dict[Any, Any]
    hops: int
    timeout_ms: int


@message(6)
class ForwardReply:
    op_id: int
    error: str | None
    result: Any


@message(7)
class ScanRequest:
    """Up to ``limit`` records in ``[start, stop)``, and no more than about ``max_bytes`` (at
    least one record, however large)."""

    op_id: int
    start: bytes | None
    stop: bytes | None
    reverse: bool
    limit: int
    max_bytes: int
    epoch: int


@message(8)
class ScanReply:
    """``items`` is a flat list ``[key, encoded_record, key, encoded_record, ...]`` in scan
    order; ``more`` is true when the page was cut (by ``limit`` or ``max_bytes``) and the node
    may hold more records after the last one."""

    op_id: int
    items: list[bytes]
    more: bool


@message(9)
class TableRequest:
    """Send me your ownership table if its epoch is above ``epoch``; ``address`` is where the
    sender listens (the receiver may know it by name only: a member that has left, say)."""

    epoch: int
    address: str


@message(10)
class TableUpdate:
    """An ownership table (``Table.to_wire``); taken when it is newer than the receiver's."""

    table: list[Any]


@message(11)
class Stale:
    """The answer to a replica request routed on a table older than the receiver's for that
    partition (``epoch`` is the receiver's): fetch the table and retry."""

    op_id: int
    epoch: int


@message(12)
class HandoffRequest:
    """A page of the sender's records of ``partitions``, in key order after ``after``.
    ``segments`` (anti-entropy) narrows each partition to some of its segments: a bitmap per
    partition (``ring.core.aae.segment_bits``; ``b""`` for all of it), or None for whole
    partitions (a transfer)."""

    op_id: int
    epoch: int
    partitions: list[int]
    after: bytes | None
    max_bytes: int
    segments: list[bytes] | None = None


@message(13)
class HandoffPage:
    """``items`` flat ``[key, record, ...]``; ``after`` the last key looked at; ``done`` when
    the source has no more."""

    op_id: int
    items: list[bytes]
    after: bytes | None
    done: bool


@message(14)
class TransferDone:
    """To the claimant: the sender copied these partitions from all their sources (as routed
    at ``epoch``)."""

    epoch: int
    partitions: list[int]


@message(15)
class CleanupDone:
    """To the claimant: the sender deleted its copy of these partitions, under the table of
    ``epoch`` (a report older than a partition's last change is ignored)."""

    epoch: int
    partitions: list[int]


@message(40)
class AaeRoots:
    """Anti-entropy: the sender's tree roots (8 bytes each, little-endian) of ``partitions``,
    which both own."""

    op_id: int
    epoch: int
    parts: list[int]
    roots: bytes


@message(41)
class AaeRootsReply:
    """Which of the asked partitions' roots differ (``diff``) and, for the first ones, the
    receiver's segment hashes (``b""``: it holds nothing of that partition). ``ready`` is False
    when its tree is not built yet or its table differs (the sender tries later)."""

    op_id: int
    ready: bool
    diff: list[int]
    segs: list[bytes]


@message(42)
class AaePush:
    """Anti-entropy: records (flat ``[key, record, ...]``) the receiver lacks or holds
    differently; merged with ``reconcile``."""

    op_id: int
    epoch: int
    items: list[bytes]


@message(43)
class AaePushAck:
    op_id: int
    changed: int  # how many of the records changed the receiver's copy


@message(44)
class Reap:
    """From a partition's first owner: these tombstones (flat ``[key, record hash, ...]``) are
    on every replica and past the grace period; delete yours if it is the same."""

    epoch: int
    items: list[Any]


@message(45)
class ReapCheck:
    """From a partition's first owner, before it reaps: which of these tombstones (flat
    ``[key, record hash, ...]``) does the receiver hold exactly so, durably?"""

    op_id: int
    epoch: int
    items: list[Any]


@message(46)
class ReapAck:
    """The keys of a ``ReapCheck`` the sender holds the same tombstone of (on disk: it synced
    before answering)."""

    op_id: int
    keys: list[bytes]


class Gossip:
    """Marker base for gossip (UDP) messages; they are defined in ``ring.core.membership``."""
