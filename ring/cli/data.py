"""Key commands: ``put``, ``get``, ``del``, ``scan``.

Keys and values given on the command line are taken as the exact bytes the shell passed
(``os.fsencode``), so keys that are not UTF-8 can be written too. Reads never create a data
directory; writes do.
"""

from __future__ import annotations

import argparse
import os

from ring.cli.app import (
    NOT_FOUND,
    CliError,
    arguments,
    command,
    open_target,
    read_stdin_value,
    whole_number,
)
from ring.cli.output import Output, escape_text, json_bytes


def _key_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key", metavar="KEY", type=os.fsencode)


def _shown(key: bytes) -> str:
    return f"'{escape_text(key)}'"


# --- put --------------------------------------------------------------------------------------


def _put_args(parser: argparse.ArgumentParser) -> None:
    _key_arg(parser)
    parser.add_argument("value", metavar="VALUE", type=os.fsencode, help="the value; - reads stdin")


@command("put", "store VALUE under KEY (VALUE - reads stdin)")
@arguments(_put_args)
def put(args: argparse.Namespace, out: Output) -> None:
    value = read_stdin_value() if args.value == b"-" else args.value
    with open_target(args) as store:
        store.put(args.key, value)
    if out.json:
        out.emit({"key": json_bytes(args.key), "stored": True, "bytes": len(value)})


# --- get --------------------------------------------------------------------------------------


@command(
    "get",
    "print the value of KEY (the resolved one if it has siblings)",
    description="Print the value of KEY. Text output is the value's exact bytes; -o json prints "
    '{"key", "value", "siblings"} where siblings lists every concurrent value. '
    "A missing key exits with status 1.",
)
@arguments(_key_arg)
def get(args: argparse.Namespace, out: Output) -> None:
    with open_target(args, create=False) as store:
        versioned = store.get_versioned(args.key)
    if not versioned.values:
        raise CliError(f"key {_shown(args.key)} not found", NOT_FOUND)
    value = versioned.value
    if out.json:
        out.emit(
            {
                "key": json_bytes(args.key),
                "value": json_bytes(value),
                "siblings": [json_bytes(v) for v in versioned.values],
            }
        )
        return
    out.raw(value)
    if out.stdout_is_tty:
        out.raw(b"\n")
    if len(versioned.values) > 1:
        out.note(
            f"key {_shown(args.key)} has {len(versioned.values)} concurrent siblings; "
            "printed the resolved one (-o json shows them all)"
        )


# --- del --------------------------------------------------------------------------------------


@command("del", "delete KEY (writes a tombstone)")
@arguments(_key_arg)
def delete(args: argparse.Namespace, out: Output) -> None:
    with open_target(args, create=False) as store:
        store.delete(args.key)
    if out.json:
        out.emit({"key": json_bytes(args.key), "deleted": True})


# --- scan -------------------------------------------------------------------------------------


def _scan_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "prefix", metavar="PREFIX", nargs="?", type=os.fsencode, help="only keys starting so"
    )
    parser.add_argument("--start", metavar="K", type=os.fsencode, help="first key (inclusive)")
    parser.add_argument("--stop", metavar="K", type=os.fsencode, help="last key (exclusive)")
    parser.add_argument("--reverse", action="store_true", help="descending key order")
    parser.add_argument("--limit", metavar="N", type=whole_number(0), help="at most N items")


@command(
    "scan",
    "list keys and values in key order",
    description="List live keys and their (resolved) values in key order. Text: one "
    "KEY<TAB>VALUE line per item, with backslash escapes (\\\\ \\t \\n \\r \\xNN) for "
    'control characters and bytes that are not UTF-8. JSON: one {"key", "value"} object per '
    'line (JSON Lines); bytes that are not UTF-8 appear as {"b64": "..."}.',
)
@arguments(_scan_args)
def scan(args: argparse.Namespace, out: Output) -> None:
    with open_target(args, create=False) as store:
        items = store.scan(
            prefix=args.prefix,
            start=args.start,
            stop=args.stop,
            reverse=args.reverse,
            limit=args.limit,
        )
        for key, value in items:
            if out.json:  # per item: build only the form asked for
                out.emit({"key": json_bytes(key), "value": json_bytes(value)})
            else:
                out.line(f"{escape_text(key)}\t{escape_text(value)}")
