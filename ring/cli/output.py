"""How ringctl writes: results to stdout (text or JSON), notes and progress to stderr.

Keys and values are bytes, so both output formats say how bytes become text:

* **JSON** (``-o json``): a key or value that is valid UTF-8 is a JSON string; any other byte
  string is an object ``{"b64": "<standard base64>"}``. A reader decodes with
  ``v if isinstance(v, str) else base64.b64decode(v["b64"])``; nothing is ever lost.
* **text** lines (``scan``): backslash escapes, so one item is always one line and bytes that are
  not UTF-8 survive: ``\\\\`` for a backslash, ``\\t`` ``\\n`` ``\\r``, and ``\\xNN`` for other
  control characters and for each byte that is not part of valid UTF-8. ``get`` in text mode
  writes the value's bytes unchanged (plus a newline only when stdout is a terminal), so
  ``ringctl get KEY > file`` reproduces the value exactly.

Progress is drawn only when stderr is a terminal: one ``\\r`` line redrawn at most ten times a
second, erased when the command ends. Pipes and log files never see it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import BinaryIO, TextIO

PROG = "ringctl"
JsonBytes = str | dict[str, str]


def json_bytes(data: bytes) -> JsonBytes:
    """A byte string as JSON: a string when it is UTF-8, else ``{"b64": ...}``."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode("ascii")}


def _text_escapes() -> dict[int, str]:
    table = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
    table.update({ord("\\"): "\\\\", ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"})
    # surrogateescape maps each undecodable byte 0xNN to the lone surrogate U+DCNN.
    table.update({0xDC00 + b: f"\\x{b:02x}" for b in range(0x80, 0x100)})
    return table


_TEXT_ESCAPES = _text_escapes()


def escape_text(data: bytes) -> str:
    """A byte string as one line of text (see the module docstring)."""
    return data.decode("utf-8", "surrogateescape").translate(_TEXT_ESCAPES)


class Progress:
    """A single ``\\r`` status line on a terminal; silent when disabled."""

    def __init__(
        self,
        stream: TextIO,
        enabled: bool,
        interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self.enabled = enabled
        self._interval_s = interval_s
        self._clock = clock
        self._last = float("-inf")
        self._width = 0

    def show(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if not force and now - self._last < self._interval_s:
            return
        self._last = now
        pad = " " * max(0, self._width - len(text))
        self._width = len(text)
        self._stream.write(f"\r{text}{pad}")
        self._stream.flush()

    def clear(self) -> None:
        if self.enabled and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0


class Output:
    """The streams and format a command writes with: ``out.json`` tells which format was asked."""

    def __init__(self, fmt: str, stdout: BinaryIO, stderr: TextIO) -> None:
        self.json = fmt == "json"
        self.stdout = stdout
        self.stderr = stderr

    def emit(self, obj: object, *, to_stderr: bool = False) -> None:
        """One JSON document on one line."""
        line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        if to_stderr:
            self.stderr.write(line + "\n")
        else:
            self.stdout.write(line.encode("utf-8") + b"\n")

    def line(self, text: str, *, to_stderr: bool = False) -> None:
        if to_stderr:
            self.stderr.write(text + "\n")
        else:
            self.stdout.write(text.encode("utf-8") + b"\n")

    def answer(self, obj: object, text: str) -> None:
        """A command's answer: ``obj`` as one JSON line with ``-o json``, else ``text``."""
        if self.json:
            self.emit(obj)
        else:
            self.line(text)

    def raw(self, data: bytes) -> None:
        self.stdout.write(data)

    def note(self, text: str) -> None:
        """An informational line on stderr, for people: only when stderr is a terminal."""
        if _isatty(self.stderr):
            self.stderr.write(f"{PROG}: {text}\n")

    def progress(self) -> Progress:
        return Progress(self.stderr, enabled=_isatty(self.stderr))

    @property
    def stdout_is_tty(self) -> bool:
        return _isatty(self.stdout)


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
