"""The dump format on its own: round trip, and every truncation and flipped byte is refused."""

from __future__ import annotations

import hashlib
import io

import msgpack
import pytest

from ring.cli import dump
from ring.cli.output import Progress, escape_text, json_bytes
from ring.core import record as rec


def sample_items() -> list[tuple[bytes, bytes]]:
    live = rec.write(rec.EMPTY, "a@1", b"v1", 100)
    sibling = rec.write(live, "b@2", b"v2", 101, context={})
    tombstone = rec.write(live, "a@1", None, 102)
    return [
        (b"k1", rec.encode(live)),
        (b"k\xff", rec.encode(sibling)),
        (b"k3", rec.encode(tombstone)),
    ]


def make_dump(items: list[tuple[bytes, bytes]] | None = None) -> bytes:
    buf = io.BytesIO()
    dump.write(buf, sample_items() if items is None else items)
    return buf.getvalue()


def verify_bytes(data: bytes) -> dump.DumpSummary:
    return dump.verify(io.BytesIO(data))


def test_round_trip_keeps_records_exactly() -> None:
    items = sample_items()
    data = make_dump(items)
    assert data.startswith(b"RINGKV-DUMP 1\n")
    summary = verify_bytes(data)
    assert (summary.records, summary.size_bytes) == (3, len(data))
    got = list(dump.read(io.BytesIO(data)))
    assert got == [(k, rec.decode(raw)) for k, raw in items]
    assert len(got[1][1].siblings) == 2
    assert got[2][1].siblings[0].is_tombstone


def test_empty_dump_is_valid() -> None:
    data = make_dump([])
    assert verify_bytes(data).records == 0
    assert list(dump.read(io.BytesIO(data))) == []


def test_every_truncation_is_refused() -> None:
    data = make_dump()
    for cut in range(len(data)):
        with pytest.raises(dump.DumpError):
            verify_bytes(data[:cut])


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_flipped_byte_is_refused(mask: int) -> None:
    data = bytearray(make_dump())
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= mask
        with pytest.raises(dump.DumpError):
            verify_bytes(bytes(damaged))


def test_messages_name_the_problem() -> None:
    data = make_dump()
    trailer_len = len(msgpack.packb({"records": 3, "sha256": b"\0" * 32}))
    cases = {
        b"": "the file is empty",
        b"hello\n" + data: "not a ringkv dump",
        b"RINGKV-DUMP 2\n" + data[14:]: "format version '2'",
        data[: len(data) - trailer_len]: "truncated: it ends after record #3",
        data[:14]: "truncated: it ends right after the header",
        data[:30]: "truncated",
        data + b"\0": "unexpected data after the trailer",
    }
    for damaged, expected in cases.items():
        with pytest.raises(dump.DumpError) as info:
            verify_bytes(damaged)
        assert expected in str(info.value)
    # A flipped byte inside a value keeps the structure valid: only the checksum can tell.
    at = data.index(b"v1")
    flipped = data[:at] + b"w" + data[at + 1 :]
    with pytest.raises(dump.DumpError, match="checksum mismatch"):
        verify_bytes(flipped)


def test_a_wrong_count_is_refused_even_with_a_matching_checksum() -> None:
    data = make_dump()
    trailer_len = len(msgpack.packb({"records": 3, "sha256": b"\0" * 32}))
    body = data[: len(data) - trailer_len]
    summary = verify_bytes(data)
    forged = body + msgpack.packb({"records": 2, "sha256": bytes.fromhex(summary.sha256)})
    with pytest.raises(dump.DumpError, match="trailer says 2 records, the file holds 3"):
        verify_bytes(forged)


def test_a_record_that_does_not_decode_is_refused_by_name() -> None:
    body = dump.HEADER + msgpack.packb([b"bad", b"not a record"])
    data = body + msgpack.packb({"records": 1, "sha256": hashlib.sha256(body).digest()})
    with pytest.raises(dump.DumpError, match=r"record #1 \(at byte 14\), key b'bad', is corrupt"):
        verify_bytes(data)


def test_save_refuses_to_write_a_record_load_would_refuse() -> None:
    with pytest.raises(dump.CorruptData, match="b'bad'"):
        dump.write(io.BytesIO(), [(b"bad", b"\x93\x02")])


# --- output helpers ----------------------------------------------------------------------------


def test_json_bytes_and_text_escapes() -> None:
    assert json_bytes(b"caf\xc3\xa9") == "café"
    assert json_bytes(b"\xff\x00") == {"b64": "/wA="}
    assert escape_text("café\t\\\n".encode() + b"\xff\x1b") == "café\\t\\\\\\n\\xff\\x1b"


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_at_most_ten_times_a_second() -> None:
    now = [0.0]
    stream = FakeTty()
    progress = Progress(stream, enabled=True, clock=lambda: now[0])
    for i in range(100):
        now[0] = i * 0.01  # one second in all
        progress.show(f"step {i}")
    assert stream.getvalue().count("\r") == 10
    progress.clear()
    assert stream.getvalue().endswith("\r" + " " * len("step 90") + "\r")


def test_progress_is_silent_when_disabled() -> None:
    stream = FakeTty()
    progress = Progress(stream, enabled=False)
    progress.show("x", force=True)
    progress.clear()
    assert stream.getvalue() == ""
