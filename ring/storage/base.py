"""The storage protocol every backend implements.

A backend is an ordered map of bytes to bytes with atomic write batches. ``write`` returns only
once the batch is in the write-ahead log (RocksDB) so that it survives the death of the process;
``sync=True`` also waits for the disk (fsync).

``prefix_end`` and ``scan_bounds`` live in ``ring.common`` (the cluster clients fold scan bounds
too, without importing a storage engine); they are re-exported here for the backends.
"""

from __future__ import annotations

from ring.common import prefix_end, scan_bounds
from ring.core.layout import Storage

__all__ = ["Storage", "prefix_end", "scan_bounds"]
