"""Feed commands: ``feed add``, ``feed ls``, ``feed rm``, ``feed count``, ``feed repair``.

They work on the embedded data directory or, with ``--nodes``, on a cluster (``open_target``),
through ``feeds.Feeds``. Feed names and data given on the command line are the exact bytes the
shell passed. Reads never create a data directory; ``feed add`` does.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from feeds import Feeds
from ring.cli.app import (
    NOT_FOUND,
    CliError,
    arguments,
    command,
    group,
    open_target,
    read_stdin_value,
    whole_number,
)
from ring.cli.output import Output, escape_text, json_bytes

group("feed", "feeds: linked lists of entries, newest first (add, ls, rm, count, repair)")


def _feed_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("feed", metavar="FEED", type=os.fsencode, help="the feed's name")


def _shown(feed: bytes) -> str:
    return f"'{escape_text(feed)}'"


# --- add -----------------------------------------------------------------------------------------


def _add_args(parser: argparse.ArgumentParser) -> None:
    _feed_arg(parser)
    # Not "data": that is the global --data DIR.
    parser.add_argument(
        "entry", metavar="DATA", type=os.fsencode, help="the entry's data; - reads stdin"
    )
    parser.add_argument(
        "--append", action="store_true", help="add at the tail (oldest end) instead"
    )


@command(
    "feed add",
    "add DATA as the newest entry of FEED; prints the new entry's id",
    description="Add DATA as the newest entry of FEED (the first one `feed ls` shows), or with "
    "--append as the oldest. DATA - reads stdin. Prints the new entry's id (24 hex digits).",
)
@arguments(_add_args)
def add(args: argparse.Namespace, out: Output) -> None:
    data = read_stdin_value() if args.entry == b"-" else args.entry
    with open_target(args) as store:
        feeds = Feeds(store)
        entry_id = (feeds.append if args.append else feeds.add)(args.feed, data)
    out.answer({"feed": json_bytes(args.feed), "id": entry_id}, entry_id)


# --- ls ------------------------------------------------------------------------------------------


def _ls_args(parser: argparse.ArgumentParser) -> None:
    _feed_arg(parser)
    parser.add_argument("--reverse", action="store_true", help="oldest first")
    parser.add_argument("--limit", metavar="N", type=whole_number(1), help="at most N entries")
    parser.add_argument("--start", metavar="ID", help="begin at this entry (inclusive)")


@command(
    "feed ls",
    "list FEED's entries, newest first",
    description="List FEED's entries, newest first (oldest first with --reverse). Text: one "
    "ID<TAB>DATA line per entry, with backslash escapes for control characters and bytes that "
    'are not UTF-8. JSON: one {"id", "data"} object per line. An unknown feed lists nothing. '
    "Page with --limit N and --start ID (pass the id after the last one you got).",
)
@arguments(_ls_args)
def ls(args: argparse.Namespace, out: Output) -> None:
    with open_target(args, create=False) as store:
        for entry in Feeds(store).entries(args.feed, args.start, args.reverse, args.limit):
            if out.json:  # per item: build only the form asked for
                out.emit({"id": entry.id, "data": json_bytes(entry.data)})
            else:
                out.line(f"{entry.id}\t{escape_text(entry.data)}")


# --- rm ------------------------------------------------------------------------------------------


def _rm_args(parser: argparse.ArgumentParser) -> None:
    _feed_arg(parser)
    parser.add_argument("id", metavar="ID", help="the entry's id (as `feed add` printed it)")


@command(
    "feed rm",
    "remove entry ID from FEED",
    description="Remove entry ID from FEED. An entry that is not there (or was removed "
    "already) exits with status 1.",
)
@arguments(_rm_args)
def rm(args: argparse.Namespace, out: Output) -> None:
    with open_target(args, create=False) as store:
        removed = Feeds(store).remove(args.feed, args.id)
    if not removed:
        raise CliError(f"no entry {args.id} in feed {_shown(args.feed)}", NOT_FOUND)
    if out.json:
        out.emit({"feed": json_bytes(args.feed), "id": args.id, "removed": True})


# --- count ---------------------------------------------------------------------------------------


@command("feed count", "print how many entries FEED has (0 for an unknown feed)")
@arguments(_feed_arg)
def count(args: argparse.Namespace, out: Output) -> None:
    with open_target(args, create=False) as store:
        n = Feeds(store).count(args.feed)
    out.answer({"feed": json_bytes(args.feed), "count": n}, str(n))


# --- repair --------------------------------------------------------------------------------------


def _repair_args(parser: argparse.ArgumentParser) -> None:
    _feed_arg(parser)
    parser.add_argument(
        "--recount",
        action="store_true",
        help="set the count to the entries found (only where the store has every write)",
    )


@command(
    "feed repair",
    "relink FEED from its entries and finish interrupted operations",
    description="Read every entry record of FEED, relink the live ones in order, count what "
    "interrupted adds and removes left uncounted, and delete records of long-removed entries. "
    "Safe while other writers work. Walks repair what they pass anyway; this is the full sweep.",
)
@arguments(_repair_args)
def repair(args: argparse.Namespace, out: Output) -> None:
    with open_target(args, create=False) as store:
        report = Feeds(store).repair(args.feed, recount=args.recount)
    if out.json:
        out.emit({"feed": json_bytes(args.feed), **dataclasses.asdict(report)})
    else:
        out.line(
            f"feed {_shown(args.feed)}: {report.entries} entries, {report.relinked} relinked, "
            f"{report.reaped} removed records reaped, count {report.count_before} -> "
            f"{report.count_after}"
        )
