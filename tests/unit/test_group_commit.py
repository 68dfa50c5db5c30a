"""GroupCommitStorage: writes wait in one batch, reads see them, commit applies them at once."""

from __future__ import annotations

from pathlib import Path

from ring.storage import RocksStorage
from ring.storage.group import GroupCommitStorage


def test_pending_writes_are_visible_and_committed_as_one_batch(tmp_path: Path) -> None:
    base = RocksStorage(str(tmp_path / "db"))
    store = GroupCommitStorage(base)
    base.put(b"old", b"1")
    store.put(b"a", b"1")
    store.write([(b"b", b"2")], [b"old"])
    assert store.get(b"a") == b"1" and store.get(b"b") == b"2" and store.get(b"old") is None
    assert base.get(b"a") is None and base.get(b"old") == b"1"  # nothing reached the disk yet
    store.commit()
    assert store.commits == 1
    assert base.get(b"a") == b"1" and base.get(b"b") == b"2" and base.get(b"old") is None
    store.commit()  # nothing pending: no empty batch
    assert store.commits == 1
    store.close()


def test_scan_and_sync_writes_commit_what_is_pending_first(tmp_path: Path) -> None:
    base = RocksStorage(str(tmp_path / "db"))
    store = GroupCommitStorage(base)
    store.put(b"k1", b"v1")
    assert list(store.scan(b"k")) == [(b"k1", b"v1")]
    store.put(b"k2", b"v2")
    store.write([(b"meta", b"x")], sync=True)  # identity writes are durable when they return
    assert base.get(b"k2") == b"v2" and base.get(b"meta") == b"x"
    store.put(b"k3", b"v3")
    store.close()  # closing commits the rest
    reopened = RocksStorage(str(tmp_path / "db"))
    assert reopened.get(b"k3") == b"v3"
    reopened.close()
