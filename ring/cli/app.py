"""ringctl's skeleton: exit codes, the command registry, the parser and the store target.

A command is a function ``run(args, out) -> int | None`` registered with :func:`command`; a module
that defines commands registers them when imported, and ``ring.cli.ringctl.COMMAND_MODULES``
lists the modules to import. Nested commands (``cluster local``) are registered by their full
name after the group itself (:func:`group`). Commands that touch keys get their store from
:func:`open_target`, the one place that decides between the embedded store and (later) a cluster
client with the same methods.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ring
from ring.cli.output import PROG, Output
from ring.common import MAX_VALUE_BYTES
from ring.embedded import default_path
from ring.errors import RingError

# --- exit codes (the README documents this table) ---------------------------------------------

OK = 0
NOT_FOUND = 1
USAGE = 2
INVALID = 3
UNAVAILABLE = 4
UNREACHABLE = 5
INTERNAL = 70
INTERRUPTED = 130
BROKEN_PIPE = 141

EXIT_CODES: dict[int, str] = {
    OK: "success",
    NOT_FOUND: "key not found",
    USAGE: "usage error: unknown command, missing or bad arguments",
    INVALID: "invalid input, or a corrupt or truncated dump (nothing was applied)",
    UNAVAILABLE: "store unavailable: data directory locked, missing or unreadable; I/O error",
    UNREACHABLE: (
        "cluster unreachable, too few replicas answered (quorum error), a cluster save with a "
        "partition no member answered for, or a cluster load with records it could not merge"
    ),
    INTERNAL: "internal error (a bug): set RINGKV_DEBUG=1 to see the traceback",
    INTERRUPTED: "interrupted (Ctrl-C)",
    BROKEN_PIPE: "stdout was closed early (e.g. piped into head)",
}


class CliError(RingError):
    """An error the CLI itself detected, with the exit code it maps to."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --- the command registry ----------------------------------------------------------------------

Handler = Callable[[argparse.Namespace, Output], "int | None"]
Configure = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # "put", or "group sub" for a command inside a group
    help: str  # one line, shown by ``ringctl --help``
    run: Handler
    configure: Configure | None = None
    description: str | None = None
    # "resolve" lets the command's own arguments replace global options of the same name.
    conflict_handler: str = "error"


COMMANDS: dict[str, Command] = {}
GROUPS: dict[str, str] = {}


