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
