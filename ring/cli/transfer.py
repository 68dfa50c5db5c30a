"""``save`` and ``load``: move every record, with its history, through a dump file.

``save`` writes FILE.tmp, fsyncs it and renames it over FILE, so FILE is either the old file or a
complete new dump. ``load`` checks the whole dump first (see ``ring.cli.dump.verify``) and
applies nothing unless all of it is intact; then it merges the records into the store through
``reconcile`` in batches, so loading twice, or into a store holding newer data, loses nothing.
An interrupted load may have applied some batches; loading the same dump again completes it.

With ``--nodes`` (or ``$RINGKV_NODES``) both work on a cluster, online:

* **save** asks the contacted node for the members and the ring, then reads every member that is
  up at its own address with the ``records`` op: first the hints each keeps for others (writes
  acknowledged through a fallback), then its stored records of the partitions it owns, page by
  page in key order, several members at once. Every page is merged with ``reconcile`` into a
  temporary RocksDB next to the output (``TMPDIR`` for stdout), keyed by user key, so memory
  stays bounded; the dump is then written from it in key order, exactly as an embedded save
  writes one. Every hint is read before any member's records: a hint delivered (and deleted)
  before its holder was read is stored by its target before the target is read, so every write
  acknowledged before the save began is in the dump, wherever it is. A page answered on another
  ring epoch than the one the save started on (the ring changed) restarts the save once. If the
  members read in full do not together own every partition, nothing is written (exit 5).
* **load** verifies the dump, then sends each record with the ``absorb`` op (merged into its
  key's replicas like a put is replicated) to an owner of its partition, many in flight on one
  connection per member. A record that fails is retried on another member a few times; any that
  still fail are counted and named, and the command exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar

import ring
from ring.aio import AsyncClient
from ring.cli import dump, reach
from ring.cli.app import (
    INTERRUPTED,
    INVALID,
    UNREACHABLE,
    USAGE,
    CliError,
    arguments,
    cluster_nodes,
    command,
    open_target,
)
from ring.cli.output import Output, Progress, escape_text, human_bytes
from ring.core import record as rec
from ring.core.record import Record
from ring.core.table import partition_of
from ring.errors import CorruptData, InvalidInput, RingError

MERGE_BATCH = 1000

# Cluster save: the bytes a node puts in one page (it caps them at 4 MiB), the time one request
# may take, and how often a page is asked again (from the same cursor) before the member counts
# as not answering.
SAVE_PAGE_BYTES = 2 * 1024 * 1024
SAVE_TIMEOUT_S = 15.0
SAVE_PAGE_ATTEMPTS = 3
# Cluster load: absorbs in flight (over all members), tries per record, and the pause before
# the next try (times the try number).
LOAD_WINDOW = 512
LOAD_ATTEMPTS = 3
LOAD_RETRY_PAUSE_S = 0.25
LOAD_TIMEOUT_S = 10.0

T = TypeVar("T")


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
    nodes = cluster_nodes(args)
    progress = out.progress()
    try:
        if nodes:
            summary = _cluster_save(nodes, args.file, out, progress)
        else:
            with open_target(args, create=False, cluster=False) as store:
                summary = _save_items(args.file, store.scan_records(), out, progress)
    finally:
        progress.clear()
    _summary(out, "saved", args.file, summary, to_stderr=args.file == "-")


def _save_items(
    file: str, items: Iterable[tuple[bytes, bytes]], out: Output, progress: Progress
) -> dump.DumpSummary:
    if file == "-":
        summary = dump.write(out.stdout, items, _save_progress(progress))
        out.stdout.flush()
        return summary
    return _write_atomically(file, items, progress)


# --- save from a cluster ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Member:
    name: str
    address: str


class _RingChanged(Exception):
    def __init__(self, member: str, expected: int, got: int) -> None:
        super().__init__(f"{member} answered on ring epoch {got}, the save started on {expected}")
        self.expected = expected
        self.got = got


class _MemberFailed(Exception):
    """Internal: one member could not be read in full (the message says why)."""


@dataclass
class _SaveProgress:
    progress: Progress
    members: int
    pages: int = 0
    records: int = 0
    hints: int = 0
    finished: int = 0

    def show(self, phase: str) -> None:
        self.progress.show(
            f"save: {phase}, {self.records:,} records and {self.hints:,} hints read "
            f"({self.finished}/{self.members} members done)"
        )


class _Merged:
    """A temporary RocksDB of user key -> the records read so far, merged with ``reconcile``.

    It lives in a directory of its own and is never shared: no write-ahead log (it is thrown
    away on any failure), one write batch per page."""

    def __init__(self, parent: str | None) -> None:
        import rocksdict

        self._rocksdict = rocksdict
        self.dir = tempfile.mkdtemp(prefix=".ringctl-save-", dir=parent)
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(10, False)
        opts.set_block_based_table_factory(table)
        self._db: Any = rocksdict.Rdict(os.path.join(self.dir, "db"), options=opts)
        wopts: Any = rocksdict.WriteOptions()  # its stub calls disable_wal a method
        wopts.disable_wal = True
        self._db.set_write_options(wopts)
        # Keys of which some member's copy did not decode -> (that member, why).
        self.corrupt: dict[bytes, tuple[str, str]] = {}
        self._open_iters: list[Generator[tuple[bytes, bytes], None, None]] = []

    def merge(self, member: str, flat: list[bytes]) -> None:
        """Merge one page (``[key, record, key, record, ...]``) in one write batch."""
        get = self._db.get
        pending: dict[bytes, bytes] = {}
        for i in range(0, len(flat), 2):
            key, incoming = flat[i], flat[i + 1]
            local = pending.get(key)
            if local is None:
                local = get(key)
            try:
                merged = rec.merge_encoded(local, incoming)
            except ValueError as exc:
                # A replica's copy that does not decode: the others' are still merged; a key
                # with no good copy anywhere fails the save (see _check_corrupt).
                self.corrupt.setdefault(key, (member, str(exc)))
                continue
            if merged is not None:
                pending[key] = merged
        if pending:
            wb = self._rocksdict.WriteBatch(raw_mode=True)
            for key, raw in pending.items():
                wb.put(key, raw)
            self._db.write(wb)

    def has(self, key: bytes) -> bool:
        return self._db.get(key) is not None

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every merged record in key order."""
        gen = self._items()
        self._open_iters.append(gen)
        return gen

    def _items(self) -> Generator[tuple[bytes, bytes], None, None]:
        it = self._db.iter()
        try:
            it.seek_to_first()
            while it.valid():
                yield it.key(), it.value()
                it.next()
        finally:
            del it

    def close(self) -> None:
        for gen in self._open_iters:  # no RocksDB iterator may outlive the database
            with contextlib.suppress(Exception):
                gen.close()
        with contextlib.suppress(Exception):
            self._db.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is there (Ctrl-C cancels it and raises KeyboardInterrupt)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio does the same work
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _members(client: Any, nodes: str) -> tuple[list[_Member], list[str], int, int]:
    """(members that are up, "name (state)" of the others, partitions, the ring's epoch). A
    member among ``nodes`` is reached there, any other at the address it advertises
    (``ring.cli.reach``)."""
    info = client.status()
    ring_info = client.ring_info()
    given = reach.given_addresses(nodes)
    up, others = [], []
    for m in info.get("members") or []:
        name, state, address = str(m.get("name")), m.get("state"), m.get("address")
        if state == "up" and isinstance(address, str) and address:
            up.append(_Member(name, reach.address_of(name, address, given)))
        elif state != "left":
            others.append(f"{name} ({state})")
    return up, others, int(ring_info["partitions"]), int(ring_info["epoch"])


