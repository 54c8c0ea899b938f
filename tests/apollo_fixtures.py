"""A real Apollo Federation for the tests: a gateway and two subgraphs from npm, on 127.0.0.1.

`tests/apollo/` holds the Node side (see its README): subgraphs `master-data` and `finance`
(`@apollo/subgraph` on `@apollo/server` 5.5) and an `@apollo/gateway` 2.14 gateway. Every
process listens on a port the OS picks (port 0) and prints its URLs on a ready line, so tests
never race for ports. The subgraphs start once per session and are shared by two gateways:

  apollo_dev   development mode: IntrospectAndCompose over the subgraphs, introspection on
  apollo_prod  production mode: NODE_ENV=production, composed supergraph file, introspection off

Both are function-scoped views that reset faults, counters and data first; the session-scoped
`apollo_dev_session` / `apollo_prod_session` skip the reset. tests/conftest.py registers this
module as a plugin, so any test can take them; mark such tests `apollo` and `stack`.

Without `tests/apollo/node_modules` (or without Node) the tests skip locally, but fail under
CI=true or CAPACITY_REQUIRE_APOLLO=1: a skipped federation test in CI would hide exactly the
behaviour against real Apollo that these tests exist to check.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

APOLLO_DIR = Path(__file__).resolve().parent / "apollo"
EXAMPLE_DIR = (
    Path(__file__).resolve().parent.parent / "scenarios" / "examples" / "apollo-federation"
)
SETUP_HINT = "run `npm ci --prefix tests/apollo`"
READY_PREFIX = "CAPACITY_APOLLO_READY "
SUBGRAPHS = ("master-data", "finance")
MIN_NODE_MAJOR = 20
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# A safety net on top of the parent-death watch in the Node processes: longer than any suite.
MAX_LIFETIME_S = 3 * 3600
LIVENESS_QUERY = {"query": "{__typename}"}
# Loopback only: a proxy from the environment must never relay test traffic.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ApolloHarnessError(RuntimeError):
    """A harness process did not start or answer; the message carries its log's last lines."""


def apollo_required() -> bool:
    """True in CI (CI=true) or with CAPACITY_REQUIRE_APOLLO=1: a missing harness then fails."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return ci or os.environ.get("CAPACITY_REQUIRE_APOLLO", "") == "1"


def harness_unavailable(reason: str) -> NoReturn:
    message = f"Apollo federation harness unavailable: {reason}; {SETUP_HINT}"
    if apollo_required():
        pytest.fail(f"{message} (required under CI=true or CAPACITY_REQUIRE_APOLLO=1)")
    pytest.skip(message)


def node_binary() -> str:
    """The `node` to run the harness with (Node 20+), or skip/fail with the reason."""
    node = shutil.which("node")
    if node is None:
        harness_unavailable("`node` is not on PATH (Node 20+ is needed)")
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        harness_unavailable(f"`node --version` failed: {exc}")
    match = re.match(r"v(\d+)\.", version)
    if not match or int(match.group(1)) < MIN_NODE_MAJOR:
        harness_unavailable(f"Node {version} is too old (Node {MIN_NODE_MAJOR}+ is needed)")
    if not (APOLLO_DIR / "node_modules" / "@apollo" / "gateway").is_dir():
        harness_unavailable(f"{APOLLO_DIR / 'node_modules'} is missing")
    return node


def node_env(**extra: str) -> dict[str, str]:
    """The environment for a harness process: telemetry off (no network here), no proxies."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy") and k != "NODE_ENV"
    }
    env["APOLLO_TELEMETRY_DISABLED"] = "true"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


# --- HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpAnswer:
    """One HTTP answer: status, headers (lower-case names), raw text and parsed JSON (or None)."""

    status: int
    headers: Mapping[str, str]
    text: str
    body: Any

    @property
    def data(self) -> Any:
        return self.body.get("data") if isinstance(self.body, dict) else None

    @property
    def errors(self) -> list[dict[str, Any]]:
        if isinstance(self.body, dict):
            return list(self.body.get("errors") or [])
        return []


