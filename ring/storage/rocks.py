"""The RocksDB backend, through rocksdict in raw (bytes) mode.

Durability: every write goes through RocksDB's write-ahead log before it returns, so a write
that returned survives ``kill -9`` of the process. With ``sync=True`` the log is also fsynced.

Locking: RocksDB holds an exclusive lock on ``DIR/LOCK`` while a database is open. When it is taken
we say by whom: on open we record our pid and command line in ``DIR/ringkv.owner`` and read it back
for the error message.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import cast

import rocksdict

from ring.errors import StoreClosed, StoreLocked
from ring.storage.base import scan_bounds

OWNER_FILE = "ringkv.owner"


def _options() -> rocksdict.Options:
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(True)
    table = rocksdict.BlockBasedOptions()
    table.set_bloom_filter(10, False)
    table.set_block_cache(rocksdict.Cache(64 * 1024 * 1024))
    opts.set_block_based_table_factory(table)
    opts.increase_parallelism(2)
    return opts


def _owner_description(path: str) -> str:
    try:
        with open(os.path.join(path, OWNER_FILE), encoding="utf-8") as f:
            info = f.read().strip()
    except OSError:
        return "another process"
    return info or "another process"


class RocksStorage:
    def __init__(self, path: str, *, sync: bool = False) -> None:
        self.path = os.path.abspath(path)
        os.makedirs(self.path, exist_ok=True)
        try:
            self._db = rocksdict.Rdict(self.path, options=_options())
        except Exception as exc:
            text = str(exc)
            if "lock" in text.lower():
                raise StoreLocked(
                    f"data directory {self.path} is locked: it is in use by "
                    f"{_owner_description(self.path)}. Stop that process or use another "
                    "data directory."
                ) from None
            raise
        self._write_owner()
        self._wopts = rocksdict.WriteOptions()
        self._wopts.sync = sync
        self._sync_opts = rocksdict.WriteOptions()
        self._sync_opts.sync = True
        self._db.set_write_options(self._wopts)
        self._closed = False

    def _write_owner(self) -> None:
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        cmd = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
        with open(
            os.path.join(self.path, OWNER_FILE), "w", encoding="utf-8", errors="backslashreplace"
        ) as f:
            f.write(f"pid {os.getpid()} ({cmd[:200] or 'python'}), since {started}\n")

    def _check(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")

    def get(self, key: bytes) -> bytes | None:
        try:
            return self._db.get(key)
        except rocksdict.DbClosedError:
            raise StoreClosed("the store is closed") from None

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """The values of ``keys`` in order (None where absent), in one RocksDB multi-get."""
        if not keys:
            return []
        try:
            values = self._db.get(keys)  # type: ignore[arg-type]  # (bytes is a key type)
        except rocksdict.DbClosedError:
            raise StoreClosed("the store is closed") from None
        return cast("list[bytes | None]", values)

    def put(self, key: bytes, value: bytes) -> None:
        try:
            self._db.put(key, value)
        except rocksdict.DbClosedError:
            raise StoreClosed("the store is closed") from None

    def fast_paths(self) -> tuple[Callable[[bytes], bytes | None], Callable[[bytes, bytes], None]]:
        """rocksdict's own bound ``get`` and ``put``, for a caller whose every operation counts
        (the embedded store saves one Python call per get and put with them).

        They skip what :meth:`get` and :meth:`put` add: no closed check, so after :meth:`close`
        they raise rocksdict's own error, not ``StoreClosed``; the caller must stop using them
        before it closes this storage. ``put`` writes with this storage's write options (the
        ``sync`` it was opened with).
        """
        return self._db.get, self._db.put

    def write(
        self,
        puts: Iterable[tuple[bytes, bytes]],
        deletes: Iterable[bytes] = (),
        *,
        sync: bool = False,
    ) -> None:
        self._check()
        wb = rocksdict.WriteBatch(raw_mode=True)
        for key in deletes:
            wb.delete(key)
        for key, value in puts:
            wb.put(key, value)
        if sync:
            self._db.write(wb, self._sync_opts)
        else:
            self._db.write(wb)

    def scan(
        self,
        prefix: bytes | None = None,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check()
        lower, upper = scan_bounds(prefix, start, stop)
        if limit is not None and limit <= 0:
            return
        # ``items`` steps the iterator in Rust: one Python call per pair instead of four
        # (valid, key, value, next), about 1.5x the rate. Its ``from_key`` seeks forwards
        # (the first key >= it) or backwards (the last key <= it).
        seek = upper if reverse else lower
        items = cast(
            Iterator[tuple[bytes, bytes]],  # raw mode: keys and values are bytes
            self._db.items(backwards=reverse)
            if seek is None
            else self._db.items(backwards=reverse, from_key=seek),
        )
        n = 0
        for key, value in items:
            if reverse:
                if upper is not None and key >= upper:
                    continue  # the seek lands on ``upper`` itself when it is stored
                if lower is not None and key < lower:
                    break
            elif upper is not None and key >= upper:
                break
            yield key, value
            n += 1
            if limit is not None and n >= limit:
                break

    def flush(self) -> None:
        self._check()
        self._db.flush_wal(True)

    def property_int(self, name: str) -> int | None:
        """An integer RocksDB property (``rocksdb.estimate-num-keys``, ...), or None when the
        store is closed or RocksDB does not know it (``ringd --metrics`` reads a few)."""
        if self._closed:
            return None
        try:
            value = self._db.property_int_value(name)
        except Exception:  # rocksdict raises a plain exception for an unknown property
            return None
        return int(value) if isinstance(value, int) else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.path, OWNER_FILE))
        self._db.close()
