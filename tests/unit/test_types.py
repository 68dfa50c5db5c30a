"""The pure core and the runtime's effect dispatch type-check under ``mypy --strict``.

``Node.handle`` returns ``list[Effect]``, a closed union (``ring.core.messages.Effect``), and
``Runtime._apply`` ends its dispatch with ``assert_never``: a new kind of effect that the shell
does not carry out fails here, not in production.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_core_and_dispatch_type_check(tmp_path: Path) -> None:
    # mypy is one of the test extras (setup.cfg): the check runs wherever the suite runs.
    cmd = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path)]
    done = subprocess.run(
        [*cmd, "ring/core", "ring/net/runtime.py"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
