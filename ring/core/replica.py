"""The replica side of a node: what it does with the records other nodes send it or ask for —
pure (storage is handed in).

* ``ReplicaPut`` — merge the record into ours with ``reconcile`` (``record.merge_encoded``), or,
  with ``hint_for`` set, keep it as a hint for that node (we are its fallback); acknowledge
  with ``ok`` unless the record does not decode. A record from elsewhere is checked in full
  before anything of it is kept; a stored record of ours that does not decode is replaced by
  the good incoming one.
* ``ReplicaGet`` — answer with our stored bytes as they are (the coordinator checks them).
* ``ScanRequest`` — answer a page of at most ``limit`` records and about ``max_bytes`` (one
  record at least, so a scan always advances), and whether it was cut.

It also keeps the rules a coordinator applies to replicas' records: which replies are usable
(``checked``), and setting aside (``quarantine``) a record that does not decode and of which
no replica has a good copy. Every problem is counted and logged once per kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ring.core import messages as m
from ring.core import record as rec
from ring.core import validate
from ring.core.hints import HintStore
from ring.core.layout import DATA, QUARANTINE, Storage

SCAN_PAGE_BYTES = 4 * 1024 * 1024  # a node's scan page holds about this much (one record more)

Report = Callable[[str, str, list[m.Effect]], None]
Send = Callable[[str, Any, list[m.Effect]], None]


class Replica:
    def __init__(
        self,
        name: str,
        storage: Storage,
        hints: HintStore,
        *,
        stats: dict[str, int],
        report: Report,
        send: Send,
    ) -> None:
        self.name = name
        self.storage = storage
        self.hints = hints
        self.stats = stats
        self.report = report
        self.send = send
        # Told of every change of a stored record, (user key, old, new) (None: absent): the
        # anti-entropy trees (``ring.core.aae``) follow the disk through it. Every write of a
        # record goes through ``merge``, ``store`` or ``delete`` below.
        self.on_change: Callable[[bytes, bytes | None, bytes | None], None] = _ignore

    def _count(self, what: str, n: int = 1) -> None:
        self.stats[what] = self.stats.get(what, 0) + n

    # --- messages ------------------------------------------------------------------------------

    def on_put(self, src: str, msg: m.ReplicaPut, effects: list[m.Effect]) -> None:
        ok = True
        try:
            if not isinstance(msg.record, bytes) or not isinstance(msg.key, bytes):
                raise ValueError("a replicated record and its key are bytes")
            if msg.hint_for is not None and msg.hint_for != self.name:
                if not isinstance(msg.hint_for, str):
                    raise ValueError("hint_for is a node name")
                epoch = msg.epoch if isinstance(msg.epoch, int) else 0
                self.hints.store(msg.hint_for, msg.key, msg.record, epoch)  # as a fallback
                self._count("hints_stored")
                self._count("fallback_hints")
            else:
                self.merge(DATA + msg.key, msg.record, effects)
        except ValueError as exc:
            ok = False
            self._count("replica_refused")
            self.report(f"refused:{src}", f"refused a record from {src}: {exc}", effects)
        if msg.op_id:
            self.send(src, m.ReplicaPutAck(msg.op_id, ok), effects)

    def on_get(self, src: str, msg: m.ReplicaGet, effects: list[m.Effect]) -> None:
        if not isinstance(msg.key, bytes):
            raise ValueError("a key is bytes")
        self.send(src, m.ReplicaGetReply(msg.op_id, self.storage.get(DATA + msg.key)), effects)

    def on_scan(self, src: str, msg: m.ScanRequest, effects: list[m.Effect]) -> None:
        validate.scan({"start": msg.start, "stop": msg.stop, "limit": msg.limit})
        budget = msg.max_bytes if isinstance(msg.max_bytes, int) else SCAN_PAGE_BYTES
        budget = min(max(1, budget), SCAN_PAGE_BYTES)
        flat, more = self.scan(msg.start, msg.stop, bool(msg.reverse), msg.limit, budget)
        self.send(src, m.ScanReply(msg.op_id, flat, more), effects)

    # --- records -------------------------------------------------------------------------------

    def store(self, key: bytes, old: bytes | None, new: bytes) -> None:
        """Write ``new`` as the record of ``key`` (whose stored record was ``old``)."""
        self.storage.put(DATA + key, new)
        self.on_change(key, old, new)

    def delete(self, items: list[tuple[bytes, bytes]]) -> None:
        """Delete stored records: ``(storage key, the record it held)`` pairs."""
        self.storage.write((), [skey for skey, _ in items])
        for skey, raw in items:
            self.on_change(skey[1:], raw, None)

    def merge(self, skey: bytes, incoming: bytes, effects: list[m.Effect]) -> bool:
        """Reconcile ``incoming`` (checked: ``ValueError``) into the stored record ``skey``; True
        when that changed it. A stored record that does not decode is replaced by the good
        incoming one."""
        local = self.storage.get(skey)
        try:
            merged = rec.merge_encoded(local, incoming)
        except rec.LocalCorrupt:
            self._count("corrupt_replaced")
            self.report(
                f"replaced:{self.name}",
                f"replaced the record of {m.key_ref(skey[1:])}, "
                "which did not decode, with a good copy from a replica",
                effects,
            )
            merged = incoming
        if merged is None:
            return False
        self.storage.put(skey, merged)
        self.on_change(skey[1:], local, merged)
        return True

    def scan(
        self, start: bytes | None, stop: bytes | None, reverse: bool, limit: int, max_bytes: int
    ) -> tuple[list[Any], bool]:
        """Up to ``limit`` records and about ``max_bytes`` (one record at least) from this node,
        flat ``[key, encoded, ...]``, and whether the page was cut."""
        flat: list[Any] = []
        size = count = 0
        items = self.storage.scan(
            DATA,
            None if start is None else DATA + start,
            None if stop is None else DATA + stop,
            reverse,
            limit,
        )
        for skey, raw in items:
            if count and size + len(skey) + len(raw) > max_bytes:
                return flat, True
            flat += (skey[1:], raw)
            size += len(skey) + len(raw)
            count += 1
        return flat, count >= limit

    def checked(self, node: str, key: bytes, raw: bytes | None, effects: list[m.Effect]) -> bool:
        """Whether ``raw`` (``node``'s record of ``key``, or None) is usable; a bad one is
        counted and reported once per node."""
        if raw is None:
            return True
        try:
            rec.check_encoded(raw)
        except ValueError as exc:
            self._count("corrupt_records")
            self.report(
                f"corrupt:{node}",
                f"record of {m.key_ref(key)} on {node} does not decode "
                f"({exc}); it counts as no answer and is repaired",
                effects,
            )
            return False
        return True

    def quarantine(self, skey: bytes, effects: list[m.Effect]) -> None:
        """Move a stored record that does not decode, and of which no replica has a good copy,
        out of the way (under ``QUARANTINE``): the key can be written again, and the bytes are
        kept for whoever wants to look at them."""
        raw = self.storage.get(skey)
        if raw is None:
            return
        self.storage.write([(QUARANTINE + skey, raw)], [skey])
        self.on_change(skey[1:], raw, None)
        self._count("quarantined")
        self.report(
            "quarantine",
            f"the record of {m.key_ref(skey[1:])} did not decode and no replica had a good copy: "
            "it was set aside (storage key prefix x) so the key can be written again",
            effects,
        )


def _ignore(key: bytes, old: bytes | None, new: bytes | None) -> None:
    pass