def http_request(
    url: str,
    *,
    method: str = "GET",
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> HttpAnswer:
    """Send one request; 4xx/5xx are answers too (Apollo puts its message in the body)."""
    data = None if body is None else json.dumps(body).encode()
    all_headers = dict(headers or {})
    if data is not None:
        all_headers.setdefault("content-type", "application/json")
    req = urllib.request.Request(url, data=data, headers=all_headers, method=method)
    try:
        with _OPENER.open(req, timeout=timeout_s) as resp:
            status, resp_headers, raw = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        status, resp_headers, raw = exc.code, exc.headers, exc.read()
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    return HttpAnswer(status, {k.lower(): v for k, v in resp_headers.items()}, text, parsed)


def persisted_query_hash(query: str) -> str:
    """The sha256 hex digest APQ uses to name a query."""
    return hashlib.sha256(query.encode("utf-8")).hexdigest()


# --- processes ---------------------------------------------------------------------------


@dataclass
class NodeProcess:
    """One running harness process and what its ready line announced."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self) -> None:
        """SIGTERM (Apollo drains), then SIGKILL after STOP_TIMEOUT_S; always reaped."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(timeout=STOP_TIMEOUT_S)


def start_node(
    script: str,
    args: Sequence[str],
    *,
    name: str,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> NodeProcess:
    """Start `node tests/apollo/<script> args...` and wait for its ready line."""
    node = node_binary()
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [node, script, *args, "--max-lifetime-s", str(MAX_LIFETIME_S)],
            cwd=APOLLO_DIR,
            env=dict(env) if env is not None else node_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc = NodeProcess(name, popen, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(READY_PREFIX):
                proc.info = json.loads(line[len(READY_PREFIX) :])
                return proc
        if popen.poll() is not None:
            raise ApolloHarnessError(
                f"{name} exited with code {popen.returncode} before it was ready; "
                f"last lines of {log_path}:\n{proc.log_tail()}"
            )
        time.sleep(0.05)
    proc.stop()
    raise ApolloHarnessError(
        f"{name} printed no ready line within {timeout_s:.0f} s; last lines of {log_path}:\n"
        f"{proc.log_tail()}"
    )


def wait_graphql_ready(url: str, name: str, timeout_s: float = START_TIMEOUT_S) -> None:
    """Until `url` answers the portable liveness probe: POST {__typename} as JSON -> 200."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = http_request(url, method="POST", body=LIVENESS_QUERY, timeout_s=5)
            if answer.status == 200 and answer.data:
                return
            last = f"HTTP {answer.status}: {answer.text[:200]}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise ApolloHarnessError(f"{name} at {url} not ready within {timeout_s:.0f} s: {last}")


# --- the federation ----------------------------------------------------------------------


@dataclass
class ApolloSubgraphs:
    """The two running subgraphs and the supergraph SDL composed from them."""

    processes: dict[str, NodeProcess]
    supergraph_path: Path

    def url(self, name: str) -> str:
        return str(self.processes[name].info["url"])

    def admin_url(self, name: str) -> str:
        if name not in self.processes:
            raise KeyError(f"unknown subgraph {name!r} (known: {', '.join(self.processes)})")
        return str(self.processes[name].info["admin_url"])

    def stop(self) -> None:
        for proc in self.processes.values():
            proc.stop()


@dataclass
class ApolloFederation:
    """A running gateway over the shared subgraphs, with helpers to drive and inspect it.

    `gateway_url` ends in /graphql (Apollo's standalone server answers on any path).
    `stats(name)` / `set_faults(subgraph, ...)` talk to each process's admin API; `reset()`
    puts faults, counters and data back to their start state.
    """

    mode: str  # "development" or "production"
    gateway: NodeProcess
    subgraphs: ApolloSubgraphs

    @property
    def gateway_url(self) -> str:
        return str(self.gateway.info["url"]).rstrip("/") + "/graphql"

    @property
    def gateway_base_url(self) -> str:
        return str(self.gateway.info["url"]).rstrip("/")

    @property
    def supergraph_path(self) -> Path:
        return self.subgraphs.supergraph_path

    @property
    def subgraph_urls(self) -> dict[str, str]:
        return {name: self.subgraphs.url(name) for name in SUBGRAPHS}

    @property
    def pids(self) -> dict[str, int]:
        """Service name -> pid (gateway, master-data, finance), e.g. for process sampling."""
        return {
            "gateway": self.gateway.pid,
            **{n: p.pid for n, p in self.subgraphs.processes.items()},
        }

    def admin_url(self, name: str) -> str:
        if name == "gateway":
            return str(self.gateway.info["admin_url"])
        return self.subgraphs.admin_url(name)

    # GraphQL through the gateway

    def post(
        self,
        query: str | None = None,
        variables: Mapping[str, Any] | None = None,
        *,
        operation_name: str | None = None,
        extensions: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpAnswer:
        """POST one GraphQL request to the gateway as JSON (query may be omitted for APQ)."""
        body: dict[str, Any] = {}
        if query is not None:
            body["query"] = query
        if variables is not None:
            body["variables"] = dict(variables)
        if operation_name is not None:
            body["operationName"] = operation_name
        if extensions is not None:
            body["extensions"] = dict(extensions)
        return http_request(self.gateway_url, method="POST", body=body, headers=headers)

    def get(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> HttpAnswer:
        """A GET query, as Apollo's CSRF prevention accepts it (`apollo-require-preflight`)."""
        params = {"query": query}
        if variables is not None:
            params["variables"] = json.dumps(variables)
        url = f"{self.gateway_url}?{urllib.parse.urlencode(params)}"
        return http_request(url, headers={"apollo-require-preflight": "true", **(headers or {})})

    # admin API

    def stats(self, name: str) -> dict[str, Any]:
        """A process's exact counters (`GET /admin/stats`): `gateway`, `master-data`, `finance`."""
        return self._admin(name, "GET", "/admin/stats")

    def set_faults(
        self,
        subgraph: str,
        error_rate: float,
        *,
        fields: Sequence[str] | None = None,
        code: str | None = None,
        message: str | None = None,
        seed: int | None = None,
        delay_ms: float | None = None,
    ) -> dict[str, Any]:
        """Make `error_rate` of the subgraph's matching resolver calls throw a GraphQLError.

        Deterministic without `seed` (the k-th matching call fails when floor(k * rate) steps
        up: exactly floor(n * rate) of n calls); `fields` are "Type.field" globs, default
        root fields (["Query.*", "Mutation.*"]); `code` is `extensions.code` (default
        INJECTED_FAULT); `delay_ms` adds latency to every matching call.
        """
        body: dict[str, Any] = {"error_rate": error_rate}
        optional = {
            "fields": list(fields) if fields is not None else None,
            "code": code,
            "message": message,
            "seed": seed,
            "delay_ms": delay_ms,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._admin(subgraph, "POST", "/admin/faults", body)

    def clear_faults(self, subgraph: str | None = None) -> None:
        for name in [subgraph] if subgraph else SUBGRAPHS:
            self._admin(name, "DELETE", "/admin/faults")

    def reset(self) -> None:
        """Faults off, counters zero (subgraphs and gateway), data back to its seeded state."""
        for name in (*SUBGRAPHS, "gateway"):
            self._admin(name, "POST", "/admin/reset", {})

    def _admin(self, name: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
        answer = http_request(self.admin_url(name) + path, method=method, body=body)
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise ApolloHarnessError(
                f"{name} admin {method} {path}: HTTP {answer.status}: {answer.text[:300]}"
            )
        return answer.body


def start_subgraphs(log_dir: Path) -> ApolloSubgraphs:
    """Start both subgraphs on OS-picked ports and compose the supergraph SDL from them."""
    processes: dict[str, NodeProcess] = {}
    try:
        for name in SUBGRAPHS:
            processes[name] = start_node(
                "subgraph.mjs", ["--name", name], name=name, log_dir=log_dir
            )
        for name, proc in processes.items():
            wait_graphql_ready(str(proc.info["url"]), name)
        supergraph_path = log_dir / "supergraph.graphql"
        compose_args: list[str] = []
        for name, proc in processes.items():
            compose_args += ["--subgraph", f"{name}={proc.info['url']}"]
        done = subprocess.run(
            [node_binary(), "compose.mjs", *compose_args, "--out", str(supergraph_path)],
            cwd=APOLLO_DIR,
            env=node_env(),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        if done.returncode != 0:
            raise ApolloHarnessError(f"compose.mjs failed ({done.returncode}): {done.stderr}")
    except BaseException:
        for proc in processes.values():
            proc.stop()
        raise
    return ApolloSubgraphs(processes, supergraph_path)


def start_gateway(subgraphs: ApolloSubgraphs, mode: str, log_dir: Path) -> ApolloFederation:
    """Start a gateway over `subgraphs`: development (IntrospectAndCompose) or production."""
    if mode == "development":
        args: list[str] = []
        for name in SUBGRAPHS:
            args += ["--subgraph", f"{name}={subgraphs.url(name)}"]
        env = node_env()
    elif mode == "production":
        args = ["--supergraph", str(subgraphs.supergraph_path)]
        env = node_env(NODE_ENV="production")
    else:
        raise ValueError(f"mode must be development or production, got {mode!r}")
    gateway = start_node("gateway.mjs", args, name=f"gateway-{mode}", log_dir=log_dir, env=env)
    try:
        federation = ApolloFederation(mode, gateway, subgraphs)
        wait_graphql_ready(federation.gateway_url, gateway.name)
        if gateway.info.get("mode") != mode:
            raise ApolloHarnessError(f"{gateway.name} reports mode {gateway.info.get('mode')!r}")
    except BaseException:
        gateway.stop()
        raise
    return federation


@pytest.fixture(scope="session")
def apollo_subgraphs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApolloSubgraphs]:
    """master-data and finance, shared by the session (and by both gateways)."""
    node_binary()
    subgraphs = start_subgraphs(tmp_path_factory.mktemp("apollo"))
    try:
        yield subgraphs
    finally:
        subgraphs.stop()


@pytest.fixture(scope="session")
def apollo_dev_session(
    apollo_subgraphs: ApolloSubgraphs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApolloFederation]:
    federation = start_gateway(apollo_subgraphs, "development", tmp_path_factory.mktemp("gw"))
    try:
        yield federation
    finally:
        federation.gateway.stop()


@pytest.fixture(scope="session")
def apollo_prod_session(
    apollo_subgraphs: ApolloSubgraphs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApolloFederation]:
    federation = start_gateway(apollo_subgraphs, "production", tmp_path_factory.mktemp("gw"))
    try:
        yield federation
    finally:
        federation.gateway.stop()


@pytest.fixture
def apollo_dev(apollo_dev_session: ApolloFederation) -> ApolloFederation:
    """The development-mode federation, reset (no faults, zero counters, seeded data)."""
    apollo_dev_session.reset()
    return apollo_dev_session


@pytest.fixture
def apollo_prod(apollo_prod_session: ApolloFederation) -> ApolloFederation:
    """The production-mode federation, reset (no faults, zero counters, seeded data)."""
    apollo_prod_session.reset()
    return apollo_prod_session


def write_apollo_scenario(
    dest_dir: Path,
    federation: ApolloFederation,
    *,
    source: str = "apollo-federation.toml",
    replace: Mapping[str, str] | None = None,
) -> Path:
    """Copy the example scenario folder into `dest_dir`, pointed at `federation`'s gateway."""
    shutil.copytree(EXAMPLE_DIR, dest_dir, dirs_exist_ok=True)
    path = dest_dir / source
    text = path.read_text(encoding="utf-8")
    text, count = re.subn(r'(?m)^gateway = "[^"]*"', f'gateway = "{federation.gateway_url}"', text)
    assert count == 1, f"no single `gateway = ...` line in {source}"
    for old, new in (replace or {}).items():
        assert old in text, f"{old!r} not in {source}"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return path
