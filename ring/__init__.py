"""ringkv: a Dynamo-style, leaderless, replicated key-value store.

``ring.open(path)`` opens an embedded store. Every error is a :class:`ring.RingError`.
"""

from ring.embedded import Batch, Store, Versioned, open
from ring.errors import (
    CorruptData,
    InvalidInput,
    ProtocolError,
    QuorumError,
    RingError,
    StoreClosed,
    StoreLocked,
    Unavailable,
)

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "CorruptData",
    "InvalidInput",
    "ProtocolError",
    "QuorumError",
    "RingError",
    "Store",
    "StoreClosed",
    "StoreLocked",
    "Unavailable",
    "Versioned",
    "__version__",
    "open",
]
