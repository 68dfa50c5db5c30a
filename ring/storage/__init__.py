"""Storage backends behind one small protocol: RocksDB (default) and in-memory.

The RocksDB backend is imported when it is first used, so the memory backend (and everything
that only needs the protocol) works where rocksdict is not installed.
"""

from typing import TYPE_CHECKING, Any

from ring.errors import InvalidInput
from ring.storage.base import Storage, scan_bounds
from ring.storage.memory import MemoryStorage

if TYPE_CHECKING:
    from ring.storage.rocks import RocksStorage

__all__ = ["MemoryStorage", "RocksStorage", "Storage", "open_storage", "scan_bounds"]


def open_storage(path: str | None, *, backend: str = "rocksdb", sync: bool = False) -> Storage:
    if backend == "memory":
        return MemoryStorage()
    if backend == "rocksdb":
        if path is None:
            raise ValueError("the rocksdb backend needs a path")
        try:
            from ring.storage.rocks import RocksStorage
        except ImportError as exc:
            if exc.name != "rocksdict":
                raise
            raise ImportError(
                "the RocksDB backend needs rocksdict, which cannot be imported here: install it "
                "with `pip install rocksdict`, or use backend='memory'",
                name="rocksdict",
            ) from exc
        return RocksStorage(path, sync=sync)
    raise InvalidInput(f"unknown storage backend {backend!r} (use 'rocksdb' or 'memory')")


def __getattr__(name: str) -> Any:
    if name == "RocksStorage":
        from ring.storage.rocks import RocksStorage

        return RocksStorage
    raise AttributeError(f"module 'ring.storage' has no attribute {name!r}")
