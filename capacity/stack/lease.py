"""One owner for an embedded stack: a lock held by the run using it, and child processes that
die with that run.

`capacity run` holds an exclusive `flock` on `<state dir>/run.lock` while it uses the stack,
so a second run in the same checkout is refused with one line instead of silently sharing
the stack (and having it stopped under it by the first run's teardown). With `--share-stack`
the second run goes ahead knowingly: it leaves a marker in `<state dir>/sharers/`, and both
runs record that they shared the stack, so neither can pass on figures the other distorted.
The kernel drops the lock when its holder dies, even under SIGKILL.

Processes a run starts (the stack's services, Locust) get a parent-death signal, so they end
with the run even when it is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from capacity.errors import StackError

LOCK_FILE = "run.lock"
SHARERS_DIR = "sharers"
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn` that makes the child receive `sig` when the process that started it
    exits (Linux `PR_SET_PDEATHSIG`); elsewhere it does nothing."""
    parent = os.getpid()

    def setup() -> None:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os.kill(os.getpid(), sig)

    return setup


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StackLease:
    """The exclusive lock on a stack state dir, or a registered share of it."""

    def __init__(self, state_dir: Path, run_label: str) -> None:
        self.state_dir = Path(state_dir)
        self.run_label = run_label
        self.shared = False  # this run joined a stack another run holds
        self._fh: IO[str] | None = None
        self._marker: Path | None = None
        self._since_s = time.time()

    def acquire(self, *, share: bool = False) -> StackLease:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fh = (self.state_dir / LOCK_FILE).open("a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another run"
            fh.close()
            if not share:
                raise StackError(
                    f"the embedded stack in {self.state_dir} is in use by {holder}; wait for "
                    "it to finish, use another --state-dir, or pass --share-stack to run "
                    "alongside it knowingly (both runs are then marked shared)"
                ) from None
            self.shared = True
            self._register_share(holder)
            return self
        fh.seek(0)
        fh.truncate()
        fh.write(f"{self.run_label} (pid {os.getpid()})")
        fh.flush()
        self._fh = fh
        return self

    def _register_share(self, holder: str) -> None:
        sharers = self.state_dir / SHARERS_DIR
        sharers.mkdir(exist_ok=True)
        self._marker = sharers / f"{os.getpid()}.json"
        self._marker.write_text(
            json.dumps({"run": self.run_label, "pid": os.getpid(), "holder": holder}),
            encoding="utf-8",
        )

    def sharers_seen(self) -> list[str]:
        """Other runs that shared this stack while this lease was held (live or finished)."""
        sharers = self.state_dir / SHARERS_DIR
        found = []
        for path in sorted(sharers.glob("*.json")) if sharers.is_dir() else ():
            if path == self._marker:
                continue
            try:
                info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if path.stat().st_mtime >= self._since_s - 1.0:
                found.append(str(info.get("run", path.stem)))
        return found

    def live_sharers(self) -> list[str]:
        sharers = self.state_dir / SHARERS_DIR
        live = []
        for path in sharers.glob("*.json") if sharers.is_dir() else ():
            if path != self._marker and path.stem.isdigit() and _pid_alive(int(path.stem)):
                live.append(path.stem)
        return live

    def release(self) -> None:
        # A sharer's marker stays: the holder reads it at its end (it may end later) and then
        # removes the markers of runs that are over.
        self._marker = None
        if self._fh is not None:
            sharers = self.state_dir / SHARERS_DIR
            for path in sharers.glob("*.json") if sharers.is_dir() else ():
                if path.stem.isdigit() and not _pid_alive(int(path.stem)):
                    with contextlib.suppress(OSError):
                        path.unlink()
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
