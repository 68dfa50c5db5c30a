"""Layers point down, and no module reaches into another's private names.

A cluster client (``ring.connect``, ``ring.aio``) never imports the embedded store or its storage
engine: a client-only install has no rocksdict. What both sides share lives once, in the pure
``ring.common``. These checks read the source with ``ast`` (an import hidden in a function counts
too) and, for the whole import chain, run a child interpreter in which rocksdict cannot be
imported.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ring
from tests.unit.test_purity import FORBIDDEN

RING_DIR = Path(ring.__file__).parent
REPO_DIR = RING_DIR.parent

CLIENT_MODULES = (
    "client.py",
    "aio.py",
    "net/clientops.py",
    "net/codec.py",
    "net/routing.py",
)
NOT_FOR_CLIENTS = ("ring.embedded", "ring.storage", "rocksdict")


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in ``source``, a module of ``package``. ``from X
    import y`` yields both ``X`` and ``X.y`` (``y`` may be a submodule: ``from ring import
    embedded``); relative imports are resolved against ``package``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in {"__import__", "import_module"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def imports_of(source: str, package: str, banned: tuple[str, ...]) -> list[tuple[int, str]]:
    """The imports in ``source`` of a module in ``banned`` or inside one of them."""
    return [
        (line, module)
        for line, module in imported_modules(source, package)
        if any(module == b or module.startswith(b + ".") for b in banned)
    ]


def package_of(path: Path) -> str:
    return ".".join(path.relative_to(REPO_DIR).with_suffix("").parts[:-1])


@pytest.mark.parametrize("name", CLIENT_MODULES)
def test_client_module_does_not_import_the_embedded_store(name: str) -> None:
    path = RING_DIR / name
    bad = imports_of(path.read_text(encoding="utf-8"), package_of(path), NOT_FOR_CLIENTS)
    assert not bad, f"{path} imports the embedded store or its engine (use ring.common): {bad}"


def test_common_is_pure_and_imports_no_other_layer() -> None:
    path = RING_DIR / "common.py"
    modules = [m for _, m in imported_modules(path.read_text(encoding="utf-8"), "ring")]
    assert not [m for m in modules if m.split(".")[0] in FORBIDDEN], modules
    ring_modules = [m for m in modules if m.split(".")[0] == "ring"]
    assert all(m.split(".")[:2] == ["ring", "errors"] for m in ring_modules), modules


@pytest.mark.parametrize(
    "source",
    [
        "from ring.embedded import Versioned",
        "import ring.embedded",
        "from ring import embedded",
        "from ring.storage.base import scan_bounds",
        "from ring.storage import scan_bounds",
        "import rocksdict",
        "def f():\n    import rocksdict.something\n",
        "from .. import embedded",
        "from ..storage import base",
        "import importlib\nm = importlib.import_module('ring.embedded')",
    ],
)
def test_layer_checker_catches_imports_of_the_embedded_store(source: str) -> None:
    # A layering check that cannot fail would be worse than none.
    assert imports_of(source, "ring.net", NOT_FOR_CLIENTS)


@pytest.mark.parametrize(
    "source",
    [
        "from ring.common import Versioned",
        "from ring import errors",
        "from . import codec",
        "import ring.embedded_docs",
        "from ring.storages import x",
    ],
)
def test_layer_checker_allows_other_imports(source: str) -> None:
    assert imports_of(source, "ring.net", NOT_FOR_CLIENTS) == []


CLIENT_ONLY = """
import socket, sys
sys.modules["rocksdict"] = None  # as on a machine without rocksdict: importing it fails

import ring, ring.client, ring.aio
from ring.net import clientops

loaded = sorted(m for m in sys.modules if m.startswith(("ring.embedded", "ring.storage")))
assert not loaded, f"importing the client loaded {loaded}"
assert ring.Versioned((b"a",), b"c", b"a") == clientops.versioned_of([[b"a"], b"c", b"a"])
assert callable(ring.aio.connect)
try:
    clientops.key_of(b"k" * (64 * 1024 + 1))
except ring.InvalidInput:
    pass
else:
    raise AssertionError("the client did not check the key limit")

# A port that is bound but not listening refuses the connection: the client gets that far.
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    address = "127.0.0.1:%d" % s.getsockname()[1]
    try:
        ring.connect(address, timeout=5)
    except ring.Unavailable:
        pass
    else:
        raise AssertionError("connected to a port nobody listens on")

try:
    ring.open(sys.argv[1])
except ImportError as exc:
    assert "rocksdict" in str(exc), exc
else:
    raise AssertionError("the embedded store opened RocksDB without rocksdict")
with ring.open(backend="memory") as db:  # the memory backend needs no rocksdict
    db.put("k", "v")
    assert db.get("k") == b"v"
