"""put / get / del / scan, output formats, exit codes and error lines."""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ring
from ring.cli import app
from tests.cli.conftest import run_main, run_process


def from_json(v: str | dict[str, str]) -> bytes:
    return v.encode() if isinstance(v, str) else base64.b64decode(v["b64"])


def make_siblings(path: str, key: str, a: bytes, b: bytes) -> None:
    """Two writes from the same context: concurrent, so both survive as siblings."""
    with ring.open(path) as store:
        store.put(key, b"base")
        ctx = store.get_versioned(key).context
        store.put(key, a, context=ctx)
        store.put(key, b, context=ctx)


# --- round trips -------------------------------------------------------------------------------


def test_put_get_del_round_trip(data: str) -> None:
    r = run_main("--data", data, "put", "greeting", "hello world")
    assert (r.code, r.out, r.err) == (0, b"", "")
    r = run_main("--data", data, "get", "greeting")
    assert (r.code, r.out, r.err) == (0, b"hello world", "")
    r = run_main("--data", data, "put", "greeting", "bye")
    assert run_main("--data", data, "get", "greeting").out == b"bye"
    r = run_main("--data", data, "del", "greeting")
    assert (r.code, r.out, r.err) == (0, b"", "")
    r = run_main("--data", data, "get", "greeting")
    assert r.code == 1
    assert r.out == b""
    assert r.err == "ringctl: error: key 'greeting' not found\n"


