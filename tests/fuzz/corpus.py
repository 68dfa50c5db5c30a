"""Valid inputs the fuzzers start from: stored records, peer and gossip messages, client
requests, frames, dumps, and the records of feeds, search indexes and sorted sets.

Message strategies are derived from each registered message class's annotations (``int``,
``bytes | None``, ``list[int]``...), so a new message type is fuzzed without touching this file;
a few field names get realistic content (``record`` an encoded record, ``items`` flat
``[key, record, ...]``, ``updates``/``members`` membership records, ``settings`` the cluster's).
"""

from __future__ import annotations

import io
import types
import typing
from typing import Any

from hypothesis import strategies as st

from feeds import counter
from feeds import records as frec
from ring.cli import dump
from ring.core import membership, messages
from ring.core import record as rec
from ring.net import codec
from search import _zrecords as zrec
from search import records as srec
from tests.fuzz.strategies import ints, mutate_bytes, mutate_value, pack, values

NAMES = ["a", "b", "c", "d"]
SETTINGS = {"cluster": "ringkv", "n": 3, "partitions": 64}
ACTORS = ["a@1", "b@2", "c@3"]

names = st.sampled_from(NAMES) | st.text(max_size=12)
small_ints = st.integers(0, 70) | st.integers(0, 2**40) | ints
keys = st.binary(max_size=12) | st.sampled_from([b"", b"k", b"k0", b"\x00", b"\xff" * 4])

# --- stored records ---------------------------------------------------------------------------


@st.composite
def records(draw: st.DrawFn) -> rec.Record:
    """Reachable records: a few writes and merges by three actors."""
    replicas = dict.fromkeys(ACTORS, rec.EMPTY)
    seen = [rec.EMPTY]
    for _ in range(draw(st.integers(0, 5))):
        actor = draw(st.sampled_from(ACTORS))
        if draw(st.integers(0, 3)) == 0:
            new = rec.reconcile(replicas[actor], draw(st.sampled_from(seen)))
        else:
            ctx = None if draw(st.booleans()) else draw(st.sampled_from(seen)).context
            value = draw(st.none() | st.binary(max_size=24))
            new = rec.write(replicas[actor], actor, value, draw(st.integers(0, 2**45)), ctx)
        replicas[actor] = new
        seen.append(new)
    return draw(st.sampled_from(seen))


encoded_records = records().map(rec.encode)


# --- peer and gossip messages -------------------------------------------------------------------


def membership_records() -> st.SearchStrategy[list[Any]]:
    return st.lists(
        st.tuples(
            names,
            names.map(lambda n: f"{n}:1"),
            st.integers(0, 5),
            st.sampled_from(membership.STATES),
        ).map(list),
        max_size=4,
    )


def _flat_items() -> st.SearchStrategy[list[Any]]:
    return st.lists(st.tuples(keys, encoded_records), max_size=3).map(
        lambda pairs: [x for pair in pairs for x in pair]
    )


def _by_type(hint: Any) -> st.SearchStrategy[Any]:
    if hint is typing.Any:
        return values(8)
    if hint is bool:
        return st.booleans()
    if hint is int:
        return small_ints
    if hint is str:
        return names
    if hint is bytes:
        return keys
    if hint is type(None):
        return st.none()
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([_by_type(a) for a in args])
    if origin is list:
        return st.lists(_by_type(args[0]) if args else values(4), max_size=5)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), values(4), max_size=4)
    raise AssertionError(f"no strategy for {hint!r}")


# Field name -> (the annotation's type it applies to, realistic content).
_BY_NAME: dict[str, tuple[Any, st.SearchStrategy[Any]]] = {
    "record": (bytes, encoded_records),
    "items": (list, _flat_items()),
    "updates": (list, membership_records()),
    "members": (list, membership_records()),
    "settings": (
        dict,
        st.just(SETTINGS) | st.dictionaries(st.text(max_size=8), values(4), max_size=3),
    ),
    "partitions": (list, st.lists(st.integers(0, 70), max_size=5)),
    "parts": (list, st.lists(st.integers(0, 70), max_size=5)),
    "key": (bytes, keys),
    "op": (
        str,
        st.sampled_from(["get", "put", "del", "absorb", "scan", "leave", "remove"]) | names,
    ),
    "address": (str, names.map(lambda n: f"{n}:1")),
    "target_address": (str, names.map(lambda n: f"{n}:1")),
}


