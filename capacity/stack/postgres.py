"""PostgreSQL for the embedded stack: the server binaries of the `pgserver` PyPI package.

`pgserver` ships PostgreSQL 16 built for manylinux, so `make run` needs no apt step and no
download at run time. The supervisor runs the `postgres` binary itself, in the foreground
(not through `pg_ctl`), so it has a pid, a process group and a log like every other service,
and the resource sampler sees it (backends are its children) as the service `postgres`. It
listens on a Unix socket only (no TCP port to collide with). PostgreSQL refuses to run as
root, so as root it runs as the system user `pgserver` (created by pgserver's own helper, as
`pgserver.get_server` does), and the folders leading to its data get the others' execute bit.
Durability is off (fsync, full-page writes): the data is regenerated at every master-data start.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from capacity.errors import StackError

SYSTEM_USER = "pgserver"
DATA_DIR = "postgres"
SOCKET_DIR = "postgres-socket"
PORT = 5432  # names the socket file only: no TCP listener
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, with the file name in it


def bin_dir() -> Path:
    """The PostgreSQL binaries of the installed pgserver package (found, not imported:
    importing pgserver sets up its own server registry and runtime folders)."""
    spec = importlib.util.find_spec("pgserver")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "pginstall" / "bin"
        if (candidate / "postgres").is_file():
            return candidate
    raise StackError("PostgreSQL binaries not found: install the pgserver package")


def _ensure_user(name: str) -> tuple[int, int]:
    """uid and gid of system user `name`, created with useradd when missing (as pgserver does)."""
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        done = subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise StackError(
                f"postgres: cannot create system user '{name}' to run PostgreSQL as "
                f"(it refuses root): {done.stderr.strip()}"
            ) from None
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def _readable_tree(root: Path) -> None:
    """Let others read files and traverse folders under `root` (the binaries, libraries)."""
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            wanted = mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
            if wanted != mode:
                path.chmod(wanted)


def data_dir(state_dir: Path) -> Path:
    return Path(state_dir).resolve() / DATA_DIR


def socket_dir(state_dir: Path) -> Path:
    """Where the server's socket lives: in the state dir, or a short /tmp path when too long."""
    preferred = Path(state_dir).resolve() / SOCKET_DIR
    if len(str(preferred / f".s.PGSQL.{PORT}")) <= MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha1(str(preferred).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"capacity-pg-{digest}"


def dsn(state_dir: Path) -> str:
    """The libpq URL master-data connects with (user postgres, trust auth, Unix socket)."""
    return f"postgresql://postgres@/postgres?host={socket_dir(state_dir)}"


def _run_as_user() -> str | None:
    return SYSTEM_USER if os.geteuid() == 0 else None


def _open_path_for(path: Path) -> None:
    """Give 'others' the execute (traverse) bit on every folder leading to `path`."""
    for folder in reversed(path.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


def prepare(state_dir: Path) -> None:
    """Make the data folder (initdb once) and the socket folder, owned by the server's user."""
    user = _run_as_user()
    data = data_dir(state_dir)
    sock = socket_dir(state_dir)
    uid = gid = -1
    if user is not None:
        uid, gid = _ensure_user(user)
        install = bin_dir().parent
        _readable_tree(install)
        _open_path_for(install / "bin")
    for folder in (data, sock):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        if user is not None:
            os.chown(folder, uid, gid)
            _open_path_for(folder)
    if (data / "PG_VERSION").exists():
        return
    cmd = [str(bin_dir() / "initdb"), "-D", str(data), "--auth=trust", "--encoding=UTF8",
           "--no-sync", "-U", "postgres"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **process_identity())
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise StackError(f"postgres: initdb failed in {data}: {tail[0]}")


def command(state_dir: Path) -> list[str]:
    """The foreground server: Unix socket only, durability off, small memory."""
    return [
        str(bin_dir() / "postgres"), "-D", str(data_dir(state_dir)),
        "-h", "", "-k", str(socket_dir(state_dir)), "-p", str(PORT),
        "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        "-c", "shared_buffers=32MB", "-c", "max_connections=60",
        "-c", "log_min_messages=warning", "-c", "log_checkpoints=off",
    ]  # fmt: skip


def process_identity() -> dict[str, Any]:
    """`subprocess` arguments that run PostgreSQL as its own user, group and no extra groups
    (with root's group kept, root-owned folders would deny it even their 'others' bits)."""
    user = _run_as_user()
    if user is None:
        return {}
    return {"user": user, "group": user, "extra_groups": []}


def ready(state_dir: Path) -> bool:
    """Whether postmaster.pid says the server accepts connections and its socket exists."""
    pid_file = data_dir(state_dir) / "postmaster.pid"
    try:
        lines = pid_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    status_ready = len(lines) >= 8 and lines[7].strip() == "ready"
    return status_ready and (socket_dir(state_dir) / f".s.PGSQL.{PORT}").exists()
