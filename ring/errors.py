"""The ringkv error hierarchy. Every error a user can see is a :class:`RingError`."""

from __future__ import annotations


class RingError(Exception):
    """Base class of every ringkv error."""


class InvalidInput(RingError, ValueError):
    """A key, value, context or setting that ringkv refuses (too large, wrong type, unknown)."""


class StoreLocked(RingError):
    """The data directory is held by another process (or another store in this process)."""


class StoreClosed(RingError):
    """The store was closed; open it again to use it."""


class CorruptData(RingError):
    """Stored data or a dump file that cannot be decoded or fails its checksum."""


class Unavailable(RingError):
    """No node could be reached, or the node cannot serve the request now."""


class QuorumError(Unavailable):
    """Fewer replicas than the quorum answered within the request timeout."""

    def __init__(self, message: str, *, replied: int = 0, needed: int = 0) -> None:
        super().__init__(message)
        self.replied = replied
        self.needed = needed


class ProtocolError(RingError):
    """A peer sent a frame that does not follow the protocol."""


class AuthenticationFailed(ProtocolError):
    """The node (or client) could not prove that it knows the cluster secret, or refused our
    proof: wrong or missing secret. A :class:`ProtocolError` (``ringctl`` exits 5)."""


class MultiKeyError(RingError):
    """Some keys of a ``get_many``, ``put_many`` or ``delete_many`` on a cluster failed.

    Every key was attempted; the keys not named here succeeded. ``errors`` maps each failed key
    (as bytes, in the order the keys were given) to its own error — a ``QuorumError``,
    ``Unavailable``, ``InvalidInput``, ... as a single ``get``, ``put`` or ``delete`` of that key
    would have raised. ``values`` is what ``get_many`` read, in input order, with None for each
    failed key (and for a missing one); None for ``put_many`` and ``delete_many``.
    """

    SHOWN = 5  # failed keys the message names; ``errors`` holds them all

    def __init__(
        self,
        op: str,
        errors: dict[bytes, Exception],
        total: int,
        values: list[bytes | None] | None = None,
    ) -> None:
        shown = "; ".join(
            f"{key!r}: {type(exc).__name__}: {exc}"
            for key, exc in list(errors.items())[: self.SHOWN]
        )
        more = f"; and {len(errors) - self.SHOWN} more" if len(errors) > self.SHOWN else ""
        super().__init__(
            f"{op}: {len(errors)} of {total} keys failed ({shown}{more}); the other keys "
            "succeeded. The error's .errors maps every failed key to its error."
        )
        self.op = op
        self.errors = errors
        self.total = total
        self.values = values
