"""The core stays pure, and the public API surface changes only on purpose.

``ring.core`` must run unchanged under the deterministic simulator, so no module in it may reach
for IO, the clock, threads or a global random source (ARCHITECTURE.md, "The one rule"). The check
reads the source with ``ast`` rather than importing it, so an import hidden inside a function, a
class or a ``try`` is caught too. Only ``if TYPE_CHECKING:`` blocks are exempt: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ring
import ring.core

FORBIDDEN = frozenset(
    {"asyncio", "socket", "time", "random", "rocksdict", "threading", "os", "uuid", "selectors"}
)

CORE_DIR = Path(ring.core.__file__).parent
CORE_MODULES = sorted(CORE_DIR.rglob("*.py"))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def forbidden_imports(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of a forbidden top-level module in ``source``."""
    found: list[tuple[int, str]] = []

    def check(lineno: int, module: str) -> None:
        if module.split(".")[0] in FORBIDDEN:
            found.append((lineno, module))

    tree = ast.parse(source)
    # Imports under `if TYPE_CHECKING:` never run; they let the core annotate `rng: random.Random`,
    # the very argument the architecture asks for. A runtime use of such a name would fail with
    # NameError, so exempting them hides nothing.
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and _is_type_checking(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                check(node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module is not None:
                check(node.lineno, node.module)
        elif isinstance(node, ast.Call):
            # __import__("os") and importlib.import_module("os") are imports too.
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else None
            )
            if (
                name in {"__import__", "import_module"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                check(node.lineno, node.args[0].value)
    return found


def test_core_modules_are_found() -> None:
    names = {p.name for p in CORE_MODULES}
    assert {"__init__.py", "vclock.py", "record.py", "claim.py", "table.py", "handoff.py"} <= names


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: str(p.relative_to(CORE_DIR)))
def test_core_module_is_pure(path: Path) -> None:
    bad = forbidden_imports(path.read_text(encoding="utf-8"))
    assert not bad, f"{path} imports IO/time/randomness modules (pass them in instead): {bad}"


@pytest.mark.parametrize(
    "source",
    [
        "import os",
        "import os.path",
        "import time as clock",
        "from random import Random",
        "from asyncio.events import get_event_loop",
        "import json, socket",
        "def f():\n    import threading\n",
        "class C:\n    def m(self):\n        from uuid import uuid4\n",
        "if True:\n    import selectors\n",
        "try:\n    import rocksdict\nexcept ImportError:\n    pass\n",
        "m = __import__('os')",
        "import importlib\nm = importlib.import_module('time')",
        "if TYPE_CHECKING:\n    pass\nelse:\n    import random\n",
        "if not TYPE_CHECKING:\n    import random\n",
    ],
)
def test_checker_catches_forbidden_imports(source: str) -> None:
    # A purity check that cannot fail would be worse than none.
    assert forbidden_imports(source)


@pytest.mark.parametrize(
    "source",
    [
        "import msgpack",
        "from ring.core import vclock",
        "from . import vclock",
        "import ostrich",
        "from timeit import timeit",
        "from collections.abc import Mapping",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import random\n",
        "import typing\nif typing.TYPE_CHECKING:\n    from random import Random\n",
    ],
)
def test_checker_allows_pure_imports(source: str) -> None:
    assert forbidden_imports(source) == []


# --- the public API surface -------------------------------------------------------------------

EXPECTED_PUBLIC_API = {
    "AuthenticationFailed",
    "Batch",
    "CorruptData",
    "InvalidInput",
    "MultiKeyError",
    "ProtocolError",
    "QuorumError",
    "RingError",
    "Store",
    "StoreClosed",
    "StoreLocked",
    "Unavailable",
    "Versioned",
    "__version__",
    "connect",
    "open",
}


def test_public_api_is_exactly_the_expected_names() -> None:
    # Adding or removing a public name is an API change: update this set on purpose.
    assert set(ring.__all__) == EXPECTED_PUBLIC_API
    assert len(ring.__all__) == len(set(ring.__all__)), "duplicate names in ring.__all__"


@pytest.mark.parametrize("name", sorted(EXPECTED_PUBLIC_API))
def test_every_public_name_exists(name: str) -> None:
    assert getattr(ring, name) is not None


def test_star_import_gives_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from ring import *", namespace)
    assert set(namespace) - {"__builtins__"} == EXPECTED_PUBLIC_API


def test_every_public_error_is_a_ring_error() -> None:
    errors = [
        getattr(ring, n)
        for n in ring.__all__
        if isinstance(getattr(ring, n), type) and issubclass(getattr(ring, n), Exception)
    ]
    assert {e.__name__ for e in errors} == {
        "AuthenticationFailed",
        "CorruptData",
        "InvalidInput",
        "MultiKeyError",
        "ProtocolError",
        "QuorumError",
        "RingError",
        "StoreClosed",
        "StoreLocked",
        "Unavailable",
    }
    for err in errors:
        assert issubclass(err, ring.RingError)
    # InvalidInput is also a ValueError, so plain `except ValueError` code keeps working.
    assert issubclass(ring.InvalidInput, ValueError)
    assert issubclass(ring.QuorumError, ring.Unavailable)
    # A refused secret is a protocol error: code catching ProtocolError keeps working.
    assert issubclass(ring.AuthenticationFailed, ring.ProtocolError)