def _cluster_save(nodes: str, file: str, out: Output, progress: Progress) -> dump.DumpSummary:
    parent = None if file == "-" else os.path.dirname(os.path.abspath(file))
    with ring.connect(nodes, timeout=SAVE_TIMEOUT_S) as client:
        for attempt in (1, 2):
            up, others, partitions, epoch = _members(client, nodes)
            try:
                merged = _Merged(parent)
            except OSError as exc:
                raise CliError(
                    f"cannot write next to {file}: {exc.strerror or exc}", INVALID
                ) from None
            try:
                try:
                    read = _run(_read_cluster(up, epoch, merged, _SaveProgress(progress, len(up))))
                except _RingChanged as exc:
                    if attempt == 2:
                        raise CliError(
                            f"the ring changed during the save, twice ({exc}); nothing was "
                            "written. Retry once `ringctl status` shows the ring settled",
                            UNREACHABLE,
                        ) from None
                    out.note(f"the ring changed during the save ({exc}); starting again")
                    time.sleep(0.5)  # give the new table time to reach every member
                    continue
                _check_coverage(read, up, others, partitions)
                _check_corrupt(merged)
                _note_partial(out, read, others)
                return _save_items(file, merged.items(), out, progress)
            finally:
                merged.close()
    raise AssertionError("unreachable: the second attempt returns or raises")