def shell(msg: Any) -> Any:
    """``msg`` as a node receives it: encoded, decoded and checked by ``from_wire`` as the
    shell does; None when the shell would refuse it."""
    try:
        return messages.from_wire(codec.unpack(bytes(pack(messages.to_wire(msg)))))
    except (ValueError, OverflowError, codec.FrameError):  # not encodable, or refused
        return None


def field_strategies(cls: type[Any]) -> list[st.SearchStrategy[Any]]:
    """Per field, realistic content where the name says what it holds (and the annotation
    agrees: ``parts`` is a list of partitions in one message, a count in another)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in cls.FIELDS:
        kind = typing.get_origin(hints[f]) or hints[f]
        named = _BY_NAME.get(f)
        out.append(named[1] if named and named[0] in (kind, Any) else _by_type(hints[f]))
    return out


def message_of(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Well-typed (not necessarily sensible) instances of a registered message class."""
    return st.tuples(*field_strategies(cls)).map(lambda vals: cls(*vals))


@st.composite
def mutated_message(draw: st.DrawFn, msg: Any) -> Any:
    """``msg`` with some fields replaced by other values of their type, or its wire form
    mutated (any part, any way) and decoded again: None when ``from_wire`` refuses that (the
    shell then drops the frame or datagram; the core never sees it)."""
    cls = type(msg)
    how = draw(st.sampled_from(["fields", "wire", "bytes"]))
    if how == "fields":
        vals = [getattr(msg, f) for f in cls.FIELDS]
        strategies = field_strategies(cls)
        for i in draw(st.sets(st.integers(0, len(vals) - 1), min_size=1, max_size=2)):
            vals[i] = draw(strategies[i])
        return cls(*vals)
    wire = messages.to_wire(msg)
    if how == "bytes":  # damage one bytes value inside (a record, a key, a bitmap)
        spots = [p for p in _bytes_paths(wire)]
        if not spots:
            return msg
        path = draw(st.sampled_from(spots))
        wire = _with(wire, path, draw(mutate_bytes(_at(wire, path))))
    else:
        wire = draw(mutate_value(wire))
    try:
        return messages.from_wire(wire)
    except messages.MessageError:
        return None


