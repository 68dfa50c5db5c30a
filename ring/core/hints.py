"""Hints a node keeps for other nodes, indexed by target — pure (storage is handed in).

A hint is a record a node holds for a member that should have it and does not yet: a fallback
keeps one for the down primary it stood in for, and a coordinator keeps one for every replica
that had not stored a write when the client was answered (Dynamo's hinted handoff). On disk a
hint is ``h`` + target + ``\\x00`` + key → encoded record (``ring.core.layout``); several writes
of one key for one target merge into one hint with ``reconcile``.

The store keeps an in-memory index, target → keys (built by one scan when the node starts, then
kept up to date), so that delivery never rescans the hint space: each delivery step takes the
next few keys of a target that is up, skipping those already in flight or **held** (a hint a
coordinator wrote for a replica whose acknowledgement may still arrive; it is dropped if the
acknowledgement comes, released for delivery when the write's request ends). Iteration follows
insertion order, so a run replays exactly.

Invariants: ``counts()`` equals the number of hint keys per target on disk; a hint is deleted only
when its target acknowledged exactly the bytes still stored (a hint that changed in the meantime
is delivered again).
"""

from __future__ import annotations

from ring.core import record as rec
from ring.core.layout import HINT, QUARANTINE, Storage, hint_key, split_hint_key


class HintStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._index: dict[str, dict[bytes, None]] = {}
        for skey, _ in storage.scan(HINT):
            target, key = split_hint_key(skey)
            self._index.setdefault(target, {})[key] = None
        self.inflight: set[bytes] = set()  # hint keys (skey) being delivered
        self.held: set[bytes] = set()  # hint keys whose write may still be acknowledged
        # Hints store_own wrote where none was, and not changed since: hint key -> the bytes,
        # so that telling whether one still holds what a write stored needs no read.
        self._fresh: dict[bytes, bytes] = {}
        # The table epoch each hint was routed on (the oldest, when several merged): a hint
        # whose partition changed since is given to every member of its lists, not just its
        # target (``Coordinator.deliver_hints``). Not kept on disk: after a restart it is 0.
        self._epochs: dict[bytes, int] = {}

    # --- queries -------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Hints held per target (only targets with at least one)."""
        return {t: len(keys) for t, keys in sorted(self._index.items()) if keys}

    def targets(self) -> list[str]:
        return sorted(t for t, keys in self._index.items() if keys)

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._index.values())

    def holds(self, key: bytes) -> bool:
        """Whether a hint of ``key`` is kept, for any target."""
        return any(key in keys for keys in self._index.values())

    def epoch_of(self, target: str, key: bytes) -> int:
        return self._epochs.get(hint_key(target, key), 0)

    def forget_epoch(self, target: str, key: bytes) -> None:
        self._epochs[hint_key(target, key)] = 0

    def matches(self, target: str, key: bytes, record: bytes) -> bool:
        skey = hint_key(target, key)
        fresh = self._fresh.get(skey)
        if fresh is not None:
            return fresh is record or fresh == record
        return self.storage.get(skey) == record

    def batch(self, target: str, limit: int) -> list[tuple[bytes, bytes, bytes]]:
        """Up to ``limit`` hints of ``target`` to deliver now: ``(skey, key, record)``."""
        out: list[tuple[bytes, bytes, bytes]] = []
        for key in self._index.get(target, ()):
            if len(out) >= limit:
                break
            skey = hint_key(target, key)
            if skey in self.inflight or skey in self.held:
                continue
            raw = self.storage.get(skey)
            if raw is not None:
                out.append((skey, key, raw))
        return out

    def page(self, after: bytes | None, max_bytes: int) -> tuple[list[object], bytes | None, bool]:
        """A page of every hint kept, whatever its target: ``([key, record, ...], cursor,
        finished)``; the cursor is opaque (a storage key)."""
        start = HINT if after is None else after + b"\x00"
        flat: list[object] = []
        size = looked = 0
        last = after
        for skey, raw in self.storage.scan(HINT, start, None, False, 20_000):
            looked += 1
            last = skey
            flat += (split_hint_key(skey)[1], raw)
            size += len(skey) + len(raw)
            if size >= max_bytes:
                return flat, last, False
        return flat, last, looked < 20_000

    # --- changes -------------------------------------------------------------------------------

    def store(self, target: str, key: bytes, record: bytes, epoch: int = 0) -> None:
        """Merge ``record`` into the hint for ``target`` (``record`` is checked; ``ValueError``).
        A stored hint that does not decode is replaced: it cannot be delivered anyway.
        ``epoch``: the table epoch it was routed on."""
        skey = hint_key(target, key)
        self._fresh.pop(skey, None)
        self._note_epoch(skey, epoch)
        local = self.storage.get(skey)
        try:
            merged = rec.merge_encoded(local, record)
        except rec.LocalCorrupt:
            merged = record
        if merged is not None:
            self.storage.put(skey, merged)
        self._index.setdefault(target, {})[key] = None

    def _note_epoch(self, skey: bytes, epoch: int) -> None:
        known = self._epochs.get(skey)
        if epoch > 0 and (known is None or epoch < known):
            self._epochs[skey] = epoch
        elif epoch <= 0:
            self._epochs[skey] = 0

    def store_own(self, target: str, key: bytes, record: bytes, epoch: int = 0) -> None:
        """``store`` for a record this node just made (a write it coordinates): when no hint of
        ``key`` is kept for ``target`` (the index knows), it is written as is, without reading
        or checking anything — the common case, on the path of every write."""
        keys = self._index.setdefault(target, {})
        if key in keys:
            self.store(target, key, record, epoch)
            return
        skey = hint_key(target, key)
        self._epochs[skey] = epoch
        self.storage.put(skey, record)
        self._fresh[skey] = record
        keys[key] = None

    def quarantine(self, target: str, key: bytes) -> None:
        """Move a hint its target refused (it does not decode there) out of the way, so it is
        neither retried forever nor lost: it stays under ``QUARANTINE``."""
        skey = hint_key(target, key)
        raw = self.storage.get(skey)
        if raw is not None:
            self.storage.write([(QUARANTINE + skey, raw)], ())
        self.drop(target, key)

    def drop(self, target: str, key: bytes) -> None:
        skey = hint_key(target, key)
        self._fresh.pop(skey, None)
        self._epochs.pop(skey, None)
        self.storage.write((), [skey])
        keys = self._index.get(target)
        if keys is not None:
            keys.pop(key, None)
        self.held.discard(skey)
