"""How a node lays out its local storage, and the storage interface the core is handed.

The core performs no IO of its own: like the clock and the random source, a ``Storage`` object
is passed in. It is local and synchronous (RocksDB under ``ringd``, an in-memory map in the
simulator), and a write that returned is durable by the store's rules (in the write-ahead log).

One key space, one-byte prefixes:

* ``d`` + user key → the encoded record (``ring.core.record``);
* ``m`` + name → node metadata (the actor id of this data directory, the ring members it last
  knew, whether it is running, ...);
* ``h`` + target node + ``\\x00`` + user key → a hinted record kept for ``target``;
* ``x`` + one of the keys above → a record that did not decode and could not be repaired, moved
  aside (kept for inspection, never read by the node).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

DATA = b"d"
META = b"m"
HINT = b"h"
QUARANTINE = b"x"  # + the storage key of a record that does not decode and could not be repaired
ACTOR_KEY = META + b"actor"
RING_KEY = META + b"ring"
# "actor counter": the highest counter of this node's actor in a record it reaped; its new dots
# are above it (``ring.core.aae``).
FLOOR_KEY = META + b"floor"
# Present while a node runs (deleted by a clean stop); its value says whether that run fsynced
# every write (b"1") or not (b"0"). Found at a start: the last run ended without a clean stop.
RUNNING_KEY = META + b"running"


class Storage(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def write(
        self,
        puts: Iterable[tuple[bytes, bytes]],
        deletes: Iterable[bytes] = (),
        *,
        sync: bool = False,
    ) -> None: ...

    def scan(
        self,
        prefix: bytes | None = None,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, bytes]]: ...

    def close(self) -> None: ...


def hint_key(target: str, key: bytes) -> bytes:
    return HINT + target.encode() + b"\x00" + key


def split_hint_key(skey: bytes) -> tuple[str, bytes]:
    target, _, key = skey[1:].partition(b"\x00")
    return target.decode(), key
