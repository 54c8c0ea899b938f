"""The lean HTTP path's tests (tests/inproc_lean_http.py), in a process of their own.

They import Locust, whose gevent monkey-patching must come before any import of ssl; in the
main pytest process other test modules have imported ssl already (RecursionError in ssl).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT


def test_lean_http_cases_in_their_own_process(tmp_path: Path) -> None:
    # The inner session gets a base folder of its own and none of the outer one's options:
    # with PYTEST_ADDOPTS="--basetemp=X" inherited it would empty X, the outer session's
    # folder, under every test still running (the session's embedded stack included).
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--basetemp", str(tmp_path / "inner"),
            str(REPO_ROOT / "tests" / "inproc_lean_http.py"),
        ],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
