"""save and load against real RocksDB stores: nothing lost, nothing applied from a bad dump."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest

import ring
from ring.cli import dump, transfer
from tests.cli.conftest import records, run_main, run_process


def populate(path: str) -> None:
    """Plain values, concurrent siblings, a tombstone, and bytes that are not UTF-8."""
    with ring.open(path) as store:
        for i in range(20):
            store.put(f"plain{i:02d}", f"value {i}")
        store.put("sib", "base")
        ctx = store.get_versioned("sib").context
        store.put("sib", "left", context=ctx)
        store.put("sib", "right", context=ctx)
        store.put("gone", "soon deleted")
        store.delete("gone")
        store.put(b"\xff\xfe", b"\x00\x80\xff")


def save(src: str, file: Path) -> None:
    r = run_main("--data", src, "save", str(file))
    assert r.code == 0, r.err


@pytest.fixture
def saved(tmp_path: Path) -> tuple[str, Path]:
    src = str(tmp_path / "src")
    populate(src)
    file = tmp_path / "all.dump"
    save(src, file)
    return src, file


def test_save_then_load_into_a_fresh_store_reproduces_every_record(
    saved: tuple[str, Path], tmp_path: Path
) -> None:
    src, file = saved
    dst = str(tmp_path / "dst")
    r = run_main("--data", dst, "load", str(file))
    assert (r.code, r.err) == (0, "")
    assert r.text.startswith("loaded 23 records")
    original = records(src)
    assert records(dst) == original
    assert len(original[b"sib"].live) == 2
    assert original[b"gone"].is_deleted and original[b"gone"].siblings
    assert not (tmp_path / "all.dump.tmp").exists()


def test_save_and_load_report_in_json(saved: tuple[str, Path], tmp_path: Path) -> None:
    src, file = saved
    r = run_main("-o", "json", "--data", src, "save", str(file))
    doc = json.loads(r.out)
    assert doc["records"] == 23
    assert doc["bytes"] == file.stat().st_size
    assert len(doc["sha256"]) == 64
    r = run_main("-o", "json", "--data", str(tmp_path / "dst"), "load", str(file))
    assert json.loads(r.out) == {**doc, "file": str(file)}


def test_process_save_to_stdout_and_load_from_stdin(
    saved: tuple[str, Path], tmp_path: Path
) -> None:
    src, _ = saved
    out = run_process("--data", src, "save", "-")
    assert out.code == 0
    assert out.out.startswith(b"RINGKV-DUMP 1\n")
    assert out.err.startswith("saved 23 records")  # the summary moves to stderr
    dst = str(tmp_path / "dst")
    r = run_process("--data", dst, "load", "-", stdin=out.out)
    assert (r.code, r.err) == (0, "")  # not a terminal: no progress text
    assert records(dst) == records(src)


def test_loading_twice_is_idempotent(saved: tuple[str, Path], tmp_path: Path) -> None:
    _, file = saved
    dst = str(tmp_path / "dst")
    assert run_main("--data", dst, "load", str(file)).code == 0
    once = records(dst)
    assert run_main("--data", dst, "load", str(file)).code == 0
    assert records(dst) == once


def test_load_keeps_newer_data_and_concurrent_siblings(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    with ring.open(a, name="a") as store:
        store.put("k", "old")
        store.put("dead", "alive in the dump")
    file = tmp_path / "a.dump"
    save(a, file)
    # After the dump, store a moves on: a newer value and a delete.
    with ring.open(a) as store:
        store.put("k", "new")
        store.delete("dead")
    # Store b wrote the same key independently: concurrent with everything in a.
    with ring.open(b, name="b") as store:
        store.put("k", "from b")

    assert run_main("--data", a, "load", str(file)).code == 0
    with ring.open(a) as store:
        assert store.get_versioned("k").values == (b"new",)
        assert store.get("dead") is None

    assert run_main("--data", b, "load", str(file)).code == 0
    with ring.open(b) as store:
        assert sorted(store.get_versioned("k").values) == [b"from b", b"old"]
        assert store.get("dead") == b"alive in the dump"


def _trailer_len(file: Path) -> int:
    with file.open("rb") as f:
        summary = dump.verify(f)
    trailer = {"records": summary.records, "sha256": bytes.fromhex(summary.sha256)}
    return len(msgpack.packb(trailer))


def damaged_dumps(file: Path) -> dict[str, bytes]:
    data = file.read_bytes()
    at = data.index(b"value 7")
    return {
        "cut in the middle": data[: len(data) // 2],
        "trailer cut off": data[: len(data) - _trailer_len(file)],
        "one byte flipped": data[:at] + b"V" + data[at + 1 :],
    }


@pytest.mark.parametrize("damage", ["cut in the middle", "trailer cut off", "one byte flipped"])
def test_a_damaged_dump_is_refused_and_the_store_is_untouched(
    saved: tuple[str, Path], tmp_path: Path, damage: str
) -> None:
    _, file = saved
    bad = tmp_path / "bad.dump"
    bad.write_bytes(damaged_dumps(file)[damage])
    dst = str(tmp_path / "dst")
    with ring.open(dst) as store:
        store.put("plain01", "newer local value")
        store.put("mine", "only here")
    before = records(dst)

    r = run_main("--data", dst, "load", str(bad))
    assert r.code == 3
    assert r.out == b""
    expected = "checksum mismatch" if damage == "one byte flipped" else "truncated"
    assert r.err.startswith("ringctl: error: ")
    assert expected in r.err
    assert r.err.count("\n") == 1
    assert records(dst) == before


def test_process_damaged_dump_from_stdin_exits_3_without_creating_a_store(
    saved: tuple[str, Path], tmp_path: Path
) -> None:
    _, file = saved
    dst = tmp_path / "dst"
    r = run_process("--data", str(dst), "load", "-", stdin=damaged_dumps(file)["trailer cut off"])
    assert r.code == 3
    assert "truncated" in r.err
    assert not dst.exists()


def test_load_merges_in_batches(
    saved: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, file = saved
    monkeypatch.setattr(transfer, "MERGE_BATCH", 5)
    dst = str(tmp_path / "dst")
    assert run_main("--data", dst, "load", str(file)).code == 0
    assert records(dst) == records(src)


def test_interrupted_load_says_how_far_it_got(
    saved: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, file = saved
    monkeypatch.setattr(transfer, "MERGE_BATCH", 10)
    calls = []
    real = ring.Store.merge_records

    def merge_then_interrupt(self: ring.Store, items: list) -> None:  # type: ignore[type-arg]
        calls.append(len(items))
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(self, items)

    monkeypatch.setattr(ring.Store, "merge_records", merge_then_interrupt)
    r = run_main("--data", str(tmp_path / "dst"), "load", str(file))
    assert r.code == 130
    assert "interrupted after merging 10 of 23 records" in r.err


def test_progress_only_on_a_terminal(saved: tuple[str, Path], tmp_path: Path) -> None:
    src, file = saved
    r = run_main("--data", str(tmp_path / "dst"), "load", str(file), tty_stderr=True)
    assert r.code == 0
    assert "\rload: verifying" in r.err
    assert r.err.endswith("\r")  # the status line is erased at the end
    r = run_main("--data", src, "save", str(file), tty_stderr=True)
    assert "\rsave: 1 records" in r.err
    assert r.text.startswith("saved 23 records")
    assert run_main("--data", src, "save", str(file)).err == ""


def test_save_replaces_the_file_atomically_and_cleans_up(
    saved: tuple[str, Path], tmp_path: Path
) -> None:
    src, file = saved
    before = file.read_bytes()
    r = run_main("--data", str(tmp_path / "missing"), "save", str(file))
    assert r.code == 4
    assert file.read_bytes() == before
    r = run_main("--data", src, "save", str(tmp_path / "no" / "such" / "dir.dump"))
    assert r.code == 3
    assert "cannot write" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.dump", "src"]


def test_load_of_a_missing_file_exits_3(tmp_path: Path) -> None:
    r = run_main("--data", str(tmp_path / "dst"), "load", str(tmp_path / "nope.dump"))
    assert r.code == 3
    assert "cannot read" in r.err
    assert "No such file" in r.err
