"""Health driver: polls each service's health check at a low, fixed rate, so the report shows
availability during the run without adding measurable load.

The checks are the preflight's (`targets.health`): a GET of a health URL (with an expected
status when configured), or for the gateway's `auto` and `graphql` modes a `{ __typename }`
query as a JSON POST, which Apollo Server 4+ accepts where it refuses the old health GET.
"""

from __future__ import annotations

from locust import FastHttpUser, constant_throughput, task

from capacity.addresses import parse_http_url
from capacity.drivers.headers import target_headers
from capacity.scenario import HealthCheck, Targets, UserClass

TYPENAME_QUERY = b'{"query":"{ __typename }"}'


def health_requests(targets: Targets) -> list[tuple[str, str, str, int | None]]:
    """(stat name, method, URL without credentials, expected status) per checked service."""
    out = []
    for service, check in targets.health_checks().items():
        if check.mode in ("auto", "graphql"):
            url = targets.url_of("gateway" if service == "gateway" else _key(service)).plain
            out.append((f"health {service}", "POST", url, check.status))
        elif check.mode == "http" and check.url:
            out.append((f"health {service}", "GET", parse_http_url(check.url).plain, check.status))
    return out


def _key(service: str) -> str:
    return service.replace("-", "_")


def make_health_user(spec: UserClass, targets: Targets, name: str = "HealthUser") -> type:
    requests = health_requests(targets)
    first = requests[0][2] if requests else targets.url_of("gateway").base
    rate = spec.rate_per_s or 0.5
    return type(
        name,
        (HealthUser,),
        {
            "host": parse_http_url(first).base,
            "fixed_count": max(1, spec.fixed_count),
            "weight": spec.weight,
            "wait_time": constant_throughput(rate),
            "requests": requests,
            "gateway_headers": target_headers(targets, "gateway"),
            "network_timeout": 5.0,
            "abstract": False,
        },
    )


class HealthUser(FastHttpUser):
    abstract = True
    requests: list[tuple[str, str, str, int | None]] = []
    gateway_headers: dict[str, str] = {}

    def on_start(self) -> None:
        self._next = 0

    @task
    def check(self) -> None:
        if not self.requests:
            return
        name, method, url, status = self.requests[self._next % len(self.requests)]
        self._next += 1
        if method == "POST":
            headers = {**self.gateway_headers, "Content-Type": "application/json"}
            with self.client.post(
                url, data=TYPENAME_QUERY.decode(), headers=headers, name=name, catch_response=True
            ) as resp:
                if resp.status_code == 200 and b'"data"' not in (resp.content or b""):
                    resp.failure("no data in the { __typename } answer")
            return
        if status is None:
            self.client.get(url, name=name)
            return
        with self.client.get(url, name=name, catch_response=True) as resp:
            if resp.status_code == status:
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code} (expected {status})")


__all__ = ["HealthCheck", "make_health_user"]