def command(
    name: str,
    help: str,
    *,
    description: str | None = None,
    conflict_handler: str = "error",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``run(args, out)`` as command ``name``. Arguments are declared on the function
    with :func:`arguments` (applied first, so written below this decorator).

    ``conflict_handler`` is argparse's, for the command's parser: ``"resolve"`` lets an argument
    of the command take over a global option of the same name (``cluster local --nodes 3`` is a
    count, not the global ``--nodes`` list of addresses)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        parent = name.rpartition(" ")[0]
        if parent and parent not in GROUPS:
            raise ValueError(f"register the group {parent!r} before the command {name!r}")
        if name in COMMANDS or name in GROUPS:
            raise ValueError(f"command {name!r} is registered twice")
        COMMANDS[name] = Command(
            name, help, fn, getattr(fn, "_configure", None), description, conflict_handler
        )
        return fn

    return register


def arguments(configure: Configure) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach the function that adds a command's arguments to its subparser."""

    def attach(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn._configure = configure  # type: ignore[attr-defined]
        return fn

    return attach


def group(name: str, help: str) -> None:
    """Declare a command group such as ``cluster`` (its commands are ``cluster NAME``)."""
    if name in COMMANDS or name in GROUPS:
        raise ValueError(f"command group {name!r} is registered twice")
    GROUPS[name] = help


# --- argument types ------------------------------------------------------------------------------


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(
                "must be zero or more" if minimum == 0 else f"must be {minimum} or more"
            )
        return n

    return parse


def read_stdin_value() -> bytes:
    """A value given as ``-``: stdin, read one byte past the limit so that the store refuses an
    oversized value with its own clear message."""
    return sys.stdin.buffer.read(MAX_VALUE_BYTES + 1)


# --- the parser ----------------------------------------------------------------------------------


def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options valid before the command (``top``) and, for convenience, after it too. On
    subparsers the defaults are suppressed so they never overwrite a value given earlier."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "--data",
        metavar="DIR",
        default=default(None),
        help="embedded data directory (default: $RINGKV_DATA, else ./ringkv-data)",
    )
    parser.add_argument(
        "--nodes",
        metavar="HOST:PORT[,...]",
        default=default(None),
        help="work on a cluster through these nodes (default: $RINGKV_NODES; unset: embedded)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default=default("text"),
        help="output format (default: text)",
    )
    parser.add_argument(
        "--secret-file",
        metavar="PATH",
        default=default(None),
        help="the cluster secret, for a cluster whose nodes have one (default: "
        "$RINGKV_SECRET_FILE)",
    )
    parser.add_argument(
        "--tls-ca",
        metavar="PATH",
        default=default(None),
        help="connect with TLS, checking the nodes' certificates against this CA (PEM; "
        "default: $RINGKV_TLS_CA)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Work with a ringkv store: keys, values, dumps.",
        epilog="exit codes:\n"
        + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {ring.__version__}")
    add_global_options(parser, top=True)
    subparsers: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {
        "": parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    }
    # Groups and commands in registration order, each level after the one that holds it.
    for name in sorted([*GROUPS, *COMMANDS], key=lambda n: n.count(" ")):
        parent, _, leaf = name.rpartition(" ")
        cmd = COMMANDS.get(name)
        text = cmd.help if cmd else GROUPS[name]
        sub = subparsers[parent].add_parser(
            leaf,
            help=text,
            description=(cmd.description if cmd else None) or text,
            conflict_handler=cmd.conflict_handler if cmd else "error",
        )
        add_global_options(sub, top=False)
        if cmd is None:
            subparsers[name] = sub.add_subparsers(
                dest=f"{name}_command", metavar="COMMAND", title="commands"
            )
            sub.set_defaults(_group=sub)
            continue
        if cmd.configure is not None:
            cmd.configure(sub)
        sub.set_defaults(_command=cmd)
    return parser


# --- the target store -----------------------------------------------------------------------------


def data_dir(args: argparse.Namespace) -> str:
    return getattr(args, "data", None) or default_path()


def cluster_nodes(args: argparse.Namespace) -> str | None:
    """``--nodes``, else ``$RINGKV_NODES``, else None (the embedded store)."""
    return getattr(args, "nodes", None) or os.environ.get("RINGKV_NODES") or None


def use_security(args: argparse.Namespace | None) -> None:
    """Make every cluster client this run opens use ``--secret-file`` and ``--tls-ca`` (or
    ``$RINGKV_SECRET_FILE``, ``$RINGKV_TLS_CA``); a missing or empty secret file, or a CA
    file that does not load, is a usage error. ``None``: back to plain clients."""
    import ring.client
    from ring.net.auth import read_secret_file

    if args is None:
        ring.client.set_defaults()
        return
    path = getattr(args, "secret_file", None) or os.environ.get("RINGKV_SECRET_FILE") or None
    ca = getattr(args, "tls_ca", None) or os.environ.get("RINGKV_TLS_CA") or None
    if path is None and ca is None:
        ring.client.set_defaults()
        return
    try:
        secret = read_secret_file(path) if path is not None else None
        ring.client.set_defaults(secret=secret, tls_ca=ca)
    except RingError as exc:
        raise CliError(str(exc), USAGE) from None


def open_target(args: argparse.Namespace, *, create: bool = True, cluster: bool = True) -> Any:
    """The store the data commands use: a cluster client when ``--nodes`` (or
    ``$RINGKV_NODES``) is given, else the embedded ``ring.Store`` on ``--data``. Both have the
    same methods. Commands that only work embedded pass ``cluster=False``.

    With ``create=False`` a missing data directory is an error instead of a new empty store, so
    a read with a mistyped ``--data`` says so rather than reporting every key missing.
    """
    nodes = cluster_nodes(args)
    if nodes:
        if not cluster:
            raise CliError(
                f"{args.command} works on an embedded data directory only: unset RINGKV_NODES "
                "or drop --nodes, and pass --data DIR",
                USAGE,
            )
        return ring.connect(nodes)
    return _open_embedded(args, create=create)


def _open_embedded(args: argparse.Namespace, *, create: bool) -> Any:
    path = data_dir(args)
    if not os.path.isdir(path):
        if not create:
            raise CliError(
                f"no data directory at {path} (pass --data DIR or set RINGKV_DATA)", UNAVAILABLE
            )
    elif not os.path.exists(os.path.join(path, "CURRENT")) and os.listdir(path):
        # Refuse to scatter RocksDB files into an unrelated, non-empty directory.
        raise CliError(
            f"{path} is not a ringkv data directory (it is not empty and holds no store)",
            UNAVAILABLE,
        )
    try:
        return ring.open(path)
    except RingError:
        raise
    except Exception as exc:  # rocksdict reports IO problems as plain exceptions
        raise CliError(f"cannot open the data directory {path}: {exc}", UNAVAILABLE) from None
