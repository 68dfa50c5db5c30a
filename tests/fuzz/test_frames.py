"""Fuzzing the TCP side: the frame decoder, peer message decoding, and what a node core does
with decoded peer messages and client requests.

Properties:

* ``FrameDecoder.feed`` and ``codec.unpack`` raise only ``FrameError``, whatever the bytes and
  however they are cut into reads; valid frames come out whole and equal, in any chunking;
* ``messages.from_wire`` raises only ``MessageError``; a message it returns has fields of the
  annotated types (so the core never sees a key that is an int, a list of partitions holding a
  string, ...) and encodes back to itself;
* a node core given a decoded peer message refuses what is malformed only with its own checks
  (``corenodes``), and answers any client request with a result or an error kind other than
  ``internal`` (``ring.core.validate``), with nothing caught by its isolation.
"""

from __future__ import annotations

import functools
import itertools
import typing
from typing import Any

import msgpack
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ring.core import messages as m
from ring.core.membership import Ping
from ring.net import codec
from tests.fuzz import corenodes, corpus
from tests.fuzz.strategies import budget, mutate_value, mutated_encodings, nest, pack, values

pytestmark = pytest.mark.soak

bodies = mutated_encodings(
    corpus.frame_values.map(lambda obj: bytes(pack(obj))),
    decode=functools.partial(msgpack.unpackb, strict_map_key=False),
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    """Frames (a length prefix, usually right, and a body, often mutated) and a tail of noise."""
    parts = []
    for body in draw(st.lists(bodies, max_size=4)):
        length = len(body)
        if draw(st.integers(0, 9)) == 0:
            length = draw(st.sampled_from([0, 1, length + 1, 2**24, 2**31, 2**32 - 1]))
        parts.append(length.to_bytes(4, "big") + body)
    parts.append(draw(st.binary(max_size=12)))
    return parts, b"".join(parts)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)] or [b""]


@budget()
@given(streams(), st.lists(st.integers(0, 4000), max_size=6), st.sampled_from([64, 2**25]))
@example(([], b"\x00\x00\x00\x00"), [], 2**25)
@example(([], b"\xff\xff\xff\xff"), [], 2**25)
@example(([], b"\x00\x00\x00\x02\x91"), [1, 4], 2**25)
@example(([], b"\x00\x00\x00\x02\x81\x91\x00"), [], 2**25)  # a map key that is a list
@example(([], b"\x00\x00\x04\x01" + b"\x91" * 1024 + b"\x01"), [3, 700], 2**25)
def test_frame_decoder_raises_only_frame_errors(
    stream: tuple[list[bytes], bytes], cuts: list[int], limit: int
) -> None:
    _, data = stream
    decoder = codec.FrameDecoder(limit)
    out: list[Any] = []
    try:
        for chunk in chunked(data, cuts):
            out += decoder.feed(chunk)
    except codec.FrameError as exc:
        assert str(exc)
        return
    assert decoder.buffered <= len(data)


@budget()
@given(st.lists(corpus.frame_values, min_size=1, max_size=4), st.lists(st.integers(0, 600)))
def test_valid_frames_come_out_whole_in_any_chunking(objs: list[Any], cuts: list[int]) -> None:
    packer = codec.new_packer()
    data = b"".join(codec.encode_frame(packer, obj) for obj in objs)
    decoder = codec.FrameDecoder()
    out: list[Any] = []
    for chunk in chunked(data, cuts):
        out += decoder.feed(chunk)
    assert [pack(x) for x in out] == [pack(obj) for obj in objs]  # (NaN is not NaN)
    assert decoder.buffered == 0


@budget()
@given(bodies)
@example(b"\x81\x91\x00\x01")  # {[0]: 1}: msgpack raises TypeError (unhashable key)
@example(b"\xd6\xff\x00")  # a timestamp too short
@example(b"\x01\x02")  # two values
def test_unpack_raises_only_frame_errors(data: bytes) -> None:
    try:
        codec.unpack(data)
    except codec.FrameError as exc:
        assert str(exc)


