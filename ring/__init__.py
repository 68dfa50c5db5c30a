"""ringkv: a Dynamo-style, leaderless, replicated key-value store.

``ring.open(path)`` opens an embedded store; ``ring.connect("host:port,...")`` connects to a
cluster (``ring.aio.connect`` is the asyncio twin). Every error is a :class:`ring.RingError`.

Importing ``ring`` loads neither the embedded store nor its storage engine (rocksdict): a program
that only talks to a cluster never needs them. ``ring.open``, ``ring.Store`` and ``ring.Batch``
load ``ring.embedded`` on first use, as ``ring.aio`` loads asyncio.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from ring.client import connect
from ring.common import Versioned
from ring.errors import (
    AuthenticationFailed,
    CorruptData,
    InvalidInput,
    MultiKeyError,
    ProtocolError,
    QuorumError,
    RingError,
    StoreClosed,
    StoreLocked,
    Unavailable,
)

if TYPE_CHECKING:
    from ring.embedded import Batch, Store

__version__ = "0.1.0"

__all__ = [
    "AuthenticationFailed",
    "Batch",
    "CorruptData",
    "InvalidInput",
    "MultiKeyError",
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


def _embedded() -> ModuleType:
    """``ring.embedded``, imported now; without rocksdict, an ImportError that says what to do."""
    try:
        from ring import embedded
    except ImportError as exc:
        if exc.name != "rocksdict":
            raise
        raise ImportError(
            "the embedded store (ring.open, ring.Store) needs rocksdict, its RocksDB engine, "
            "which cannot be imported here: install it with `pip install rocksdict`. "
            "ring.connect (a cluster client) works without it.",
            name=exc.name,
        ) from exc
    return embedded


def open(path: str | None = None, **config: Any) -> Store:
    """Open (creating if needed) an embedded store at ``path`` (default ``$RINGKV_DATA`` or
    ``./ringkv-data``). Settings: ``backend`` ("rocksdb" or "memory"), ``sync`` (fsync every
    write), ``max_key_bytes``, ``max_value_bytes``, ``name`` (the actor name of new data)."""
    store: Store = _embedded().open(path, **config)
    return store


def __getattr__(name: str) -> Any:
    # ring.aio imports asyncio; load it only for programs that use it.
    if name == "aio":
        import importlib

        return importlib.import_module("ring.aio")
    # The embedded store imports its storage engine (rocksdict); load it only when used.
    if name in ("Store", "Batch"):
        value = getattr(_embedded(), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ring' has no attribute {name!r}")
