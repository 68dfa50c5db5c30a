"""The wire format: frames, hello, error mapping, addresses, scan paging (no sockets)."""

from __future__ import annotations

import pytest

import ring
from ring.core import messages
from ring.net import clientops
from ring.net.codec import (
    PROTOCOL_VERSION,
    FrameDecoder,
    FrameError,
    FrameTooLarge,
    ReplyTooLarge,
    check_client_hello,
    check_server_hello,
    client_hello,
    encode_frame,
    error_of,
    new_packer,
    parse_address,
    parse_addresses,
    server_hello,
)

SAMPLES = [
    [1, "put", {"key": b"k\x00\xff", "value": b"v" * 1000, "w": 2}],
    [2, None, None],
    [None, "protocol", "why"],
    {"hello": 1, "cluster": "c", "role": "client", "name": None},
    [3, None, [[b"a", b"b"], b"ctx", "text é"]],
    {1: "int keys survive", "s": {"nested": [True, False, 1.5, -7]}},
]


def test_frames_round_trip_in_one_chunk_and_byte_by_byte() -> None:
    packer = new_packer()
    stream = b"".join(encode_frame(packer, obj) for obj in SAMPLES)
    assert FrameDecoder().feed(stream) == SAMPLES
    decoder, out = FrameDecoder(), []
    for i in range(len(stream)):
        out += decoder.feed(stream[i : i + 1])
    assert out == SAMPLES
    assert decoder.buffered == 0


def test_bytes_and_str_keep_their_types() -> None:
    (obj,) = FrameDecoder().feed(encode_frame(new_packer(), [b"bytes", "str"]))
    assert obj == [b"bytes", "str"]
    assert type(obj[0]) is bytes and type(obj[1]) is str


def test_a_frame_split_across_chunks_waits_for_the_rest() -> None:
    frame = encode_frame(new_packer(), SAMPLES[0])
    decoder = FrameDecoder()
    assert decoder.feed(frame[:3]) == []
    assert decoder.feed(frame[3:-1]) == []
    assert decoder.feed(frame[-1:] + frame[:5]) == [SAMPLES[0]]
    assert decoder.buffered == 5


def test_oversized_length_prefix_is_refused_before_the_body_arrives() -> None:
    decoder = FrameDecoder(max_frame_bytes=1024)
    with pytest.raises(FrameError, match="exceeds the limit"):
        decoder.feed((1025).to_bytes(4, "big"))
    assert FrameDecoder(1024).feed(encode_frame(new_packer(), b"x" * 1000)) == [b"x" * 1000]


def test_default_frame_limit_fits_the_largest_value_and_key() -> None:
    decoder = FrameDecoder()
    big = [1, "put", {"key": b"k" * 65536, "value": b"v" * (16 * 1024 * 1024)}]
    header = encode_frame(new_packer(), big)[:4]
    assert decoder.feed(header) == []  # accepted so far: waits for the body


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",  # a byte msgpack never uses
        b"\x92\x01",  # an array of two with one element: truncated
        b"\x01\x02",  # two values in one frame
    ],
)
def test_a_body_that_is_not_exactly_one_value_is_an_error(body: bytes) -> None:
    with pytest.raises(FrameError):
        FrameDecoder().feed(len(body).to_bytes(4, "big") + body)


def test_empty_frame_is_an_error() -> None:
    with pytest.raises(FrameError, match="empty"):
        FrameDecoder().feed(b"\x00\x00\x00\x00")


def test_encoding_above_the_limit_raises() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame(new_packer(), b"x" * 2000, max_bytes=1000)


def test_node_messages_travel_as_frames() -> None:
    msg = messages.ReplicaPut(7, b"key", b"\x01\x02\x90v", None, 1)  # a record is bytes
    (wire,) = FrameDecoder().feed(encode_frame(new_packer(), messages.to_wire(msg)))
    assert messages.from_wire(wire) == msg


def test_hello_checks() -> None:
    assert check_client_hello(client_hello("c"), "c") == ("client", None)
    assert check_client_hello(client_hello("c", "node", "n1"), "c") == ("node", "n1")
    assert check_server_hello(server_hello("c", "n1"), "c") == "n1"
    bad = [
        ([1, "get", {}], "hello"),
        ({**client_hello("c"), "hello": 1}, "version"),
        (client_hello("other"), "cluster"),
        (client_hello("c", "node", None), "name"),
        ({**client_hello("c"), "role": "admin"}, "role"),
    ]
    for obj, why in bad:
        with pytest.raises(FrameError, match=why):
            check_client_hello(obj, "c")
    with pytest.raises(ring.ProtocolError, match="cluster"):
        check_server_hello(server_hello("other", "n1"), "c")
    # A peer must share N, the ring size and the vnode count; the refusal names both values.
    ours = {"n": 3, "partitions": 1024, "vnodes": 128}
    peer = client_hello("c", "node", "n2", settings={**ours, "partitions": 64})
    with pytest.raises(FrameError, match="partitions is 1024 on n1 but 64 on n2"):
        check_client_hello(peer, "c", ours, "n1")
    with pytest.raises(FrameError, match="settings"):
        check_client_hello(client_hello("c", "node", "n2"), "c", ours, "n1")
    same = client_hello("c", "node", "n2", settings=dict(ours))
    assert check_client_hello(same, "c", ours, "n1") == ("node", "n2")
    with pytest.raises(ring.ProtocolError, match=r"refused.*wrong cluster"):
        check_server_hello([None, "protocol", "wrong cluster"], "c")


