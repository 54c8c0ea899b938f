"""The scenario's `[traces]` section, validated: where `capacity run` receives spans.

Kept out of `capacity.scenario` so tracing is one module to read; the scenario loader calls
`load_traces` with its table reader (anything with the `Section` methods used here). The span
ceilings, `[slos.spans."<pattern>"]`, are ordinary SLOs of kind `span` (`capacity.slos`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_PORT = 14318  # not 4318: a collector on the same machine usually holds that one
TRACE_URL_FIELDS = frozenset({"trace_id"})
WORKFLOW_URL_FIELDS = frozenset({"workflow_id", "run_id", "namespace"})


@dataclass(frozen=True)
class TracesConfig:
    """Where `capacity run` listens for OTLP spans, how much it keeps, how it links traces."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_spans: int = 200_000  # analysed in memory: about 2 KB each, 400 MB at most
    flush_wait_s: float = 5.0
    trace_url: str = ""
    workflow_url: str = ""

    @property
    def endpoint(self) -> str:
        """The OTLP/HTTP traces URL senders on this machine use."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/v1/traces"


class Section(Protocol):
    table: dict[str, Any]
    seen: set[str]

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any: ...
    def positive(self, key: str, default: float, *, allow_zero: bool = False) -> float: ...
    def sub(self, key: str) -> Section | None: ...
    def error(self, key: str, what: str) -> Exception: ...
    def path(self, key: str) -> str: ...
    def finish(self) -> None: ...


def _template(sec: Section, key: str, fields: frozenset[str]) -> str:
    text = str(sec.get(key, str, ""))
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise sec.error(sec.path(key), f"not a valid URL template: {exc}") from None
    unknown = sorted(used - fields)
    if unknown:
        raise sec.error(
            sec.path(key), f"unknown field '{{{unknown[0]}}}' (known: {', '.join(sorted(fields))})"
        )
    return text


def load_traces(sec: Section | None) -> TracesConfig | None:
    """`[traces]`: absent or `enabled = false` means no receiver (and no trace marker)."""
    if sec is None:
        return None
    enabled = sec.get("enabled", bool, True)
    default = TracesConfig()
    port = sec.get("port", int, default.port)
    if not 1 <= port <= 65535:
        raise sec.error(sec.path("port"), f"must be a port number 1-65535, got {port}")
    max_spans = sec.get("max_spans", int, default.max_spans)
    if max_spans < 1:
        raise sec.error(sec.path("max_spans"), "must be >= 1")
    config = TracesConfig(
        host=sec.get("host", str, default.host),
        port=port,
        max_spans=max_spans,
        flush_wait_s=sec.positive("flush_wait_s", default.flush_wait_s, allow_zero=True),
        trace_url=_template(sec, "trace_url", TRACE_URL_FIELDS),
        workflow_url=_template(sec, "workflow_url", WORKFLOW_URL_FIELDS),
    )
    sec.finish()
    return config if enabled else None