def _bytes_paths(obj: Any, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    if isinstance(obj, bytes):
        return [path]
    if isinstance(obj, list):
        return [p for i, x in enumerate(obj) for p in _bytes_paths(x, (*path, i))]
    return []


def _at(obj: Any, path: tuple[int, ...]) -> Any:
    for i in path:
        obj = obj[i]
    return obj


def _with(obj: Any, path: tuple[int, ...], new: Any) -> Any:
    if not path:
        return new
    out = list(obj)
    out[path[0]] = _with(obj[path[0]], path[1:], new)
    return out


PEER_CLASSES = sorted(
    (c for c in messages._BY_TAG.values() if not issubclass(c, messages.Gossip)),
    key=lambda c: c.TAG,
)
GOSSIP_CLASSES = sorted(
    (c for c in messages._BY_TAG.values() if issubclass(c, messages.Gossip)), key=lambda c: c.TAG
)

peer_messages = st.one_of([message_of(c) for c in PEER_CLASSES])
gossip_messages = st.one_of([message_of(c) for c in GOSSIP_CLASSES])
peer_wire = peer_messages.map(messages.to_wire)
gossip_datagrams = gossip_messages.map(lambda msg: bytes(pack(messages.to_wire(msg))))


# --- client requests ----------------------------------------------------------------------------

CLIENT_OPS = ["get", "getv", "put", "del", "absorb", "scan", "records", "status", "ring"]
CLIENT_OPS += ["locate", "leave", "remove"]


@st.composite
def client_args(draw: st.DrawFn) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for name, strategy in [
        ("key", keys),
        ("value", st.binary(max_size=16)),
        ("context", st.just(b"") | records().map(lambda r: rec.encode_context(r.context))),
        ("r", st.integers(0, 4)),
        ("w", st.integers(0, 4)),
        ("record", encoded_records),
        ("start", keys),
        ("stop", keys),
        ("limit", st.integers(0, 1001)),
        ("reverse", st.booleans()),
        ("after", keys),
        ("max_bytes", st.integers(0, 2**20)),
        ("hints", st.booleans()),
        ("name", names),
        ("since", small_ints),
        ("table", st.booleans()),
    ]:
        if draw(st.booleans()):
            args[name] = draw(strategy)
    return args


client_requests = st.tuples(
    st.integers(0, 2**32) | values(3), st.sampled_from(CLIENT_OPS) | names, client_args()
).map(list)

# Writes as a client sends them, plus entries the node does not know (any key type, any value):
# a node that forwards a write passes its arguments on to the key's coordinator.
writes_with_extras = st.tuples(
    st.integers(0, 2**32),
    st.sampled_from(["put", "del"]),
    st.fixed_dictionaries({"key": keys, "value": st.binary(max_size=8)}),
    st.dictionaries(st.from_type(type(None)) | st.integers() | st.text(max_size=4), values(4)),
).map(lambda t: [t[0], t[1], {**t[3], **t[2]}])

hellos = st.sampled_from(
    [
        codec.client_hello("ringkv"),
        codec.client_hello("ringkv", "node", "d", {"n": 3, "partitions": 64}),
        codec.server_hello("ringkv", "a"),
    ]
)

frame_values = client_requests | peer_wire | hellos
frames = frame_values.map(lambda obj: codec.encode_frame(codec.new_packer(), obj))


# --- dumps --------------------------------------------------------------------------------------


def dump_of(items: list[tuple[bytes, bytes]]) -> bytes:
    out = io.BytesIO()
    dump.write(out, sorted(dict(items).items()))
    return out.getvalue()


dumps = st.lists(st.tuples(keys, encoded_records), max_size=4).map(dump_of)


# --- feed, search and sorted set records --------------------------------------------------------

ids = st.binary(min_size=12, max_size=12)
candidates = st.lists(st.none() | ids, max_size=3).map(frec.candidates)
hts = st.integers(0, 2**62)
writers = st.binary(min_size=1, max_size=6)

entry_records = st.builds(
    frec.EntryRecord,
    st.none() | st.binary(max_size=16),
    candidates,
    candidates,
    st.integers(0, 2**62),
    st.binary(max_size=6),
).map(frec.encode_entry)

ops = st.builds(counter.Op, ids, writers, hts, st.integers(-3, 3))
tallies = st.builds(
    counter.Tally,
    st.integers(0, 100),
    st.lists(st.tuples(writers, hts, st.integers(-5, 5)), max_size=3).map(tuple),
    st.lists(ops, max_size=3).map(tuple),
    st.lists(ops, max_size=2).map(tuple),
    st.lists(ops, max_size=2).map(tuple),
    hts,
)
header_records = st.builds(
    frec.HeaderRecord,
    st.lists(ids, max_size=2).map(tuple),
    st.lists(ids, max_size=2).map(tuple),
    tallies,
    hts,
).map(frec.encode_header)

field_names = st.sampled_from(["body", "title", "t"]) | st.text(min_size=1, max_size=6)
doc_records = st.dictionaries(field_names, st.text(max_size=20), max_size=3).map(
    lambda fields: srec.encode_doc_record({f: len(t.split()) for f, t in fields.items()}, fields)
)
postings = st.tuples(
    st.integers(0, 2**32 - 1), st.lists(st.integers(0, 2**32 - 1), max_size=6)
).map(lambda t: srec.encode_posting(*t))
stats = st.builds(
    srec.Stats,
    st.integers(0, 10**6),
    st.dictionaries(
        field_names, st.tuples(st.integers(0, 99), st.integers(0, 999)).map(list), max_size=3
    ),
).map(srec.Stats.encode)
intents = st.lists(
    st.tuples(
        st.sampled_from(["a", "r"]),
        st.binary(max_size=8),
        st.binary(max_size=8),
        st.lists(st.binary(max_size=8), max_size=2),
        st.binary(max_size=12),
    ),
    max_size=3,
).map(srec.encode_intents)

score8 = st.binary(min_size=8, max_size=8)
deltas = st.lists(st.tuples(score8, st.integers(-3, 3)), max_size=3).map(tuple)
versions = st.tuples(hts, writers)
incs = st.builds(
    zrec.Inc,
    writers,
    versions,
    hts,
    st.floats(allow_nan=False),
    st.floats(allow_nan=False),
    st.binary(max_size=8),
)
member_records = st.builds(
    zrec.MemberRec,
    versions,
    st.none() | st.floats(allow_nan=False),
    st.lists(incs, max_size=2).map(tuple),
    versions,
    deltas,
    st.lists(st.builds(zrec.Entry, hts, writers, deltas), max_size=2).map(tuple),
).map(zrec.encode_member)
marks = st.builds(
    zrec.Mark,
    writers,
    versions,
    hts,
    deltas,
    st.lists(st.tuples(hts, deltas), max_size=2).map(tuple),
    st.none() | st.builds(zrec.Intent, hts, st.binary(max_size=8), deltas),
    hts,
)
node_records = st.builds(
    zrec.NodeRec, versions, deltas, st.lists(marks, max_size=2).map(tuple)
).map(zrec.encode_node)
