"""What the fuzzers found, one plain test per finding with the input that showed it (shrunk).

Each of these failed before its fix: an exception other than the project's own escaped a
decoder, a malformed value was accepted and crashed whoever used it, or a decoder did unbounded
work.
"""

from __future__ import annotations

import time
from typing import Any

import msgpack
import pytest

from ring.core import messages as m
from ring.core import record as rec
from ring.errors import CorruptData
from ring.net import codec
from search import _zrecords as zrec
from search import records as srec
from tests.fuzz import corenodes
from tests.fuzz.strategies import nest

pack = msgpack.Packer(use_bin_type=True).pack


# --- stored records (ring.core.record) -----------------------------------------------------------


def test_decode_resolved_of_a_record_shorter_than_its_framing() -> None:
    """``get``'s hot path indexed past the end of the bytes (IndexError)."""
    for data in (b"", b"\x01", b"\x00", b"\x01\x05"):
        with pytest.raises(rec.RecordError, match="shorter than its framing"):
            rec.decode_resolved(data)


def test_versioned_parts_of_a_head_that_is_not_msgpack() -> None:
    """``get_versioned``'s fast path let msgpack's own errors out (FormatError, ExtraData,
    UnicodeDecodeError, "incomplete input")."""
    for data in (
        b"\x00\x10\x93\x00\x00\x92\xa3\x00\x00\x00\x94\xa3\x00\x00\x00\x00\x00\xc1",
        b"\x00\x04\x00\x00\x00\x00",
        b"\x00\r\x93\x00\x00\x91\x91\xa1\x80\x00\x00\x00\x00\x00\x00",
        b"\x00\x04\xa4\x00\x00\x00",
    ):
        with pytest.raises(rec.RecordError, match="not an encoded record"):
            rec.versioned_parts(data)


def test_decode_of_a_head_with_extra_data() -> None:
    """``decode`` re-raised msgpack's ``ExtraData`` (a ValueError) as it was."""
    with pytest.raises(rec.RecordError, match="not an encoded record"):
        rec.decode(b"\x00\x04\x00\x00\x00\x00")


def test_a_malformed_context_inside_a_record_is_a_record_error() -> None:
    """The vector clock's own ValueError came out of ``decode`` and ``from_wire``."""
    with pytest.raises(rec.RecordError, match="clock"):
        rec.decode(b"\x00\r\x93\x01\x92\x00\x00\x94\xa3\x00\x00\x00\x00\x00\x00")
    with pytest.raises(rec.RecordError, match="clock"):
        rec.from_wire([1, [1, 1], []])
    with pytest.raises(rec.RecordError, match="clock"):
        rec.decode_context(b"\x92\xa1a\xc3")  # a counter that is msgpack true


def test_merging_two_records_with_one_dot_and_two_contents_is_commutative() -> None:
    """Two records holding the same dot with different timestamps (only after damage, or from a
    forging peer): the fast path of ``merge_encoded`` kept whichever came in, so two replicas
    merging each other's copy ended up different. It now agrees with ``reconcile``."""
    a = b"\x00\x10\x93\x01\x92\xa3b@2\x01\x94\xa3b@2\x01\x01\xc0"
    b = b"\x00\x10\x93\x01\x92\xa3b@2\x01\x94\xa3b@2\x01\x00\xc0"
    want = rec.reconcile(rec.decode(a), rec.decode(b))
    for local, incoming in ((a, b), (b, a)):
        out = rec.merge_encoded(local, incoming)
        assert rec.decode(local if out is None else out) == want
    # The same with the values in the records' tails.
    x = rec.encode(rec.write(rec.EMPTY, "a@1", b"x", 5))
    y = rec.encode(rec.write(rec.EMPTY, "a@1", b"y", 5))
    want = rec.reconcile(rec.decode(x), rec.decode(y))
    for local, incoming in ((x, y), (y, x)):
        out = rec.merge_encoded(local, incoming)
        assert rec.decode(local if out is None else out) == want


