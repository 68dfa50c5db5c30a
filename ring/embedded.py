"""The embedded, single-process store: ``ring.open(path)``.

It runs the same pure record logic a cluster replica runs (``ring.core.record.write`` for a
coordinated put, ``reconcile`` for merging) over a local storage backend. The node is its own
only replica, so N = R = W = 1.

Storage layout (one key space, one-byte prefixes): ``d`` + user key → encoded record;
``m`` + name → metadata (the actor id of this data directory).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from ring import multikey
from ring.common import MAX_KEY_BYTES, MAX_VALUE_BYTES, Versioned, to_bytes
from ring.core import record as rec
from ring.core.layout import ACTOR_KEY, DATA
from ring.errors import CorruptData, InvalidInput, StoreClosed
from ring.storage import Storage, open_storage

DEFAULT_DATA_DIR = "ringkv-data"

_SETTINGS = {
    "backend": "rocksdb",
    "sync": False,
    "max_key_bytes": MAX_KEY_BYTES,
    "max_value_bytes": MAX_VALUE_BYTES,
    "name": "local",
}


def default_path() -> str:
    """``$RINGKV_DATA``, else ``./ringkv-data``: the directory ``ring.open()`` and ringctl use."""
    return os.environ.get("RINGKV_DATA") or DEFAULT_DATA_DIR


def versioned_of(record: rec.Record) -> Versioned:
    live = record.live
    return Versioned(
        tuple(s.value for s in live if s.value is not None),
        rec.encode_context(record.context) if record.context else b"",
        rec.resolve(record),
    )


def decode_context(context: Any) -> dict[str, int] | None:
    if context is None:
        return None
    if isinstance(context, Versioned):
        context = context.context
    if not isinstance(context, bytes):
        raise InvalidInput("context must be the bytes from get_versioned(...).context")
    if not context:
        return {}
    try:
        return rec.decode_context(context)
    except ValueError as exc:
        raise InvalidInput(f"context is not one ringkv produced: {exc}") from None


def _resolved(items: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    """``(key, resolved value)`` of stored ``(storage key, record)`` pairs, tombstones skipped:
    ``rec.decode_resolved`` inlined for a record with a short head, the usual case."""
    for skey, raw in items:
        try:
            if raw[0] == 1 and (n := raw[1]) != 255 and len(raw) >= n + 2:
                value: bytes | None = raw[n + 2 :]
            else:
                value = rec.decode_resolved(raw)
        except Exception as exc:
            raise CorruptData(f"stored record for {skey[1:]!r} cannot be decoded: {exc}") from None
        if value is not None:
            yield skey[1:], value


def _versioned(
    items: Iterable[tuple[bytes, bytes]], tombstones: bool
) -> Iterator[tuple[bytes, Versioned]]:
    for skey, raw in items:
        try:
            v = Versioned(*rec.versioned_parts(raw))
        except Exception as exc:
            raise CorruptData(f"stored record for {skey[1:]!r} cannot be decoded: {exc}") from None
        if v.values or tombstones:
            yield skey[1:], v


def _closed(*_: object) -> Any:
    raise StoreClosed("the store is closed; open it again with ring.open()")


_time_ns = time.time_ns


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Store:
    """An open embedded store. Use as a context manager; ``close()`` is idempotent."""

    def __init__(self, path: str | None = None, **config: Any) -> None:
        unknown = set(config) - set(_SETTINGS)
        if unknown:
            raise InvalidInput(
                f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(_SETTINGS)}"
            )
        settings = {**_SETTINGS, **config}
        self.max_key_bytes = int(settings["max_key_bytes"])
        self.max_value_bytes = int(settings["max_value_bytes"])
        backend = str(settings["backend"])
        self.path = None if backend == "memory" else (path or default_path())
        self._sync = bool(settings["sync"])
        self._storage: Storage | None = open_storage(self.path, backend=backend, sync=self._sync)
        self._lock = threading.Lock()
        self.actor = self._load_actor(str(settings["name"]))
        self._bind_fast_paths()

    def _bind_fast_paths(self) -> None:
        """Bind the backend's get and put directly: one Python call less on every operation.

        A backend may offer ``fast_paths()`` (RocksDB does): its engine's own get and put, without
        the closed check, which ``close`` makes unreachable by rebinding both to ``_closed``."""
        storage = self.storage
        fast_paths = getattr(storage, "fast_paths", None)
        if fast_paths is not None and not self._sync:
            self._get, self._put = fast_paths()
        elif self._sync:
            self._get = storage.get
            self._put = lambda k, v: storage.write([(k, v)], sync=True)
        else:
            self._get, self._put = storage.get, storage.put
        get_many = getattr(storage, "get_many", None)
        self._get_many = get_many or (lambda keys: [storage.get(k) for k in keys])

    # --- lifecycle -----------------------------------------------------------------------

    def _load_actor(self, name: str) -> str:
        """This directory's actor id: the name plus an epoch made when the data was created, so a
        wiped directory never reuses the counters of the data it lost."""
        raw = self.storage.get(ACTOR_KEY)
        if raw is not None:
            return raw.decode("utf-8")
        actor = f"{name}@{os.urandom(6).hex()}"
        self.storage.write([(ACTOR_KEY, actor.encode())], sync=True)
        return actor

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            raise StoreClosed("the store is closed; open it again with ring.open()")
        return self._storage

    @property
    def closed(self) -> bool:
        return self._storage is None

    def close(self) -> None:
        with self._lock:
            if self._storage is not None:
                self._storage.close()
                self._storage = None
                self._get = self._put = self._get_many = _closed

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ring.Store {self.path or 'memory'} {state}>"

    # --- records -------------------------------------------------------------------------

    def _key(self, key: Any) -> bytes:
        return to_bytes(key, "key", self.max_key_bytes)

    def _value(self, value: Any) -> bytes:
        return to_bytes(value, "value", self.max_value_bytes)

    def _load(self, skey: bytes) -> rec.Record:
        raw = self.storage.get(skey)
        if raw is None:
            return rec.EMPTY
        try:
            return rec.decode(raw)
        except ValueError as exc:
            raise CorruptData(f"stored record for {skey[1:]!r} cannot be decoded: {exc}") from None

    def _load_many(self, skeys: list[bytes]) -> dict[bytes, rec.Record]:
        """The stored records of distinct storage keys, read in one multi-get."""
        out = {}
        for skey, raw in zip(skeys, self._get_many(skeys)):
            if raw is None:
                out[skey] = rec.EMPTY
                continue
            try:
                out[skey] = rec.decode(raw)
            except ValueError as exc:
                raise CorruptData(
                    f"stored record for {skey[1:]!r} cannot be decoded: {exc}"
                ) from None
        return out

    def get_record(self, key: Any) -> rec.Record:
        """The full stored record (siblings, tombstones, context) — for tools and tests."""
        return self._load(DATA + self._key(key))

    # --- the public API ------------------------------------------------------------------

    def get(self, key: Any) -> bytes | None:
        """The value of ``key``, or ``None``. With siblings, the resolver's choice (the latest)."""
        if key.__class__ is not bytes or len(key) > self.max_key_bytes:
            key = self._key(key)
        raw = self._get(DATA + key)
        if raw is None:
            return None
        try:
            n = raw[1]
            if raw[0] == 1 and n != 255 and len(raw) > n + 1:  # rec.decode_resolved, inlined
                return raw[n + 2 :]  # type: ignore[no-any-return]
            return rec.decode_resolved(raw)
        except Exception as exc:  # a record too short to index fails here too: IndexError
            raise CorruptData(f"stored record for {key!r} cannot be decoded: {exc}") from None

    def get_versioned(self, key: Any) -> Versioned:
        skey = DATA + self._key(key)
        raw = self._get(skey)
        if raw is None:
            return Versioned((), b"", None)
        try:
            return Versioned(*rec.versioned_parts(raw))
        except Exception as exc:
            raise CorruptData(f"stored record for {key!r} cannot be decoded: {exc}") from None

    def get_many(self, keys: Iterable[Any]) -> list[bytes | None]:
        """The values of ``keys`` in the order given (None for a missing or deleted key, as
        ``get``), read in one RocksDB multi-get; a key given twice gets its value twice.

        Every key is checked before anything is read (``InvalidInput`` names the first bad
        one). A stored record that does not decode fails its key only: the others are read, and
        :class:`ring.MultiKeyError` names it with its ``CorruptData`` error."""
        keys = multikey.check_keys(keys, "get_many", self.max_key_bytes)
        unique = multikey.distinct(keys)
        outcomes: list[Any] = self._get_many([DATA + k for k in unique])
        for i, raw in enumerate(outcomes):
            if raw is None:
                continue
            try:
                n = raw[1]
                if raw[0] == 1 and n != 255 and len(raw) > n + 1:  # as in ``get``
                    outcomes[i] = raw[n + 2 :]
                else:
                    outcomes[i] = rec.decode_resolved(raw)
            except Exception as exc:
                outcomes[i] = CorruptData(
                    f"stored record for {unique[i]!r} cannot be decoded: {exc}"
                )
        return multikey.finish_get(keys, unique, outcomes)

    def get_versioned_many(self, keys: Iterable[Any]) -> list[Versioned]:
        """``get_versioned`` of each of ``keys``, in the order given, read in one multi-get;
        checks and errors as :meth:`get_many`."""
        keys = multikey.check_keys(keys, "get_versioned_many", self.max_key_bytes)
        unique = multikey.distinct(keys)
        outcomes: list[Any] = self._get_many([DATA + k for k in unique])
        for i, raw in enumerate(outcomes):
            if raw is None:
                outcomes[i] = Versioned((), b"", None)
                continue
            try:
                outcomes[i] = Versioned(*rec.versioned_parts(raw))
            except Exception as exc:
                outcomes[i] = CorruptData(
                    f"stored record for {unique[i]!r} cannot be decoded: {exc}"
                )
        return multikey.finish_get(keys, unique, outcomes, "get_versioned_many")

    def put_many(self, items: Iterable[tuple[Any, Any]] | Mapping[Any, Any]) -> None:
        """Store many ``(key, value)`` pairs (or a mapping) atomically, in one write batch: all
        of them or, if anything fails, none. Each overwrites what the store holds, as ``put``
        without a context; for a key given twice the last value wins.

        Every pair is checked before anything is written (``InvalidInput`` names the first bad
        one); a stored record that does not decode raises ``CorruptData`` and writes nothing."""
        pairs = multikey.check_items(items, self.max_key_bytes, self.max_value_bytes)
        if not pairs:
            return
        skeys = [DATA + k for k in pairs]
        with self._lock:
            raws = self._get_many(skeys)
            ts = _time_ns() // 1_000_000
            out = []
            for skey, raw, value in zip(skeys, raws, pairs.values()):
                try:
                    new = rec.blind_write_encoded(raw, self.actor, value, ts)
                except Exception as exc:
                    raise CorruptData(
                        f"stored record for {skey[1:]!r} cannot be decoded: {exc}"
                    ) from None
                out.append((skey, new))
            self.storage.write(out, sync=self._sync)

    def delete_many(self, keys: Iterable[Any]) -> None:
        """Delete many keys atomically, in one write batch (tombstones, as ``delete``): all of
        them or, if anything fails, none. Keys are checked before anything is written."""
        unique = multikey.distinct(multikey.check_keys(keys, "delete_many", self.max_key_bytes))
        self._apply_batch([(k, None, None) for k in unique])

    def put(self, key: Any, value: Any, context: Any = None) -> None:
        """Store ``value``. Without ``context`` it overwrites what this store holds; with the
        context of a ``get_versioned`` it supersedes exactly the versions seen there."""
        if key.__class__ is not bytes or len(key) > self.max_key_bytes:
            key = self._key(key)
        if value.__class__ is not bytes or len(value) > self.max_value_bytes:
            value = self._value(value)
        if context is not None:
            self._write(key, value, decode_context(context))
            return
        # The hot path: a put without context needs only the stored clock, not the siblings.
        skey = DATA + key
        with self._lock:
            raw = self._get(skey)
            try:
                new = rec.blind_write_encoded(raw, self.actor, value, _time_ns() // 1_000_000)
            except Exception as exc:
                raise CorruptData(f"stored record for {key!r} cannot be decoded: {exc}") from None
            self._put(skey, new)

    def delete(self, key: Any, context: Any = None) -> None:
        """Delete ``key`` by writing a tombstone (so the delete wins over what it saw)."""
        self._write(self._key(key), None, decode_context(context))

    def _write(self, key: bytes, value: bytes | None, ctx: dict[str, int] | None) -> None:
        skey = DATA + key
        with self._lock:
            local = self._load(skey)
            if value is None and local.is_empty and ctx is None:
                return  # deleting a key never written: nothing to remember
            new = rec.write(local, self.actor, value, now_ms(), ctx)
            if self._sync:
                self.storage.write([(skey, rec.encode(new))], sync=True)
            else:
                self.storage.put(skey, rec.encode(new))

    def merge_record(self, key: bytes, incoming: rec.Record) -> rec.Record:
        """Reconcile ``incoming`` into what is stored (used by ``load`` and replication)."""
        skey = DATA + key
        with self._lock:
            merged = rec.reconcile(self._load(skey), incoming)
            self.storage.write([(skey, rec.encode(merged))], sync=self._sync)
            return merged

    def merge_records(self, items: list[tuple[bytes, rec.Record]]) -> None:
        """Reconcile many records in one atomic write batch."""
        with self._lock:
            pending: dict[bytes, rec.Record] = {}
            for key, incoming in items:
                skey = DATA + key
                base = pending[skey] if skey in pending else self._load(skey)
                pending[skey] = rec.reconcile(base, incoming)
            self.storage.write([(k, rec.encode(r)) for k, r in pending.items()], sync=self._sync)

    def _stored(
        self, prefix: Any, start: Any, stop: Any, reverse: bool, limit: int | None
    ) -> Iterator[tuple[bytes, bytes]]:
        """The stored ``(storage key, record)`` pairs a scan reads (tombstones included; the
        caller applies ``limit``, which counts what it returns), after checking the arguments."""
        if limit is not None and limit < 0:
            raise InvalidInput("limit must be zero or more")
        return self.storage.scan(
            DATA + (self._key(prefix) if prefix is not None else b""),
            None if start is None else DATA + self._key(start),
            None if stop is None else DATA + self._key(stop),
            reverse,
        )

    def scan(
        self,
        prefix: Any = None,
        start: Any = None,
        stop: Any = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` pairs in key order; deleted keys are skipped. A stored record that
        cannot be decoded raises :class:`ring.CorruptData` naming its key. Bad arguments raise at
        the call; the pairs are read as they are iterated."""
        values = _resolved(self._stored(prefix, start, stop, reverse, limit))
        return values if limit is None else islice(values, limit)

    def scan_versioned(
        self,
        prefix: Any = None,
        start: Any = None,
        stop: Any = None,
        reverse: bool = False,
        limit: int | None = None,
        tombstones: bool = False,
    ) -> Iterator[tuple[bytes, Versioned]]:
        """``(key, Versioned)`` pairs in key order: what ``get_versioned`` returns for each key,
        read through one iterator instead of a lookup per key. With ``tombstones`` a deleted
        key the store still remembers comes too, as ``Versioned((), context, None)``; without,
        it is skipped like in ``scan``. ``limit`` counts the pairs returned."""
        pairs = _versioned(self._stored(prefix, start, stop, reverse, limit), tombstones)
        return pairs if limit is None else islice(pairs, limit)

    def scan_records(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Every stored record, tombstones included, encoded: what ``save`` dumps."""
        for skey, raw in self.storage.scan(DATA + prefix):
            yield skey[1:], raw

    def batch(self) -> Batch:
        """A with-block whose puts and deletes apply atomically on a clean exit, and not at all
        if the block raises."""
        return Batch(self)

    def _apply_batch(self, ops: list[tuple[bytes, bytes | None, dict[str, int] | None]]) -> None:
        if not ops:
            return
        with self._lock:
            pending: dict[bytes, rec.Record] = {}
            stored = self._load_many(list(dict.fromkeys(DATA + key for key, _, _ in ops)))
            ts = now_ms()
            for key, value, ctx in ops:
                skey = DATA + key
                local = pending[skey] if skey in pending else stored[skey]
                if value is None and local.is_empty and ctx is None:
                    continue
                pending[skey] = rec.write(local, self.actor, value, ts, ctx)
            if pending:
                self.storage.write(
                    [(k, rec.encode(r)) for k, r in pending.items()], sync=self._sync
                )


class Batch:
    """Collects writes; see :meth:`Store.batch`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._ops: list[tuple[bytes, bytes | None, dict[str, int] | None]] = []
        self._done = False

    def put(self, key: Any, value: Any, context: Any = None) -> None:
        self._check()
        s = self._store
        self._ops.append((s._key(key), s._value(value), decode_context(context)))

    def delete(self, key: Any, context: Any = None) -> None:
        self._check()
        self._ops.append((self._store._key(key), None, decode_context(context)))

    def _check(self) -> None:
        if self._done:
            raise InvalidInput("this batch has already been applied or discarded")

    def __len__(self) -> int:
        return len(self._ops)

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._done = True
        if exc_type is None and self._ops:
            self._store._apply_batch(self._ops)
        self._ops = []


def open(path: str | None = None, **config: Any) -> Store:
    """Open (creating if needed) an embedded store at ``path`` (default ``$RINGKV_DATA`` or
    ``./ringkv-data``). Settings: ``backend`` ("rocksdb" or "memory"), ``sync`` (fsync every
    write), ``max_key_bytes``, ``max_value_bytes``, ``name`` (the actor name of new data)."""
    return Store(path, **config)
