"""Group commit: the writes a node makes while handling one batch of network input reach the
disk as one atomic RocksDB write batch, before any reply to them leaves the process.

The core writes synchronously (``put``) and then emits its acknowledgements as effects. The
runtime only writes frames to sockets in its flush step, and calls :meth:`commit` first, so an
acknowledgement is never sent for a write that is not yet in the write-ahead log — the rule of
the architecture — while ten replica writes that arrived together cost one log append (and,
with ``sync``, one fsync) instead of ten.

Reads see the pending writes (``get`` looks at them first); a scan commits them first, so it
never has to merge two sources.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ring.core.layout import Storage

_DELETED = object()


class GroupCommitStorage:
    def __init__(self, base: Storage, *, sync: bool = False) -> None:
        self.base = base
        self.sync = sync
        self._pending: dict[bytes, bytes | object] = {}
        self.commits = 0

    def get(self, key: bytes) -> bytes | None:
        value = self._pending.get(key)
        if value is None:
            return self.base.get(key)
        return None if value is _DELETED else value  # type: ignore[return-value]

    def put(self, key: bytes, value: bytes) -> None:
        self._pending[key] = value

    def write(
        self,
        puts: Iterable[tuple[bytes, bytes]],
        deletes: Iterable[bytes] = (),
        *,
        sync: bool = False,
    ) -> None:
        if sync:
            # A write that asks to be on disk when it returns (node identity) does not wait.
            self.commit()
            self.base.write(puts, deletes, sync=True)
            return
        for key in deletes:
            self._pending[key] = _DELETED
        for key, value in puts:
            self._pending[key] = value

    def commit(self) -> None:
        """Apply every pending write as one atomic batch (one log append)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        puts = [(k, v) for k, v in pending.items() if v is not _DELETED]
        deletes = [k for k, v in pending.items() if v is _DELETED]
        self.base.write(puts, deletes, sync=self.sync)  # type: ignore[arg-type]
        self.commits += 1

    def scan(
        self,
        prefix: bytes | None = None,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        self.commit()
        return self.base.scan(prefix, start, stop, reverse, limit)

    def close(self) -> None:
        self.commit()
        self.base.close()
