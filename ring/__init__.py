"""ringkv: a Dynamo-style, leaderless, replicated key-value store.

``ring.open(path)`` opens an embedded store; ``ring.connect("host:port,...")`` connects to a
cluster (``ring.aio.connect`` is the asyncio twin). Every error is a :class:`ring.RingError`.
"""

from typing import Any

from ring.client import connect
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
    "connect",
    "open",
]


def __getattr__(name: str) -> Any:
    # ring.aio imports asyncio; load it only for programs that use it.
    if name == "aio":
        import importlib

        return importlib.import_module("ring.aio")
    raise AttributeError(f"module 'ring' has no attribute {name!r}")
