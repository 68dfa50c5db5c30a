"""Entry ids, which are also sort positions, the key layout, and the hybrid clock that makes them.

An entry id is 12 bytes: an 8-byte big-endian *position* and the 4-byte id of the writer that
made it. Positions order the feed, and byte order of ids is feed order, so the entry keys of a
feed sort exactly as the feed reads from its first entry to its last:

* ``add`` (newest first) takes position ``2**63 - hts``: the later the add, the smaller;
* ``append`` (at the tail) takes position ``2**63 + hts``: the later the append, the larger;

where ``hts`` is a hybrid timestamp (microseconds of wall time, pushed past every timestamp the
writer has observed, Kulkarni et al., "Logical Physical Clocks", 2014). Every writer observes the
feed's header and the end it links to before it picks a timestamp, so an add lands before the
entry it links to and an append after it, and a writer's own entries keep the order it made them
in even if its wall clock steps back. Ids are unique because a writer never repeats a timestamp
and writers have distinct random ids.

Users see an id as 24 lowercase hex digits (:func:`to_text`).

Key layout of feed ``F`` (bytes; a str is UTF-8 encoded):

* ``feeds:<len(F)>:F:h``     the header;
* ``feeds:<len(F)>:F:e<id>`` one record per entry (12 raw id bytes after ``e``).

The length prefix keeps one feed's keys from ever being a prefix range of another's.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ring.errors import InvalidInput
from ring.hybrid import HybridClock as _HybridClock

ID_BYTES = 12
WRITER_BYTES = 4
MIDDLE = 1 << 63
MAX_FEED_ID_BYTES = 1024


def head_id(hts: int, writer: bytes) -> bytes:
    """The id of an entry added at the head (newest first) at hybrid time ``hts``."""
    return (MIDDLE - hts).to_bytes(8, "big") + writer


def tail_id(hts: int, writer: bytes) -> bytes:
    """The id of an entry appended at the tail at hybrid time ``hts``."""
    return (MIDDLE + hts).to_bytes(8, "big") + writer


def hts_of(entry_id: bytes) -> int:
    """The hybrid timestamp an entry was created at (its add or append operation's time)."""
    return abs(int.from_bytes(entry_id[:8], "big") - MIDDLE)


def to_text(entry_id: bytes) -> str:
    return entry_id.hex()


def from_text(text: object) -> bytes:
    """Parse a user-given entry id (24 hex digits; bytes of them are accepted too)."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("ascii", "replace")
    if not isinstance(text, str):
        raise InvalidInput(f"an entry id is a str of 24 hex digits, not {type(text).__name__}")
    if len(text) != 2 * ID_BYTES:
        raise InvalidInput(f"entry id {text!r} is not 24 hex digits")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidInput(f"entry id {text!r} is not 24 hex digits") from None


def feed_name(feed_id: object) -> bytes:
    if isinstance(feed_id, str):
        try:
            feed_id = feed_id.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(f"feed id is not valid text: {exc.reason}") from None
    if not isinstance(feed_id, bytes):
        raise InvalidInput(f"a feed id is bytes or str, not {type(feed_id).__name__}")
    if not feed_id or len(feed_id) > MAX_FEED_ID_BYTES:
        raise InvalidInput(f"a feed id is 1 to {MAX_FEED_ID_BYTES} bytes, not {len(feed_id)}")
    return feed_id


class FeedKeys:
    """The store keys of one feed."""

    __slots__ = ("entries", "header", "name")

    def __init__(self, feed_id: object) -> None:
        self.name = feed_name(feed_id)
        prefix = b"feeds:%d:%s:" % (len(self.name), self.name)
        self.header = prefix + b"h"
        self.entries = prefix + b"e"

    def entry(self, entry_id: bytes) -> bytes:
        return self.entries + entry_id

    def id_of(self, key: bytes) -> bytes:
        return key[len(self.entries) :]


class HybridClock(_HybridClock):
    """Strictly increasing hybrid timestamps for one writer (thread-safe), below ``MIDDLE``."""

    def __init__(self, now_us: Callable[[], int] | None = None) -> None:
        super().__init__(now_us, limit=MIDDLE)


def new_writer_id() -> bytes:
    return os.urandom(WRITER_BYTES)
