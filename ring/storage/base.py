"""The storage protocol every backend implements.

A backend is an ordered map of bytes to bytes with atomic write batches. ``write`` returns only
once the batch is in the write-ahead log (RocksDB) so that it survives the death of the process;
``sync=True`` also waits for the disk (fsync).
"""

from __future__ import annotations

from ring.core.layout import Storage

__all__ = ["Storage", "prefix_end", "scan_bounds"]


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key that starts with ``prefix`` (None: no bound)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)


def scan_bounds(
    prefix: bytes | None, start: bytes | None, stop: bytes | None
) -> tuple[bytes | None, bytes | None]:
    """Fold a prefix and start/stop into one ``[lower, upper)`` range."""
    lower, upper = start, stop
    if prefix:
        if lower is None or lower < prefix:
            lower = prefix
        end = prefix_end(prefix)
        if end is not None and (upper is None or upper > end):
            upper = end
    return lower, upper
