"""Health driver: polls each service's health endpoint at a low, fixed rate, so the
report shows availability during the run without adding measurable load. Requests go
through the lean path with a wire probe, like the other HTTP drivers."""

from __future__ import annotations

from collections.abc import Mapping

from locust import FastHttpUser, constant_throughput, task

from capacity.drivers.lean_http import request_headers, send_checked
from capacity.drivers.wire_timing import for_user
from capacity.scenario import UserClass


def make_health_user(
    spec: UserClass, health_urls: Mapping[str, str], name: str = "HealthUser"
) -> type:
    first = next(iter(health_urls.values()))
    rate = spec.rate_per_s or 0.5
    return type(
        name,
        (HealthUser,),
        {
            "host": first,
            "fixed_count": max(1, spec.fixed_count),
            "weight": spec.weight,
            "wait_time": constant_throughput(rate),
            "targets": dict(health_urls),
            "network_timeout": 5.0,
            "abstract": False,
        },
    )


def _any_body(_content: bytes) -> tuple[str | None, bool]:
    return None, False


class HealthUser(FastHttpUser):
    abstract = True
    targets: dict[str, str] = {}

    def on_start(self) -> None:
        self._order = [(f"health {service}", url) for service, url in self.targets.items()]
        self._next = 0
        self._headers = request_headers(self.client, {})
        self._wire = for_user(self, *self.targets.values())

    @task
    def check(self) -> None:
        name, url = self._order[self._next % len(self._order)]
        self._next += 1
        send_checked(
            self.client, "GET", url, b"", self._headers, name, self.context(), _any_body, self._wire
        )
