"""Fuzzing the gossip side: datagrams as the UDP endpoint decodes them, and what a node core
does with the gossip messages that decode.

Properties:

* ``messages.from_wire(codec.unpack(datagram))`` raises only ``FrameError`` or
  ``MessageError``; what decodes is a registered message with fields of the annotated types;
* ``GossipEndpoint.datagram_received`` counts every datagram as dropped or received and hands
  the node only decoded messages;
* a node core given a decoded gossip message (a mutation of one a real node received, in the
  state it received it) refuses what is malformed only with its own checks (``corenodes``).
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ring.core import membership
from ring.core import messages as m
from ring.net import codec
from ring.net.udp import GossipEndpoint
from tests.fuzz import corenodes, corpus
from tests.fuzz.strategies import budget, mutated_encodings
from tests.fuzz.test_frames import check_typed

pytestmark = pytest.mark.soak

datagrams = mutated_encodings(corpus.gossip_datagrams)


def decode_datagram(data: bytes) -> Any:
    """What ``GossipEndpoint.datagram_received`` does (without a cluster secret)."""
    return m.from_wire(codec.unpack(data))


@budget()
@given(datagrams)
@example(b"\x95\x14\x01\xa1a\x90\xc3")  # Ping with a boolean epoch
@example(b"\x93\x1b\xa1a\x01")  # Leave with one field missing
@example(msgpack.packb([membership.Join.TAG, "x", "x:1", 0, {1: 2}, ""]))  # an int settings key
def test_datagrams_decode_well_typed_or_not_at_all(data: bytes) -> None:
    try:
        msg = decode_datagram(data)
    except (codec.FrameError, m.MessageError) as exc:
        assert str(exc)
        return
    check_typed(msg)


class Sink:
    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.got: list[Any] = []

    def datagram(self, src: str, msg: Any) -> None:
        self.got.append(msg)

    def count(self, counter: str, n: int = 1) -> None:
        self.counters[counter] = self.counters.get(counter, 0) + n


@budget(ci=100, soak=5000)
@given(st.lists(datagrams, max_size=5))
def test_the_endpoint_counts_every_datagram_and_passes_on_only_messages(
    batch: list[bytes],
) -> None:
    sink = Sink()
    endpoint = GossipEndpoint(sink)
    for data in batch:
        endpoint.datagram_received(data, ("127.0.0.1", 7000))
    dropped, received = sink.counters.get("udp_dropped", 0), sink.counters.get("udp_received", 0)
    assert dropped + received == len(batch)
    assert len(sink.got) == received
    for msg in sink.got:
        assert type(msg).TAG in m._BY_TAG
        check_typed(msg)


@st.composite
def gossip_events(draw: st.DrawFn) -> tuple[corenodes.Snapshot, Any]:
    shots = [s for s in corenodes.scenario() if type(s.event) is m.Datagram]
    shot = draw(st.sampled_from(shots))
    if draw(st.integers(0, 4)) == 0:
        msg = draw(corpus.gossip_messages)
    else:
        msg = draw(corpus.mutated_message(shot.event.msg))
    return shot, None if msg is None else corpus.shell(msg)


@budget(ci=100, soak=2000)
@given(gossip_events())
def test_a_node_refuses_bad_gossip_only_by_its_checks(
    case: tuple[corenodes.Snapshot, Any],
) -> None:
    shot, msg = case
    if msg is None:
        return  # refused by from_wire: the endpoint drops it
    c = shot.restore()
    with corenodes.caught() as errors:
        corenodes.deliver(c, shot.dest, m.Datagram(shot.event.src, msg))
    bad = corenodes.unexpected(errors)
    assert not bad, corenodes.describe(bad)
