"""``ringctl``: the command-line tool for ringkv (``python -m ring.cli.ringctl`` works too).

This module only wires things together: it imports the modules that register commands, parses
the command line, runs the command and turns every failure into one ``ringctl: error: ...`` line
on stderr and an exit code from ``ring.cli.app.EXIT_CODES`` — never a traceback (set
``RINGKV_DEBUG=1`` to get one for an unexpected error).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from ring.cli.app import (
    BROKEN_PIPE,
    INTERNAL,
    INTERRUPTED,
    INVALID,
    OK,
    UNAVAILABLE,
    UNREACHABLE,
    USAGE,
    CliError,
    build_parser,
    use_security,
)
from ring.cli.output import PROG, Output
from ring.errors import (
    CorruptData,
    InvalidInput,
    ProtocolError,
    RingError,
    StoreClosed,
    StoreLocked,
    Unavailable,
)

# Modules whose import registers commands; cluster commands will be added here.
COMMAND_MODULES = (
    "ring.cli.data",
    "ring.cli.transfer",
    "ring.cli.cluster",
    "ring.cli.feed",
    "ring.cli.search_cmds",
)

# How library errors map to exit codes: the first matching class wins.
ERROR_EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (StoreLocked, UNAVAILABLE),
    (StoreClosed, UNAVAILABLE),
    (Unavailable, UNREACHABLE),
    (ProtocolError, UNREACHABLE),
    (InvalidInput, INVALID),
    (CorruptData, INVALID),
    (OSError, UNAVAILABLE),
)


def load_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name)


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, CliError):
        return exc.code
    for cls, code in ERROR_EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return INTERNAL


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush cannot
    fail again and print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    load_commands()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 after --help
        return exc.code if isinstance(exc.code, int) else USAGE
    command = getattr(args, "_command", None)
    if command is None:  # no command, or a group without its subcommand
        getattr(args, "_group", parser).print_help(sys.stderr)
        return USAGE
    out = Output(args.output, sys.stdout.buffer, sys.stderr)
    try:
        use_security(args)
        code = command.run(args, out)
        out.stdout.flush()
        return OK if code is None else code
    except KeyboardInterrupt:
        _error("interrupted")
        return INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE
    except (RingError, OSError) as exc:
        code = exit_code_for(exc)
        if code == INTERNAL and os.environ.get("RINGKV_DEBUG"):
            traceback.print_exc()
        _error(_describe(exc))
        return code
    except Exception as exc:
        if os.environ.get("RINGKV_DEBUG"):
            traceback.print_exc()
        _error(
            f"internal error: {type(exc).__name__}: {exc} "
            "(this is a bug; set RINGKV_DEBUG=1 to see the traceback)"
        )
        return INTERNAL
    finally:
        use_security(None)  # the process's clients are plain again (main may run in-process)


if __name__ == "__main__":
    sys.exit(main())
