"""``ringd``'s log lines: readable text (the default) or one JSON object per line.

Every log call of the node names a stable, short **event** and its **fields**, through
``extra=ev("event_name", field=value, ...)`` on a ``logging`` call; the core's ``Log`` effects
carry the same two things (``ring.core.messages.Log``). The text format prints the message as
it always did (``ringd[NAME]: message``, with the level for warnings and worse); the JSON
format (``ringd --log-format json``) prints, per line::

    {"time": "2025-01-31T12:00:00.123Z", "level": "info", "node": "node1",
     "event": "member_state", "msg": "member node2: up -> suspect",
     "fields": {"member": "node2", "from": "up", "to": "suspect"}}

``time`` is ISO 8601 in UTC with milliseconds, ``level`` one of debug, info, warning, error,
``event`` the stable name (``log`` for a call of the node that names none; for another
library's record, its logger's name: ``asyncio`` for the event loop's), ``msg`` the text
line's message and ``fields`` the event's fields (``{}`` when it has none); an exception adds
``exc_type`` and ``traceback`` to the fields. A field that JSON cannot hold is written as its
``str``.

No log line carries key or value contents: the node logs a key by its fingerprint
(``ring.core.messages.key_ref``), never its bytes.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import threading
import traceback
from typing import IO, Any

FORMATS = ("text", "json")


def ev(event: str, **fields: Any) -> dict[str, Any]:
    """The ``extra`` of a logging call: its event name and fields."""
    return {"event": event, "fields": fields}


class TextFormatter(logging.Formatter):
    """``ringd[name]: message``, with the level named when it is a warning or worse."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{self.prefix}{record.levelname.lower()}: {text}"
        return self.prefix + text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, node, event, msg, fields."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        fields = dict(fields) if isinstance(fields, dict) else {}
        if record.exc_info and record.exc_info[0] is not None:
            fields["exc_type"] = record.exc_info[0].__name__
            fields["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "node": self.node,
            "event": str(getattr(record, "event", None) or _event_of(record.name)),
            "msg": record.getMessage(),
            "fields": fields,
        }
        return json.dumps(line, default=str, separators=(",", ":"))


def formatter(kind: str, node: str) -> logging.Formatter:
    """The formatter of ``--log-format kind`` for node ``node``."""
    if kind == "json":
        return JsonFormatter(node)
    if kind == "text":
        return TextFormatter(f"ringd[{node}]: ")
    raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {kind!r}")


def _event_of(logger: str) -> str:
    """The event of a record that names none: ``log`` for the node's own, else the logger's
    name in the event alphabet (``asyncio``, ``py_warnings``)."""
    if logger == "ringd" or logger.startswith(("ringd.", "ring.")):
        return "log"
    return re.sub(r"[^a-z_]+", "_", logger.lower()).strip("_") or "log"


def install_handler(
    kind: str, node: str, level: str | int, stream: IO[str] | None = None
) -> logging.Handler:
    """Write every log record of the process to ``stream`` (stderr) in format ``kind``.

    The handler goes on the root logger, so that the node's own records (logger ``ringd``, at
    ``level``) and other libraries' warnings and errors, such as asyncio's and uvloop's
    "Exception in callback" or "Fatal error on transport", come out in the same format:
    with ``--log-format json`` the node's stderr holds only JSON lines. Python's warnings
    are logged too (``py.warnings``), and so are the exceptions Python would print itself: one
    ignored in a finalizer (event ``unraisable``) and one that ends a thread
    (``thread_exception``)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(kind, node))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    own = logging.getLogger("ringd")
    own.setLevel(level)
    own.propagate = True
    logging.captureWarnings(True)
    sys.unraisablehook = _log_unraisable
    threading.excepthook = _log_thread_exception
    return handler


def _log_unraisable(u: Any) -> None:
    logging.getLogger("ringd").error(
        "exception ignored in %s: %s",
        "?" if u.object is None else repr(u.object)[:200],
        u.exc_value,
        exc_info=(u.exc_type, u.exc_value, u.exc_traceback) if u.exc_value is not None else None,
        extra=ev("unraisable"),
    )


def _log_thread_exception(args: Any) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("ringd").error(
        "exception in thread %s: %s",
        name,
        args.exc_value,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        extra=ev("thread_exception", thread=name),
    )
