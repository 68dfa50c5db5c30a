"""Storage backends behind one small protocol: RocksDB (default) and in-memory."""

from ring.storage.base import Storage, scan_bounds
from ring.storage.memory import MemoryStorage
from ring.storage.rocks import RocksStorage

__all__ = ["MemoryStorage", "RocksStorage", "Storage", "open_storage", "scan_bounds"]


def open_storage(path: str | None, *, backend: str = "rocksdb", sync: bool = False) -> Storage:
    if backend == "memory":
        return MemoryStorage()
    if backend == "rocksdb":
        if path is None:
            raise ValueError("the rocksdb backend needs a path")
        return RocksStorage(path, sync=sync)
    from ring.errors import InvalidInput

    raise InvalidInput(f"unknown storage backend {backend!r} (use 'rocksdb' or 'memory')")