def test_env_var_selects_the_data_directory(data: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGKV_DATA", data)
    assert run_main("put", "k", "v").code == 0
    with ring.open(data) as store:
        assert store.get("k") == b"v"


def test_global_options_are_accepted_after_the_command_too(data: str) -> None:
    run_main("--data", data, "put", "k", "v")
    r = run_main("get", "k", "--data", data, "-o", "json")
    assert json.loads(r.out) == {"key": "k", "value": "v", "siblings": ["v"]}


def test_scan_orders_filters_and_skips_deleted_keys(data: str) -> None:
    with ring.open(data) as store:
        for key in ("a1", "a2", "a3", "b1", "b2", "c"):
            store.put(key, key.upper())
        store.delete("a2")

    def scan(*extra: str) -> list[str]:
        r = run_main("--data", data, "scan", *extra)
        assert r.code == 0, r.err
        return r.text.splitlines()

    assert scan() == ["a1\tA1", "a3\tA3", "b1\tB1", "b2\tB2", "c\tC"]
    assert scan("a") == ["a1\tA1", "a3\tA3"]
    assert scan("--start", "a3", "--stop", "c") == ["a3\tA3", "b1\tB1", "b2\tB2"]
    assert scan("--reverse", "--limit", "2") == ["c\tC", "b2\tB2"]
    assert scan("b", "--reverse") == ["b2\tB2", "b1\tB1"]
    assert scan("--limit", "0") == []
    assert scan("zzz") == []


# --- JSON --------------------------------------------------------------------------------------


def test_json_output_shapes(data: str) -> None:
    r = run_main("-o", "json", "--data", data, "put", "k", "v1")
    assert json.loads(r.out) == {"key": "k", "stored": True, "bytes": 2}
    run_main("--data", data, "put", "k2", "v2")
    r = run_main("-o", "json", "--data", data, "get", "k")
    assert json.loads(r.out) == {"key": "k", "value": "v1", "siblings": ["v1"]}
    r = run_main("-o", "json", "--data", data, "scan")
    assert [json.loads(line) for line in r.out.splitlines()] == [
        {"key": "k", "value": "v1"},
        {"key": "k2", "value": "v2"},
    ]
    r = run_main("-o", "json", "--data", data, "del", "k")
    assert json.loads(r.out) == {"key": "k", "deleted": True}
    r = run_main("-o", "json", "--data", data, "get", "k")
    assert (r.code, r.out) == (1, b"")


def test_siblings_get_prints_the_resolved_value_and_json_lists_all(data: str) -> None:
    make_siblings(data, "k", b"left", b"right")
    with ring.open(data) as store:
        resolved = store.get("k")
    r = run_main("--data", data, "get", "k")
    assert (r.code, r.out, r.err) == (0, resolved, "")
    r = run_main("-o", "json", "--data", data, "get", "k")
    doc = json.loads(r.out)
    assert doc["value"] == resolved.decode()
    assert sorted(doc["siblings"]) == ["left", "right"]


def test_non_utf8_keys_and_values(data: str) -> None:
    key, value = b"k\xff\x00", b"\x80tab\there\nnl\\"
    with ring.open(data) as store:
        store.put(key, value)
    r = run_main("--data", data, "scan")
    assert r.text == "k\\xff\\x00\t\\x80tab\\there\\nnl\\\\\n"
    r = run_main("-o", "json", "--data", data, "scan")
    doc = json.loads(r.out)
    assert doc["key"] == {"b64": base64.b64encode(key).decode()}
    assert (from_json(doc["key"]), from_json(doc["value"])) == (key, value)
    r = run_main("-o", "json", "--data", data, "get", key)
    doc = json.loads(r.out)
    assert from_json(doc["value"]) == value
    assert [from_json(v) for v in doc["siblings"]] == [value]


# --- the real process --------------------------------------------------------------------------


def test_process_stdin_value_and_raw_bytes_argv(data: str) -> None:
    value = bytes(range(256)) * 4
    r = run_process("--data", data, "put", b"bin\xfekey", "-", stdin=value)
    assert (r.code, r.err) == (0, "")
    r = run_process("--data", data, "get", b"bin\xfekey")
    assert (r.code, r.out) == (0, value)
    r = run_process("--data", data, "get", "nope")
    assert r.code == 1
    assert r.err == "ringctl: error: key 'nope' not found\n"


def test_process_usage_errors_exit_2(data: str) -> None:
    r = run_process("--data", data, "frobnicate")
    assert r.code == 2
    assert "invalid choice: 'frobnicate'" in r.err
    assert run_process().code == 2
    r = run_process("--data", data, "scan", "--limit", "-1")
    assert r.code == 2
    assert "must be zero or more" in r.err


def test_process_help_lists_every_command() -> None:
    r = run_process("--help")
    assert r.code == 0
    for name in ("put", "get", "del", "scan", "save", "load"):
        assert f"    {name} " in r.text
    assert "exit codes:" in r.text


def test_process_locked_directory_exits_4(data: str) -> None:
    with ring.open(data):
        r = run_process("--data", data, "get", "k")
    assert r.code == 4
    assert r.err.startswith("ringctl: error: data directory")
    assert "locked" in r.err
    assert "Traceback" not in r.err


def test_process_broken_pipe_is_quiet(data: str) -> None:
    with ring.open(data) as store, store.batch() as batch:
        for i in range(4000):
            batch.put(f"key{i:05d}", "x" * 40)
    env = {k: v for k, v in os.environ.items() if k != "RINGKV_DATA"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ring.cli.ringctl", "--data", data, "scan"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"key00000\t" + b"x" * 40 + b"\n"
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == app.BROKEN_PIPE
    assert err == b""


# --- exit codes in-process ---------------------------------------------------------------------


def test_locked_by_this_process_exits_4(data: str) -> None:
    with ring.open(data):
        r = run_main("--data", data, "put", "k", "v")
    assert r.code == 4
    assert "locked" in r.err
    assert r.err.count("\n") == 1


def test_reads_do_not_create_a_missing_data_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for argv in (["get", "k"], ["scan"], ["del", "k"], ["save", str(tmp_path / "d")]):
        r = run_main("--data", str(missing), *argv)
        assert r.code == 4, argv
        assert r.err == (
            f"ringctl: error: no data directory at {missing} (pass --data DIR or set RINGKV_DATA)\n"
        )
    assert not missing.exists()


def test_refuses_a_directory_that_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    r = run_main("--data", str(tmp_path), "put", "k", "v")
    assert r.code == 4
    assert "not a ringkv data directory" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_invalid_input_exits_3(data: str) -> None:
    r = run_main("--data", data, "put", "k" * (64 * 1024 + 1), "v")
    assert r.code == 3
    assert "key is 65537 bytes; the limit is 65536 bytes" in r.err


def test_interrupt_exits_130(data: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ring, "open", interrupted)
    r = run_main("--data", data, "put", "k", "v")
    assert (r.code, r.err) == (130, "ringctl: error: interrupted\n")


def test_unexpected_errors_are_one_line_and_exit_70(
    data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(ring.Store, "put", broken)
    r = run_main("--data", data, "put", "k", "v")
    assert r.code == app.INTERNAL
    assert r.err.startswith("ringctl: error: internal error: ")
    assert r.err.count("\n") == 1


def test_exit_code_table_is_complete() -> None:
    assert {0, 1, 2, 3, 4, 5, 130} <= set(app.EXIT_CODES)
    assert app.EXIT_CODES[app.NOT_FOUND] == "key not found"


def test_other_modules_can_register_commands_and_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seam later cluster commands use: a group plus a command inside it."""
    monkeypatch.setattr(app, "COMMANDS", dict(app.COMMANDS))
    monkeypatch.setattr(app, "GROUPS", dict(app.GROUPS))
    seen = []

    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--size", type=int, default=3)

    @app.arguments(configure)
    def start(args: argparse.Namespace, out: object) -> int:
        seen.append((args.size, args.output))
        return 0

    with pytest.raises(ValueError, match="register the group 'demo' before"):
        app.command("demo start", "start a demo")(start)
    app.group("demo", "demo commands")
    app.command("demo start", "start a demo")(start)

    assert run_main("demo", "start", "--size", "5", "-o", "json").code == 0
    assert seen == [(5, "json")]
    r = run_main("demo")  # a group without its command: its help, usage error
    assert r.code == 2
    assert "start a demo" in r.err
