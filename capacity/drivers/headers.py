"""Request headers a target gets: the scenario's static and environment headers, Apollo
client awareness for the gateway, and authorization; values from environment variables are
read here, at run time, and never written anywhere."""

from __future__ import annotations

import os

from capacity.scenario import Targets

# Apollo's client-awareness headers: the gateway's metrics and logs can tell this load apart.
CLIENT_NAME_HEADER = "apollographql-client-name"
CLIENT_VERSION_HEADER = "apollographql-client-version"


def target_headers(targets: Targets, key: str) -> dict[str, str]:
    """Headers for target `key` (`gateway`, `rules_engine`, ...), in increasing precedence:
    client awareness (gateway), static headers, headers from environment variables, and the
    `auth_env` Authorization (gateway)."""
    out: dict[str, str] = {}
    if key == "gateway":
        settings = targets.graphql
        if settings.client_name:
            out[CLIENT_NAME_HEADER] = settings.client_name
        if settings.client_version:
            out[CLIENT_VERSION_HEADER] = settings.client_version
    out.update(targets.headers.get(key, {}))
    for header, var in targets.headers_env.get(key, {}).items():
        value = os.environ.get(var)
        if value is not None:
            out[header] = value
    if key == "gateway" and targets.auth_env:
        value = os.environ.get(targets.auth_env)
        if value:
            out["Authorization"] = value
    return out
