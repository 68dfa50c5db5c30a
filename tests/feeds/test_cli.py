"""``ringctl feed add|ls|rm|count|repair`` on an embedded data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import run_main, run_process


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RINGKV_DATA", "RINGKV_DEBUG", "RINGKV_NODES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def data(tmp_path: Path) -> str:
    return str(tmp_path / "data")


def feed(data: str, *args: str | bytes, stdin: bytes = b"") -> tuple[int, str, str]:
    result = run_main("--data", data, "feed", *args, stdin=stdin)
    return result.code, result.out.decode("utf-8", "replace"), result.err


def test_add_ls_rm_count(data: str) -> None:
    code, first, _ = feed(data, "add", "news", "hello")
    assert code == 0 and len(first.strip()) == 24
    second = feed(data, "add", "news", "world")[1].strip()
    old = feed(data, "add", "news", "--append", "old\tline")[1].strip()
    assert feed(data, "ls", "news")[1] == (
        f"{second}\tworld\n{first.strip()}\thello\n{old}\told\\tline\n"
    )
    assert feed(data, "ls", "news", "--reverse", "--limit", "1")[1] == f"{old}\told\\tline\n"
    assert feed(data, "ls", "news", "--start", first.strip())[1].startswith(first.strip())
    assert feed(data, "count", "news")[1] == "3\n"
    assert feed(data, "rm", "news", second)[0] == 0
    code, _, err = feed(data, "rm", "news", second)
    assert code == 1 and "no entry" in err
    assert feed(data, "count", "news")[1] == "2\n"
    assert feed(data, "count", "unknown")[1] == "0\n"
    assert feed(data, "ls", "unknown") == (0, "", "")


def test_json_output_and_stdin(data: str) -> None:
    code, out, _ = feed(data, "add", "-o", "json", "j", "-", stdin=b"\xff binary")
    entry = json.loads(out)["id"]
    assert code == 0
    lines = [json.loads(line) for line in feed(data, "ls", "-o", "json", "j")[1].splitlines()]
    assert lines == [{"id": entry, "data": {"b64": "/yBiaW5hcnk="}}]
    assert json.loads(feed(data, "count", "-o", "json", "j")[1]) == {"feed": "j", "count": 1}
    report = json.loads(feed(data, "repair", "-o", "json", "j")[1])
    assert report["entries"] == 1 and report["count_after"] == 1


def test_errors(data: str) -> None:
    code, _, err = feed(data, "ls", "x")
    assert code == 4 and "no data directory" in err, "reads never create a data directory"
    feed(data, "add", "x", "1")
    assert feed(data, "rm", "x", "not-an-id")[0] == 3
    assert feed(data, "ls", "x", "--limit", "0")[0] == 2
    assert feed(data, "add", "", "y")[0] == 3


def test_as_a_real_process(data: str) -> None:
    result = run_process("--data", data, "feed", "add", "p", "via the console")
    assert result.code == 0, result.err
    listed = run_process("--data", data, "feed", "ls", "p")
    assert listed.code == 0 and listed.text.endswith("\tvia the console\n")