def check_typed(msg: Any) -> None:
    """Every field of ``msg`` has the type its annotation names (the elements of typed lists
    and the keys of typed maps too)."""
    hints = typing.get_type_hints(type(msg))
    for name in type(msg).FIELDS:
        value, hint = getattr(msg, name), hints[name]
        if hint is Any:
            continue
        allowed = typing.get_args(hint) if isinstance(hint, type(int | None)) else (hint,)
        ok = False
        for alt in allowed:
            origin = typing.get_origin(alt) or alt
            if alt is type(None):
                ok |= value is None
            elif type(value) is origin:
                args = typing.get_args(alt)
                if args and args[0] is not Any:
                    ok |= all(type(x) is args[0] for x in value)
                else:
                    ok = True
        assert ok, f"{type(msg).__name__}.{name} = {value!r:.80} is not {hint}"


peer_values = st.one_of(
    corpus.peer_wire,
    corpus.peer_wire.flatmap(mutate_value),
    values(10),
)


@budget()
@given(peer_values)
@example([m.ReplicaPut.TAG, 1, "k", b"", None, 1])  # a str key
@example([m.ReplicaPut.TAG, True, b"k", b"", None, 1])  # op_id true
@example([m.TransferDone.TAG, 1, [1, "2"]])  # a partition that is a string
@example([m.Forward.TAG, 1, nest(100), {}, 0, 0])
@example([m.TableRequest.TAG, 1])
@example([Ping.TAG, 1, "a", [], 0])
def test_peer_messages_decode_well_typed_or_not_at_all(obj: Any) -> None:
    try:
        msg = m.from_wire(obj)
    except m.MessageError as exc:
        assert str(exc)
        return
    check_typed(msg)
    again = m.from_wire(msgpack.unpackb(pack(m.to_wire(msg)), strict_map_key=False))
    assert pack(m.to_wire(again)) == pack(m.to_wire(msg))  # (NaN is not NaN: compare bytes)


@st.composite
def peer_events(draw: st.DrawFn) -> tuple[corenodes.Snapshot, Any]:
    """A snapshot of the scenario taken before a node handled a peer message, and a mutation
    of that message (or, now and then, a message of any type made up from scratch)."""
    shots = [s for s in corenodes.scenario() if type(s.event) is m.PeerMessage]
    shot = draw(st.sampled_from(shots))
    if draw(st.integers(0, 4)) == 0:
        msg = draw(corpus.peer_messages)
    else:
        msg = draw(corpus.mutated_message(shot.event.msg))
    return shot, None if msg is None else corpus.shell(msg)


@budget(ci=100, soak=2000)
@given(peer_events())
def test_a_node_refuses_bad_peer_messages_only_by_its_checks(
    case: tuple[corenodes.Snapshot, Any],
) -> None:
    shot, msg = case
    if msg is None:
        return  # refused by from_wire: the connection closes, the core never sees it
    c = shot.restore()
    with corenodes.caught() as errors:
        corenodes.deliver(c, shot.dest, m.PeerMessage(shot.event.src, msg))
    bad = corenodes.unexpected(errors)
    assert not bad, corenodes.describe(bad)


client_values = st.one_of(
    corpus.client_requests,
    corpus.client_requests.flatmap(mutate_value),
    corpus.writes_with_extras,
)


@budget(ci=100, soak=2000)
@given(client_values)
@example([1, "put", {"key": b"k", "value": b"v", "context": b"\x92\xa1a\xc3"}])
@example([1, "get", {"key": b"k", "r": True}])
@example([1, "scan", {"limit": 2**64 - 1}])
@example([1, "records", {"after": b"k", "max_bytes": 0}])
@example([0, "put", {None: None, "key": b"\x01", "value": b""}])  # forwarded, extra entries
def test_a_node_answers_every_client_request(obj: Any) -> None:
    """What ``tcp.ServerConnection`` passes on (``[req_id, op: str, args: map]``) gets an
    answer that is a result or a clear error, never an internal error."""
    if not (isinstance(obj, list) and len(obj) == 3 and type(obj[1]) is str):
        return  # the connection refuses it before the core sees it
    _, op, args = obj
    if args is not None and type(args) is not dict:
        return
    c = corenodes.fresh_cluster()
    with corenodes.caught() as errors:
        c.next_req += 1
        c.handle("a", m.ClientRequest(c.next_req, op, args or {}))
        for _ in range(30):
            if c.next_req in c.replies:
                break
            c.run(20)
    assert not errors, corenodes.describe(errors)
    reply = c.replies.get(c.next_req)
    assert reply is not None, f"no answer to {obj!r:.200}"
    assert reply.error != "internal", reply
    if reply.error is not None:
        assert reply.error in ("invalid", "unavailable", "quorum", "timeout"), reply
        assert isinstance(reply.result, str | dict) and reply.result, reply
