"""Health driver: polls each service's health endpoint at a low, fixed rate, so the
report shows availability during the run without adding measurable load."""

from __future__ import annotations

from collections.abc import Mapping

from locust import FastHttpUser, constant_throughput, task

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


class HealthUser(FastHttpUser):
    abstract = True
    targets: dict[str, str] = {}

    def on_start(self) -> None:
        self._order = list(self.targets.items())
        self._next = 0

    @task
    def check(self) -> None:
        service, url = self._order[self._next % len(self._order)]
        self._next += 1
        self.client.get(url, name=f"health {service}")
