"""The embedded stack's default addresses: the one place its ports and paths are defined.

Used by scenario defaults, the stack supervisor and the runner, so the three cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_STATE_DIR = Path(".capacity/stack")  # relative to the working directory
DEFAULT_PORTS: Mapping[str, int] = {
    "gateway": 4000,
    "master-data": 3010,
    "workflow": 3011,
    "rules-engine": 3012,
    "temporal": 7233,
    "temporal-http": 7243,
    "temporal-metrics": 7244,
}
GRAPHQL_PATH = "/graphql"
# Apollo Server 3's health path; the embedded gateway serves it. Apollo Server 4+ does not
# (a GET meets its CSRF prevention): see `capacity.preflight` for the portable probe.
APOLLO_HEALTH_PATH = "/.well-known/apollo/server-health"
HEALTH_PATHS: Mapping[str, str] = {
    "gateway": APOLLO_HEALTH_PATH,
    "master-data": "/health",
    "rules-engine": "/health",
    "workflow": "/health",
}
DEFAULT_NAMESPACE = "vextrus"
DEFAULT_TASK_QUEUE = "vextrus-erp"


def default_url(service: str) -> str:
    """Base URL of an HTTP service on the default ports (the gateway's GraphQL endpoint)."""
    url = f"http://{DEFAULT_HOST}:{DEFAULT_PORTS[service]}"
    return url + GRAPHQL_PATH if service == "gateway" else url


DEFAULT_TEMPORAL_ADDRESS = f"{DEFAULT_HOST}:{DEFAULT_PORTS['temporal']}"
