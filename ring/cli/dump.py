"""The dump file format of ``ringctl save`` and ``ringctl load``.

A dump holds every stored record exactly as the store keeps it — vector clocks, concurrent
siblings and tombstones — never a resolved value, so loading it loses no causal history. Layout::

    RINGKV-DUMP 1\\n                      header line: magic, a space, the format version, LF
    [key, record] [key, record] ...      msgpack stream, one 2-array per record:
                                         key = bin (the user key),
                                         record = bin (``ring.core.record.encode`` output)
    {"records": N, "sha256": <32 bytes>} trailer: a msgpack map; N is the number of items and
                                         sha256 the digest of every byte before the trailer
                                         (header line included)
    <end of file>                        nothing may follow the trailer

Items are written in key order but a reader must not rely on it (merging is order-free).

Invariants a reader checks before anything is applied (:func:`verify`): the magic and a version it
understands; every item is a 2-array of bin whose record decodes with
``ring.core.record.decode``; the trailer is present and is the last thing in the file; the
trailer's count equals the number of items and its digest equals the SHA-256 of the bytes before
it. A truncated dump has no trailer (or a partial one), so it is always refused; a flipped byte
either breaks the msgpack structure, breaks a record, or changes the digest.

This module does no IO of its own beyond the streams it is handed; it knows nothing of stores.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import msgpack

from ring.core import record as rec
from ring.errors import CorruptData

MAGIC = b"RINGKV-DUMP"
FORMAT_VERSION = 1
HEADER = MAGIC + b" %d\n" % FORMAT_VERSION
MAX_HEADER_BYTES = 64
# Bounds what msgpack will buffer for one item; a corrupt length prefix can then only make the
# reader run out of file (reported as truncation), never make it allocate without limit.
MAX_ITEM_BYTES = 1 << 30
_CHUNK = 1 << 20

# Called with (bytes processed, records processed); used for progress display.
OnProgress = Callable[[int, int], None]


class DumpError(CorruptData):
    """The file is not a complete, intact ringkv dump. The message says what is wrong."""


@dataclass(frozen=True, slots=True)
class DumpSummary:
    records: int
    size_bytes: int
    sha256: str  # hex digest of everything before the trailer


def _noop(done_bytes: int, done_records: int) -> None:
    pass


# --- writing -------------------------------------------------------------------------------


def write(
    out: BinaryIO, items: Iterable[tuple[bytes, bytes]], on_progress: OnProgress = _noop
) -> DumpSummary:
    """Write ``(key, encoded record)`` items as a dump to ``out`` and return its summary.

    Every record is decoded first, so a dump is never written with a record that ``load`` would
    refuse: a record the store cannot decode raises :class:`CorruptData`.
    """
    digest = hashlib.sha256()
    packer = msgpack.Packer(use_bin_type=True)
    size = 0

    def emit(data: bytes) -> None:
        nonlocal size
        out.write(data)
        digest.update(data)
        size += len(data)

    emit(HEADER)
    count = 0
    for key, raw in items:
        try:
            rec.decode(raw)
        except ValueError as exc:
            raise CorruptData(f"stored record for key {key!r} cannot be decoded: {exc}") from None
        emit(packer.pack([key, raw]))
        count += 1
        on_progress(size, count)
    checksum = digest.digest()
    trailer = packer.pack({"records": count, "sha256": checksum})
    out.write(trailer)
    return DumpSummary(count, size + len(trailer), checksum.hex())


# --- reading -------------------------------------------------------------------------------


def _read_header(f: BinaryIO) -> int:
    """Check the header line; return its length."""
    line = f.readline(MAX_HEADER_BYTES)
    if not line:
        raise DumpError("the file is empty, not a ringkv dump")
    if not line.startswith(MAGIC + b" ") or not line.endswith(b"\n"):
        raise DumpError(f"not a ringkv dump (the file does not start with {MAGIC.decode()!r})")
    version = line[len(MAGIC) + 1 : -1]
    if version != b"%d" % FORMAT_VERSION:
        shown = version.decode("ascii", "replace")
        raise DumpError(
            f"dump format version {shown!r} is not one this ringctl reads "
            f"(it reads {FORMAT_VERSION})"
        )
    return len(line)


def _unpacker(f: BinaryIO) -> msgpack.Unpacker:
    return msgpack.Unpacker(
        f, raw=False, use_list=True, max_buffer_size=MAX_ITEM_BYTES, read_size=_CHUNK
    )


def _check_item(obj: object, index: int, offset: int) -> tuple[bytes, rec.Record]:
    where = f"record #{index + 1} (at byte {offset})"
    if not (
        isinstance(obj, list)
        and len(obj) == 2
        and isinstance(obj[0], bytes)
        and isinstance(obj[1], bytes)
    ):
        raise DumpError(f"{where} is malformed: expected [key, record] as two byte strings")
    try:
        return obj[0], rec.decode(obj[1])
    except ValueError as exc:
        raise DumpError(f"{where}, key {obj[0]!r}, is corrupt: {exc}") from None


def _items(f: BinaryIO, header_len: int) -> Iterator[tuple[int, object]]:
    """(start offset, object) for each msgpack object after the header; the final yield is
    (end offset of the last complete object, None)."""
    unpacker = _unpacker(f)
    end = header_len
    while True:
        try:
            obj = next(unpacker)
        except StopIteration:
            yield end, None
            return
        except Exception as exc:  # msgpack raises several unrelated types on bad input
            raise DumpError(f"the dump is corrupt at byte {end}: {exc}") from None
        yield end, obj
        end = header_len + unpacker.tell()


def _file_size(f: BinaryIO) -> int:
    pos = f.tell()
    size = f.seek(0, io.SEEK_END)
    f.seek(pos)
    return size


def _check_trailer(obj: dict[object, object], count: int, offset: int) -> tuple[int, bytes]:
    records, checksum = obj.get("records"), obj.get("sha256")
    if set(obj) != {"records", "sha256"} or not isinstance(records, int):
        raise DumpError(f"the trailer (at byte {offset}) is malformed")
    if not isinstance(checksum, bytes) or len(checksum) != 32:
        raise DumpError(f"the trailer (at byte {offset}) has no valid SHA-256 checksum")
    if records != count:
        raise DumpError(
            f"record count mismatch: the trailer says {records} records, the file holds {count}"
        )
    return records, checksum


def _digest_prefix(f: BinaryIO, length: int) -> bytes:
    f.seek(0)
    digest = hashlib.sha256()
    left = length
    while left:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            break
        digest.update(chunk)
        left -= len(chunk)
    return digest.digest()


def verify(f: BinaryIO, on_progress: OnProgress = _noop) -> DumpSummary:
    """Check a whole dump without applying anything; raise :class:`DumpError` naming the first
    problem. ``f`` must be seekable (``load`` buffers stdin to a temporary file)."""
    size = _file_size(f)
    f.seek(0)
    header_len = _read_header(f)
    for count, (offset, obj) in enumerate(_items(f, header_len)):
        if obj is None:
            where = "right after the header" if count == 0 else f"after record #{count}"
            raise DumpError(
                f"the dump is truncated: it ends {where} (byte {offset} of {size}) without "
                "its trailer"
            )
        if isinstance(obj, dict):
            records, checksum = _check_trailer(obj, count, offset)
            trailer_end = _trailer_end(f, header_len, offset)
            if trailer_end != size:
                raise DumpError(f"unexpected data after the trailer (byte {trailer_end} of {size})")
            if _digest_prefix(f, offset) != checksum:
                raise DumpError("checksum mismatch: the dump was modified or damaged")
            return DumpSummary(records, size, checksum.hex())
        _check_item(obj, count, offset)
        on_progress(offset, count + 1)
    raise AssertionError("unreachable: _items always ends with a None object")


def _trailer_end(f: BinaryIO, header_len: int, trailer_offset: int) -> int:
    """Where the trailer object ends: re-read it on its own, since the unpacker that found it
    reads ahead and cannot say whether anything follows."""
    f.seek(trailer_offset)
    unpacker = _unpacker(f)
    next(unpacker)
    return trailer_offset + int(unpacker.tell())


def read(f: BinaryIO, on_progress: OnProgress = _noop) -> Iterator[tuple[bytes, rec.Record]]:
    """The ``(key, record)`` items of a dump that :func:`verify` accepted, in file order."""
    f.seek(0)
    header_len = _read_header(f)
    for count, (offset, obj) in enumerate(_items(f, header_len)):
        if obj is None or isinstance(obj, dict):
            return
        yield _check_item(obj, count, offset)
        on_progress(offset, count + 1)


def read_encoded(f: BinaryIO) -> Iterator[tuple[bytes, bytes]]:
    """The ``(key, encoded record)`` items of a dump that :func:`verify` accepted, in file order,
    with the record bytes as stored (a cluster load sends them as they are; ``verify`` decoded
    every one already)."""
    f.seek(0)
    header_len = _read_header(f)
    for count, (offset, obj) in enumerate(_items(f, header_len)):
        if obj is None or isinstance(obj, dict):
            return
        if not (isinstance(obj, list) and len(obj) == 2 and all(isinstance(x, bytes) for x in obj)):
            raise DumpError(
                f"record #{count + 1} (at byte {offset}) is malformed: expected [key, record] as "
                "two byte strings"
            )
        yield obj[0], obj[1]