print("ok")
"""


def test_a_client_works_without_rocksdict(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR)}
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT_ONLY, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr
    assert not (tmp_path / "data").exists(), "ring.open created a directory it cannot use"


def test_open_and_the_lazy_names_are_the_embedded_ones(tmp_path: Path) -> None:
    from ring import embedded

    assert ring.Store is embedded.Store and ring.Batch is embedded.Batch
    assert ring.Versioned is embedded.Versioned
    assert ring.open.__doc__ == embedded.open.__doc__
    with ring.open(str(tmp_path / "data")) as db:
        assert isinstance(db, ring.Store)
        db.put(b"k", b"v")
        assert db.get_versioned(b"k").values == (b"v",)


# --- no private names across modules --------------------------------------------------------


def defined_names(tree: ast.AST) -> set[str]:
    """Every name a module defines: functions, classes, assigned names and attributes, and keyword
    arguments (``set_defaults(_command=...)``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.keyword) and node.arg:
            names.add(node.arg)
    return names


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def private_uses(source: str, own: set[str]) -> list[tuple[int, str]]:
    """``(line, name)`` for every private attribute used on an object other than ``self`` or
    ``cls`` (``x._db``, ``getattr(x, "_db")``) that is not in ``own``, the names the code's own
    package defines. Annotations are exempt: naming a private type is no reach at run time."""
    tree = ast.parse(source)
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        for ann in (
            [node.annotation]
            if isinstance(node, ast.AnnAssign | ast.arg) and node.annotation
            else [node.returns]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns
            else []
        )
        for n in ast.walk(ann)
    }
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        name = None
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}):
                name = node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "hasattr", "setattr", "delattr"}
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            name = node.args[1].value
        if name is not None and name not in own:
            found.append((node.lineno, name))
    return found


RING_PACKAGES = sorted({p.parent for p in RING_DIR.rglob("*.py")})


@pytest.mark.parametrize("package", RING_PACKAGES, ids=lambda p: str(p.relative_to(REPO_DIR)))
def test_no_module_uses_private_names_of_other_packages(package: Path) -> None:
    # A private name may be shared inside one package (ring/cli's app sets the `_command`
    # default that ringctl reads), never reached for from outside it (RocksStorage._db from the
    # embedded store, argparse's `_optionals` from the CLI).
    sources = {p: p.read_text(encoding="utf-8") for p in sorted(package.glob("*.py"))}
    own = set().union(*(defined_names(ast.parse(s)) for s in sources.values()))
    bad = {
        str(p.relative_to(REPO_DIR)): u for p, s in sources.items() if (u := private_uses(s, own))
    }
    assert not bad, f"private names of other modules used (add a public method instead): {bad}"


@pytest.mark.parametrize(
    "source",
    [
        "raw = getattr(storage, '_db', None)",
        "storage._db.get(b'k')",
        "parser.conflict_handler = parser._optionals.conflict_handler = 'resolve'",
        "import argparse\naction = argparse._SubParsersAction",
        "self.store._lock.acquire()",
        "hasattr(x, '_secret')",
    ],
)
def test_private_name_checker_catches_reaches(source: str) -> None:
    assert private_uses(source, defined_names(ast.parse("x = 1"))) != []


@pytest.mark.parametrize(
    "source",
    [
        "class A:\n    def f(self):\n        return self._x\n",
        "class A:\n    _n = 1\n\ndef g(a):\n    return a._n\n",
        "x.__class__",
        "getattr(x, '__name__')",
        "import argparse\nsubs: dict[str, argparse._SubParsersAction] = {}",
        "def f(a: argparse._SubParsersAction) -> x._T:\n    pass\n",
    ],
)
def test_private_name_checker_allows_own_names(source: str) -> None:
    assert private_uses(source, defined_names(ast.parse(source))) == []


# --- search uses only the public key-value API ----------------------------------------------

SEARCH_DIR = REPO_DIR / "search"
NOT_FOR_SEARCH = ("ring.core", "ring.net", "ring.embedded", "ring.storage", "ring.sim", "rocksdict")


@pytest.mark.parametrize(
    "path", sorted(SEARCH_DIR.glob("*.py")), ids=lambda p: str(p.relative_to(REPO_DIR))
)
def test_search_uses_only_the_public_key_value_api(path: Path) -> None:
    # The same index code runs on ring.open(...) and ring.connect(...): no protocol internals,
    # no storage engine.
    bad = imports_of(path.read_text(encoding="utf-8"), package_of(path), NOT_FOR_SEARCH)
    assert not bad, f"{path} imports ring internals (use the key-value API): {bad}"


def test_search_layer_checker_catches_internal_imports() -> None:
    assert imports_of("from ring.core import record", "search", NOT_FOR_SEARCH)
    assert imports_of("import ring.net.codec", "search", NOT_FOR_SEARCH)
    assert not imports_of("from ring.errors import InvalidInput", "search", NOT_FOR_SEARCH)
