"""``save`` and ``load``: move every record, with its history, through a dump file.

``save`` writes FILE.tmp, fsyncs it and renames it over FILE, so FILE is either the old file or a
complete new dump. ``load`` checks the whole dump first (see ``ring.cli.dump.verify``) and
applies nothing unless all of it is intact; then it merges the records into the store through
``reconcile`` in batches, so loading twice, or into a store holding newer data, loses nothing.
An interrupted load may have applied some batches; loading the same dump again completes it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from ring.cli import dump
from ring.cli.app import (
    INTERRUPTED,
    INVALID,
    USAGE,
    CliError,
    arguments,
    command,
    open_target,
)
from ring.cli.output import Output, Progress, human_bytes
from ring.core.record import Record

MERGE_BATCH = 1000


def _file_arg(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("file", metavar="FILE", help=help)

    return arguments(configure)


def _summary(out: Output, verb: str, file: str, summary: dump.DumpSummary, to_stderr: bool) -> None:
    shown = "stdout" if file == "-" and verb == "saved" else "stdin" if file == "-" else file
    if out.json:
        out.emit(
            {
                "file": file,
                "records": summary.records,
                "bytes": summary.size_bytes,
                "sha256": summary.sha256,
            },
            to_stderr=to_stderr,
        )
    else:
        text = f"{verb} {summary.records:,} records ({human_bytes(summary.size_bytes)})"
        out.line(f"{text} {'to' if verb == 'saved' else 'from'} {shown}", to_stderr=to_stderr)


# --- save -------------------------------------------------------------------------------------


def _write_atomically(
    path: str, items: Iterable[tuple[bytes, bytes]], progress: Progress
) -> dump.DumpSummary:
    tmp = path + ".tmp"
    try:
        f = open(tmp, "wb")  # noqa: SIM115 - closed below, before the rename
    except OSError as exc:
        raise CliError(f"cannot write {tmp}: {exc.strerror or exc}", INVALID) from None
    try:
        with f:
            summary = dump.write(f, items, _save_progress(progress))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(path)))
    return summary


def _fsync_dir(path: str) -> None:
    """Make the rename itself durable (not possible on every platform, hence best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _save_progress(progress: Progress) -> dump.OnProgress:
    def show(done_bytes: int, done_records: int) -> None:
        progress.show(f"save: {done_records:,} records, {human_bytes(done_bytes)} written")

    return show


@command("save", "dump every record with its clocks, siblings and tombstones to FILE")
@_file_arg("the dump to write; - writes to stdout")
def save(args: argparse.Namespace, out: Output) -> None:
    if args.file == "-" and out.stdout_is_tty:
        raise CliError("refusing to write a binary dump to a terminal; redirect stdout", USAGE)
    progress = out.progress()
    try:
        with open_target(args, create=False, cluster=False) as store:
            if args.file == "-":
                summary = dump.write(out.stdout, store.scan_records(), _save_progress(progress))
                out.stdout.flush()
            else:
                summary = _write_atomically(args.file, store.scan_records(), progress)
    finally:
        progress.clear()
    _summary(out, "saved", args.file, summary, to_stderr=args.file == "-")


# --- load -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_dump(file: str, progress: Progress) -> Iterator[BinaryIO]:
    """The dump as a seekable file; stdin is copied to a temporary file for the two passes."""
    if file != "-":
        try:
            f = open(file, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise CliError(f"cannot read {file}: {exc.strerror or exc}", INVALID) from None
        with f:
            yield f
        return
    with tempfile.TemporaryFile(prefix="ringctl-load-") as tmp:
        progress.show("load: reading stdin", force=True)
        shutil.copyfileobj(sys.stdin.buffer, tmp, 1 << 20)
        tmp.flush()
        yield tmp


def _merge(
    store: Any, items: Iterator[tuple[bytes, Record]], total: int, progress: Progress
) -> int:
    done = 0
    batch: list[tuple[bytes, Record]] = []
    try:
        for item in items:
            batch.append(item)
            if len(batch) >= MERGE_BATCH:
                store.merge_records(batch)
                done += len(batch)
                batch = []
                progress.show(f"load: merging {done:,}/{total:,} records")
        if batch:
            store.merge_records(batch)
            done += len(batch)
    except KeyboardInterrupt:
        raise CliError(
            f"interrupted after merging {done:,} of {total:,} records; loading the same dump "
            "again is safe and completes it",
            INTERRUPTED,
        ) from None
    return done


@command("load", "verify a dump FILE, then merge it into the store (nothing lost)")
@_file_arg("the dump to load; - reads stdin")
def load(args: argparse.Namespace, out: Output) -> None:
    progress = out.progress()
    try:
        with _open_dump(args.file, progress) as f:
            size = human_bytes(f.seek(0, os.SEEK_END))

            def verifying(done_bytes: int, done_records: int) -> None:
                progress.show(
                    f"load: verifying {human_bytes(done_bytes)}/{size} ({done_records:,} records)"
                )

            summary = dump.verify(f, verifying)
            with open_target(args, cluster=False) as store:
                _merge(store, dump.read(f), summary.records, progress)
    finally:
        progress.clear()
    _summary(out, "loaded", args.file, summary, to_stderr=False)