def test_error_replies_become_typed_errors() -> None:
    err = error_of("quorum", {"message": "1 of 2 replied", "replied": 1, "needed": 2})
    assert isinstance(err, ring.QuorumError)
    assert (err.replied, err.needed, str(err)) == (1, 2, "1 of 2 replied")
    assert isinstance(error_of("invalid", "key too long"), ring.InvalidInput)
    assert type(error_of("unavailable", "no members")) is ring.Unavailable
    assert isinstance(error_of("protocol", "bad"), ring.ProtocolError)
    assert isinstance(error_of("too_large", "big"), ReplyTooLarge)
    timeout = error_of("timeout", {"message": "t", "replied": 0, "needed": 2})
    assert isinstance(timeout, ring.QuorumError) and timeout.needed == 2
    other = error_of("internal", "see the log")
    assert type(other) is ring.RingError and "see the log" in str(other)


def test_addresses() -> None:
    assert parse_address("127.0.0.1:7000") == ("127.0.0.1", 7000)
    assert parse_address("node1:7000") == ("node1", 7000)
    assert parse_address("[::1]:7000") == ("::1", 7000)
    for bad in ["node1", ":7000", "h:port", "h:70000", ""]:
        with pytest.raises(ring.InvalidInput):
            parse_address(bad)
    assert parse_addresses("a:1, b:2,") == ["a:1", "b:2"]
    assert parse_addresses(["a:1"]) == ["a:1"]
    with pytest.raises(ring.InvalidInput):
        parse_addresses(" , ")


def _page(cursor: clientops.ScanCursor, keys: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Answer the cursor's next request from a sorted key list, as a node would."""
    args = cursor.next_args()
    sel = [
        k for k in keys if k >= args.get("start", b"") and ("stop" not in args or k < args["stop"])
    ]
    if args["reverse"]:
        sel.reverse()
    flat: list[bytes] = []
    for k in sel[: args["limit"]]:
        flat += [k, k.upper()]
    bound = sel[args["limit"] - 1] if len(sel) >= args["limit"] else None
    return cursor.feed([flat, bound])


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("limit", [None, 0, 3, 7, 100])
def test_scan_cursor_pages_through_a_range(reverse: bool, limit: int | None) -> None:
    keys = sorted([b"a", b"b\x00", b"b", b"ba", b"bb", b"bz", b"b\xff", b"c", b"d"])
    cursor = clientops.ScanCursor(prefix=b"b", reverse=reverse, limit=limit, page=2)
    got: list[bytes] = []
    while not cursor.done:
        got += [k for k, _ in _page(cursor, keys)]
    expected = sorted(k for k in keys if k.startswith(b"b"))
    if reverse:
        expected.reverse()
    assert got == expected[:limit]


def test_scan_cursor_validates_and_shrinks() -> None:
    with pytest.raises(ring.InvalidInput):
        clientops.ScanCursor(limit=-1)
    cursor = clientops.ScanCursor(page=4)
    assert cursor.shrink() and cursor.page == 2
    assert cursor.shrink() and not cursor.shrink()
    assert clientops.ScanCursor(start=b"b", stop=b"a").done
    cursor = clientops.ScanCursor(page=2)
    cursor.next_args()
    with pytest.raises(ring.ProtocolError):
        cursor.feed([b"a", b"1", b"b", b"2", b"c", b"3"])
    # A page cut short by tombstones is not the end; a nil bound is.
    cursor = clientops.ScanCursor(limit=10, page=3)
    assert cursor.next_args() == {"reverse": False, "limit": 3}
    assert cursor.feed([[b"a", b"1"], b"c"]) == [(b"a", b"1")] and not cursor.done
    assert cursor.next_args() == {"reverse": False, "limit": 3, "start": b"c\x00"}
    assert cursor.feed([[b"d", b"4", b"e", b"5", b"f", b"6", b"g", b"7"], b"g"])[-1] == (b"g", b"7")
    assert cursor.remaining == 5 and not cursor.done
    assert cursor.feed([[b"h", b"8"], None]) == [(b"h", b"8")] and cursor.done


def test_client_arguments_are_checked_like_the_embedded_store() -> None:
    assert clientops.get_args("k", None) == {"key": b"k"}
    assert clientops.write_args(b"k", "v", ring.Versioned((), b"c"), 3) == {
        "key": b"k",
        "value": b"v",
        "context": b"c",
        "w": 3,
    }
    with pytest.raises(ring.InvalidInput):
        clientops.get_args(b"k" * 70000, None)
    with pytest.raises(ring.InvalidInput):
        clientops.write_args(b"k", b"v", None, 0)
    with pytest.raises(ring.InvalidInput):
        clientops.write_args(b"k", b"v", 12, None)
    with pytest.raises(ring.InvalidInput):
        clientops.get_args(12, None)
    assert clientops.versioned_of([[b"a", b"b"], b"c", b"b"]) == ring.Versioned(
        (b"a", b"b"), b"c", b"b"
    )


def test_a_scan_page_larger_than_nodes_accept_is_refused_by_the_client() -> None:
    from ring.common import MAX_SCAN_PAGE
    from ring.net.clientops import ScanCursor

    assert ScanCursor(page=MAX_SCAN_PAGE).next_args()["limit"] == MAX_SCAN_PAGE
    for bad in (0, MAX_SCAN_PAGE + 1, True, 2.5):
        with pytest.raises(ring.InvalidInput, match="page must be"):
            ScanCursor(page=bad)  # type: ignore[arg-type]


def test_the_benchmarks_speak_this_protocol_version() -> None:
    """benchmarks/_wire.py keeps its own copy of the client format (the echo baseline must not
    share code with ringd); its version must follow the node's."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "_wire.py"
    spec = importlib.util.spec_from_file_location("bench_wire", path)
    assert spec is not None and spec.loader is not None
    wire = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wire)
    assert wire.PROTOCOL_VERSION == PROTOCOL_VERSION