def test_a_record_whose_tail_does_not_hold_its_resolved_value_is_refused() -> None:
    """``check_encoded`` (what every record from a replica, a hint or a dump passes) accepted a
    record that ``encode`` never writes: a live value inline in a record of kind 0 ("nothing
    live"), or the tail holding a sibling other than the resolved one. ``get``'s fast path
    (``decode_resolved``) then read "absent", or another value, where ``get_versioned`` and
    every full decode read the resolved one."""
    kind0_live = b"\x00\x11\x93\x01\x92\xa3\x00\x00\x00\x01\x94\xa3\x00\x00\x00\x01\x00\xc4\x00"
    assert rec.resolve(rec.decode(kind0_live)) == b"" and rec.decode_resolved(kind0_live) is None
    old = rec.write(rec.EMPTY, "a@1", b"old", 1)
    both = rec.reconcile(old, rec.write(rec.EMPTY, "b@2", b"new", 2))
    head = pack([1, ["a@1", 1, "b@2", 1], ["a@1", 1, 1, True, "b@2", 1, 2, b"new"]])
    wrong_tail = b"\x01" + bytes([len(head)]) + head + b"old"  # the older sibling in the tail
    assert rec.decode(wrong_tail) == both and rec.decode_resolved(wrong_tail) == b"old"
    for data in (kind0_live, wrong_tail):
        with pytest.raises(rec.RecordError, match="tail does not hold the resolved value"):
            rec.check_encoded(data)
        with pytest.raises(rec.RecordError):
            rec.merge_encoded(None, data)
    rec.check_encoded(rec.encode(both))  # what encode writes passes


# --- frames and peer messages ----------------------------------------------------------------


def test_unpack_raises_frame_errors_only() -> None:
    """``codec.unpack`` (datagrams, frame bodies) let msgpack's errors out, and a TypeError for
    a map whose key is an array."""
    for data, why in (
        (b"\x81\x91\x00\x01", "unhashable"),
        (b"\x01\x02", "extra data"),
        (b"\xc1", "FormatError"),
        (b"\x91" * 1100 + b"\x01", "StackError"),
    ):
        with pytest.raises(codec.FrameError, match=why):
            codec.unpack(data)


def test_a_hello_holding_a_deeply_nested_value_is_refused_with_a_frame_error() -> None:
    """Found against a real ringd: ``codec.check_client_hello`` put ``repr`` of the hello's
    values in its FrameError, and for a value nested about 1000 deep (msgpack decodes up to
    1023) that raised RecursionError instead, out of ``ServerConnection.data_received``: uvloop
    logged "Fatal error on transport" with a traceback and dropped the connection without the
    ``[None, "protocol", why]`` answer. Fixed meanwhile by the security review (53eefaf:
    bounded reprs in hello errors, any exception of a hello a refusal)."""
    for hello in (
        {"hello": nest(1000), "cluster": "ringkv", "role": "client"},
        {"hello": 4, "cluster": nest(1000), "role": "client"},
        {"hello": 4, "cluster": "ringkv", "role": nest(1000)},
    ):
        with pytest.raises(codec.FrameError):
            codec.check_client_hello(hello, "ringkv")


def test_peer_messages_with_fields_of_the_wrong_type_are_refused() -> None:
    """``from_wire`` checked only the tag and the field count, so a ScanReply whose keys were
    strings reached the coordinator, whose merge of the scan pages raised a TypeError
    (comparing str and bytes); a ReplicaPut with op_id ``true`` was taken as 1."""
    record = rec.encode(rec.write(rec.EMPTY, "a@1", b"v", 1))
    cases: dict[str, list[Any]] = {
        "ScanReply.items must be a list of bytes; one element is str": [
            m.ScanReply.TAG,
            7,
            ["k0", record, b"k1", record],
            True,
        ],
        "ReplicaPut.op_id must be int, not bool": [m.ReplicaPut.TAG, True, b"k", record, None, 1],
        "ReplicaPut.key must be bytes, not str": [m.ReplicaPut.TAG, 1, "k", record, None, 1],
        "TransferDone.partitions must be a list of int; one element is str": [
            m.TransferDone.TAG,
            1,
            [1, "2"],
        ],
        "Forward.op must be str, not int": [m.Forward.TAG, 1, 1, {}, 0, 0],
    }
    for why, wire in cases.items():
        with pytest.raises(m.MessageError) as info:
            m.from_wire(wire)
        assert str(info.value) == why