@dataclass
class _Read:
    """What a cluster save read: the partitions of each member read in full, why the others
    were not."""

    complete: dict[str, list[int]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


async def _read_cluster(
    up: list[_Member], epoch: int, merged: _Merged, shown: _SaveProgress
) -> _Read:
    result = _Read()
    clients = {m.name: AsyncClient(m.address, timeout=SAVE_TIMEOUT_S) for m in up}
    try:
        # Every hint first, then the records (see the module docstring for why that order).
        for hints in (True, False):
            readers = [m for m in up if m.name not in result.failed]
            shown.finished = 0
            try:
                async with asyncio.TaskGroup() as group:
                    for m in readers:
                        group.create_task(
                            _read_member(clients[m.name], m, hints, epoch, merged, shown, result)
                        )
            except* _RingChanged as eg:
                raise eg.exceptions[0] from None
    finally:
        for c in clients.values():
            await c.close()
    return result


async def _read_member(
    client: AsyncClient,
    member: _Member,
    hints: bool,
    epoch: int,
    merged: _Merged,
    shown: _SaveProgress,
    result: _Read,
) -> None:
    """Read every page of one member (its hints, or its records) into ``merged``; the next page
    is asked for before this one is merged. A member that cannot be read in full is noted in
    ``result.failed``; one that answers on another ring epoch raises ``_RingChanged``."""
    what = "hints" if hints else "records"
    nxt: asyncio.Task[dict[str, Any]] | None = None
    try:
        page = await _page(client, member, None, hints)
        while True:
            if page["epoch"] != epoch:
                raise _RingChanged(member.name, epoch, page["epoch"])
            if page["node"] not in (None, member.name):  # another node took over the address
                raise _MemberFailed(f"{member.address} is {page['node']}, not {member.name}")
            after = page["after"]
            if not page["done"]:
                nxt = asyncio.get_running_loop().create_task(_page(client, member, after, hints))
            items = page["items"]
            merged.merge(member.name, items)
            shown.pages += 1
            if hints:
                shown.hints += len(items) // 2
            else:
                shown.records += len(items) // 2
            shown.show(f"reading {what}")
            if nxt is None:
                break
            page, nxt = await nxt, None
            if not page["done"] and page["after"] == after and not page["items"]:
                raise _MemberFailed(f"its {what} cursor did not move")
        if not hints:
            result.complete[member.name] = list(page["partitions"])
        shown.finished += 1
    except _MemberFailed as exc:
        result.failed[member.name] = f"{what}: {exc}"
    finally:
        if nxt is not None:
            nxt.cancel()


async def _page(
    client: AsyncClient, member: _Member, after: bytes | None, hints: bool
) -> dict[str, Any]:
    """One page, asked again from the same cursor when a try fails (paging is idempotent)."""
    why = ""
    for attempt in range(SAVE_PAGE_ATTEMPTS):
        try:
            page = await client.records(after, SAVE_PAGE_BYTES, hints)
        except (RingError, OSError, TimeoutError) as exc:
            why = str(exc) or type(exc).__name__
            if isinstance(exc, InvalidInput):
                break  # the node refuses the request itself: asking again changes nothing
            await asyncio.sleep(0.2 * (attempt + 1))
            continue
        page["node"] = client.node
        return page
    raise _MemberFailed(why)


def _ranges(numbers: Iterable[int], limit: int = 12) -> str:
    """``1-3, 7, 9-12`` (the first ``limit`` runs, then ``...``)."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    return ", ".join(text) + (", ..." if len(runs) > limit else "")


def _check_coverage(read: _Read, up: list[_Member], others: list[str], partitions: int) -> None:
    covered: set[int] = set()
    for parts in read.complete.values():
        covered.update(parts)
    missing = set(range(partitions)) - covered
    if not missing:
        return
    not_read = [f"{name} ({why})" for name, why in sorted(read.failed.items())]
    down = others + not_read
    raise CliError(
        f"cannot save the whole cluster: {len(missing)} of {partitions} partitions have no "
        f"replica that answered (partitions {_ranges(missing)}); members not read: "
        f"{', '.join(down) or 'none'}. Nothing was written",
        UNREACHABLE,
    )


def _check_corrupt(merged: _Merged) -> None:
    for key, (member, why) in merged.corrupt.items():
        if not merged.has(key):
            raise CorruptData(
                f"the record of key '{escape_text(key)}' on {member} does not decode ({why}) "
                "and no other replica answered with a good copy; nothing was written"
            )


def _note_partial(out: Output, read: _Read, others: list[str]) -> None:
    """Say (on a terminal) when members were not read: their partitions came from the other
    replicas, so a write that only they hold (and for which no member that answered keeps a
    hint) is not in the dump."""
    missing = others + [f"{name} ({why})" for name, why in sorted(read.failed.items())]
    if missing:
        out.note(
            f"members not read: {', '.join(missing)}; their partitions were read from the "
            "other replicas"
        )


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
    nodes = cluster_nodes(args)
    progress = out.progress()
    try:
        with _open_dump(args.file, progress) as f:
            size = human_bytes(f.seek(0, os.SEEK_END))

            def verifying(done_bytes: int, done_records: int) -> None:
                progress.show(
                    f"load: verifying {human_bytes(done_bytes)}/{size} ({done_records:,} records)"
                )

            summary = dump.verify(f, verifying)
            if nodes:
                _cluster_load(nodes, f, summary.records, progress)
            else:
                with open_target(args, cluster=False) as store:
                    _merge(store, dump.read(f), summary.records, progress)
    finally:
        progress.clear()
    _summary(out, "loaded", args.file, summary, to_stderr=False)


# --- load into a cluster ------------------------------------------------------------------------


@dataclass
class _LoadStats:
    total: int
    done: int = 0  # records every try of which ended in an acknowledgement
    retried: int = 0  # tries that failed and were made again
    failed: int = 0  # records that failed every try
    failed_keys: list[bytes] = field(default_factory=list)  # the first few
    first_error: BaseException | None = None


def _cluster_load(nodes: str, f: BinaryIO, total: int, progress: Progress) -> None:
    with ring.connect(nodes, timeout=LOAD_TIMEOUT_S) as client:
        up, _, partitions, _ = _members(client, nodes)
        if not up:  # the contacted node lists itself up once it serves
            up = [_Member(client.node or client.address, client.address)]
    stats = _LoadStats(total)
    progress.show(f"load: merging 0/{total:,} records into {len(up)} members", force=True)
    try:
        _run(_absorb_all(up, partitions, dump.read_encoded(f), stats, progress))
    except KeyboardInterrupt:
        raise CliError(
            f"interrupted after merging {stats.done:,} of {total:,} records into the cluster; "
            "loading the same dump again is safe and completes it",
            INTERRUPTED,
        ) from None
    if stats.failed:
        exc = stats.first_error
        code = INVALID if isinstance(exc, InvalidInput | CorruptData) else UNREACHABLE
        keys = ", ".join(f"'{escape_text(k)}'" for k in stats.failed_keys[:5])
        more = ", ..." if stats.failed > 5 else ""
        raise CliError(
            f"{stats.failed:,} of {total:,} records could not be merged into the cluster after "
            f"{LOAD_ATTEMPTS} tries each (keys {keys}{more}; first error: {_error_text(exc)}); "
            f"the other {stats.done:,} were. Loading the same dump again is safe and retries "
            "them",
            code,
        )


def _error_text(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _absorb_all(
    up: list[_Member],
    partitions: int,
    items: Iterator[tuple[bytes, bytes]],
    stats: _LoadStats,
    progress: Progress,
) -> None:
    """Send every item with ``absorb``, ``LOAD_WINDOW`` in flight: that many workers share the
    one iterator, each sending its next record once the last one was answered."""
    addresses = [m.address for m in up]
    # One connection per member; each fails over to the others (rotated) if its node goes away.
    clients = [
        AsyncClient(addresses[i:] + addresses[:i], timeout=LOAD_TIMEOUT_S)
        for i in range(len(addresses))
    ]
    try:
        routes = await _routes(clients, up, partitions)
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(LOAD_WINDOW, stats.total))):
                group.create_task(_absorber(clients, routes, partitions, items, stats, progress))
    finally:
        for c in clients:
            await c.close()


async def _routes(
    clients: list[AsyncClient], up: list[_Member], partitions: int
) -> list[tuple[int, ...]]:
    """For each partition, the clients to try in order: its owners first (so the node that gets
    a record is one of its replicas and coordinates it without forwarding), the others after.
    Who owns what is each member's own answer to a one-item ``records`` page; a member that
    does not answer is simply not preferred (a record sent to a non-owner is forwarded)."""

    async def owned(i: int) -> set[int]:
        with contextlib.suppress(RingError, OSError, TimeoutError):
            page = await clients[i].records(None, 1, hints=True)
            if clients[i].node == up[i].name:
                return set(page["partitions"])
        return set()

    owns = await asyncio.gather(*(owned(i) for i in range(len(clients))))
    everyone = range(len(clients))
    routes = []
    for p in range(partitions):
        owners = [i for i in everyone if p in owns[i]]
        if owners:
            k = p % len(owners)
            owners = owners[k:] + owners[:k]
        rest = [i for i in everyone if i not in owners]
        if rest:
            k = p % len(rest)
            rest = rest[k:] + rest[:k]
        routes.append(tuple(owners + rest))
    return routes


async def _absorber(
    clients: list[AsyncClient],
    routes: list[tuple[int, ...]],
    partitions: int,
    items: Iterator[tuple[bytes, bytes]],
    stats: _LoadStats,
    progress: Progress,
) -> None:
    for key, raw in items:
        route = routes[partition_of(key, partitions)]
        error: BaseException | None = None
        for attempt in range(LOAD_ATTEMPTS):
            client = clients[route[attempt % len(route)]]
            try:
                await client.absorb(key, raw)
            except (InvalidInput, CorruptData) as exc:
                error = exc  # the cluster refuses the record itself: trying again changes nothing
                break
            except (RingError, OSError, TimeoutError) as exc:
                error = exc
                if attempt + 1 < LOAD_ATTEMPTS:
                    stats.retried += 1
                    await asyncio.sleep(LOAD_RETRY_PAUSE_S * (attempt + 1))
                continue
            error = None
            break
        if error is None:
            stats.done += 1
        else:
            stats.failed += 1
            if len(stats.failed_keys) < 5:
                stats.failed_keys.append(key)
            stats.first_error = stats.first_error or error
        failed = f", {stats.failed:,} failed" if stats.failed else ""
        retried = f", {stats.retried:,} retried" if stats.retried else ""
        progress.show(f"load: merging {stats.done:,}/{stats.total:,} records{retried}{failed}")