def test_a_forwarded_write_keeps_the_clients_extra_arguments() -> None:
    """Found by the fuzzer once it sent writes through a node that forwards them: the first
    version of the typed ``from_wire`` asked ``Forward.args`` for string keys, but a node
    forwards the client's arguments as it got them, so a put with one extra entry under a
    non-string key made the key's coordinator refuse the Forward and close the peer link."""
    c = corenodes.fresh_cluster()
    owners = c.nodes["a"].preference_list
    key = next(k for k in (b"x%d" % i for i in range(100)) if "a" not in owners(k))
    args = {None: None, 1: [2], "key": key, "value": b"v"}
    assert m.from_wire(m.to_wire(m.Forward(1, "put", args, 0, 1000))).args == args
    assert c.request("a", "put", **{"key": key, "value": b"v"}).error is None
    c.next_req += 1
    c.handle("a", m.ClientRequest(c.next_req, "put", args))
    for _ in range(30):
        if c.next_req in c.replies:
            break
        c.run(20)
    assert c.replies[c.next_req].error is None
    assert c.request("b", "get", key=key).result == b"v"


# --- search indexes and sorted sets --------------------------------------------------------------


def test_search_intents_holding_a_huge_integer() -> None:
    """``decode_intents`` converted with ``bytes(...)``: a version read that was the integer
    2**32 - 1 became 4 GiB of zero bytes (the fuzzer's deadline caught it at 22 s); a larger
    one was refused only after the allocation failed."""
    start = time.monotonic()
    with pytest.raises(CorruptData, match="search intents are malformed"):
        srec.decode_intents(pack([["a", b"", b"", [2**32 - 1], b""]]))
    with pytest.raises(CorruptData, match="search intents are malformed"):
        srec.decode_intents(pack([["a", 2**40, b"", [], b""]]))
    assert time.monotonic() - start < 5  # a bound, not a speed claim: it was unbounded


def test_search_postings_of_the_wrong_length() -> None:
    """``posting_head`` and ``posting_positions`` let ``struct.error`` out."""
    with pytest.raises(CorruptData, match="too short"):
        srec.posting_head(b"\x00\x00\x00")
    with pytest.raises(CorruptData, match="cannot hold 9 positions"):
        srec.posting_positions(b"\x00\x00\x00\x09\x00\x00\x00\x01\x00\x00\x00\x02")


def test_search_statistics_with_a_count_that_is_a_float() -> None:
    """``Stats.decode`` converted with ``int()``: a count stored as the float 2**63 (or 1e19)
    was taken as a Python int that msgpack cannot encode, so the next write of the statistics
    failed with OverflowError."""
    for data in (
        b"\x92\xcb\xc3\xe0\x00\x00\x00\x00\x00\x01\x80",
        b"\x92\xcbD\x00\x00\x00\x00\x00\x00\x00\x80",
        pack([1, {"body": [1.5, 2]}]),
    ):
        with pytest.raises(CorruptData, match="search statistics are malformed"):
            srec.Stats.decode(data)


def test_search_documents_that_are_not_maps() -> None:
    """``doc_lengths`` and ``doc_fields`` returned whatever msgpack decoded (a list here), which
    the index then used as a map of field to length or text."""
    with pytest.raises(CorruptData, match="malformed field lengths"):
        srec.doc_lengths(b"\x00\x00\x00\x01\x90")
    with pytest.raises(CorruptData, match="malformed fields"):
        srec.doc_fields(b"\x00\x00\x00\x01\x80\x91\x01")


def test_sorted_set_records_with_maps_where_arrays_belong() -> None:
    """``decode_member`` and ``decode_node`` indexed a map by 0 (KeyError)."""
    with pytest.raises(CorruptData, match="member record is malformed"):
        zrec.decode_member(b"\x99\x02\x00\xc4\x00\xc0\x90\x00\xc4\x00\x90\x91\x80")
    for node in (
        [2, 0, b"", [], [[b"w", 0, b"", 0, [], [{}], None, 0]]],  # helped
        [2, 0, b"", [], [[b"w", 0, b"", 0, [], [], {}, 0]]],  # intent
    ):
        with pytest.raises(CorruptData, match="count record is malformed"):
            zrec.decode_node(pack(node))
