"""DockerSource logic against a fake Engine API and fake cgroup trees (no engine needed).

The real-engine tests are in test_collect_docker.py; these pin down selection, the API
fallback, gaps and restarts, and a daemon lost mid-run, which a shared engine cannot stage.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from cgroup_trees import Figures, make_container

from capacity.collect.docker_source import DockerSource, connect_docker, counters_from_stats
from capacity.collect.samples import ResourceSample
from capacity.errors import TargetUnreachable

MB = 1024 * 1024
HOST_MEM = 8 * 1024 * MB


def cid(n: int) -> str:
    return f"{n:064x}"


class FakeAPI:
    """The few Engine API calls DockerSource makes, answered from plain dicts."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.stats_by_id: dict[str, list[dict[str, Any]]] = {}  # answered in turn, last repeats
        self.stats_delay_s = 0.0
        self.pids: dict[str, int] = {}
        self.down = False
        self.calls: list[str] = []

    def add(self, n: int, name: str, labels: dict[str, str] | None = None, state: str = "running"):
        self.entries.append(
            {"Id": cid(n), "Names": [f"/{name}"], "Labels": labels or {}, "State": state}
        )

    def _check(self, call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise docker.errors.DockerException("Error while fetching server API version")

    def info(self) -> dict[str, Any]:
        self._check("info")
        return {"Name": "fakehost", "MemTotal": HOST_MEM}

    def containers(self, all: bool = False, filters: dict[str, Any] | None = None):
        self._check("containers")
        wanted = (filters or {}).get("label", [])
        out = []
        for entry in self.entries:
            labels = entry["Labels"]
            ok = all or entry["State"] == "running"
            for item in wanted:
                key, sep, value = item.partition("=")
                ok = ok and key in labels and (not sep or labels[key] == value)
            if ok:
                out.append(entry)
        return out

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        self._check("inspect")
        return {"State": {"Pid": self.pids.get(container_id, 0)}}

    def stats(self, container_id: str, stream: bool = True, one_shot: bool | None = None):
        self._check("stats")
        assert stream is False and one_shot is True, "never a two-sample stream=false call"
        time.sleep(self.stats_delay_s)
        answers = self.stats_by_id[container_id]
        return answers.pop(0) if len(answers) > 1 else answers[0]


def api_stats(total_ns: int, system_ns: int, usage: int, inactive: int, limit: int) -> dict:
    return {
        "read": "2026-11-26T21:50:23.500000000Z",
        "cpu_stats": {
            "cpu_usage": {"total_usage": total_ns},
            "system_cpu_usage": system_ns,
            "online_cpus": 2,
            "throttling_data": {"throttled_time": 400_000_000},
        },
        "memory_stats": {
            "usage": usage,
            "limit": limit,
            "stats": {"total_inactive_file": inactive, "inactive_file": 1},
        },
    }


def by_target(samples: list[ResourceSample]) -> dict[str, ResourceSample]:
    return {s.target: s for s in samples}


def next_tick(source: DockerSource) -> list[ResourceSample]:
    """Sample after the fake's answers to the previous tick's stats calls have arrived."""
    time.sleep(0.05)
    return source.sample()


def test_selection_by_pattern_project_and_label(tmp_path: Path) -> None:
    api = FakeAPI()
    api.add(1, "vextrus-gateway-1", {"com.docker.compose.project": "vextrus", "tier": "edge"})
    api.add(2, "vextrus-db-1", {"com.docker.compose.project": "vextrus"})
    api.add(3, "other-app", {"com.docker.compose.project": "other", "tier": "edge"})
    api.add(4, "vextrus-old", {}, state="exited")
    names = lambda src: sorted(src.targets().values())  # noqa: E731
    root = tmp_path / "none"
    assert names(DockerSource(pattern="vextrus-*", client=api, cgroup_root=root)) == [
        "vextrus-db-1",
        "vextrus-gateway-1",
        "vextrus-old",
    ]
    assert names(DockerSource(project="vextrus", client=api, cgroup_root=root)) == [
        "vextrus-db-1",
        "vextrus-gateway-1",
    ]
    assert names(DockerSource(label="tier=edge", client=api, cgroup_root=root)) == [
        "other-app",
        "vextrus-gateway-1",
    ]
    assert names(DockerSource(pattern="*-1", label="tier", client=api, cgroup_root=root)) == [
        "vextrus-gateway-1"
    ]


def test_cgroup_path_rates_and_restart(tmp_path: Path) -> None:
    api = FakeAPI()
    api.add(1, "app")
    make_container(tmp_path, cid(1), 2, "systemd", Figures(cpu_usage_ns=10_000_000_000))
    source = DockerSource(pattern="app", client=api, cgroup_root=tmp_path)
    assert "1 via cgroup v2" in source.describe()

    before_first = time.monotonic()
    first = by_target(source.sample())["app"]
    after_first = time.monotonic()
    assert first.cpu_cores is None and first.cpu_throttled_s is None  # no previous reading
    assert first.mem_mb == pytest.approx(200.0)
    assert first.mem_limit_mb == pytest.approx(512.0)
    assert first.source == "container" and first.host == "fakehost"
    assert first.container_id == cid(1)[:12]

    time.sleep(0.2)
    figures = Figures(cpu_usage_ns=10_300_000_000, throttled_ns=350_000_000, limit_bytes=None)
    make_container(tmp_path, cid(1), 2, "systemd", figures)
    before_second = time.monotonic()
    second = by_target(source.sample())["app"]
    after_second = time.monotonic()
    # 0.3 CPU-seconds over the interval between the two reads, which lies in these bounds.
    assert second.cpu_cores is not None
    assert (
        0.3 / (after_second - before_first)
        <= second.cpu_cores
        <= 0.3 / (before_second - after_first)
    )
    assert second.cpu_throttled_s == pytest.approx(0.1)
    assert second.mem_limit_mb == pytest.approx(HOST_MEM / MB)  # no limit: the host's memory

    # Restarted: the counter starts again from zero, so no CPU figure for this interval.
    make_container(tmp_path, cid(1), 2, "systemd", Figures(cpu_usage_ns=1_000_000))
    third = by_target(source.sample())["app"]
    assert third.cpu_cores is None
    make_container(tmp_path, cid(1), 2, "systemd", Figures(cpu_usage_ns=100_000_000))
    assert (by_target(source.sample())["app"].cpu_cores or 0.0) > 0
    source.close()


def test_vanished_cgroup_leaves_a_gap_then_resumes(tmp_path: Path) -> None:
    api = FakeAPI()
    api.add(1, "app")
    api.add(2, "steady")
    make_container(tmp_path, cid(1), 1, "cgroupfs", Figures())
    make_container(tmp_path, cid(2), 1, "cgroupfs", Figures())
    source = DockerSource(client=api, cgroup_root=tmp_path)
    source.sample()
    (tmp_path / "cpuacct" / "docker" / cid(1) / "cpuacct.usage").write_text("")  # stopped
    assert set(by_target(source.sample())) == {"steady"}
    assert set(by_target(source.sample())) == {"steady"}
    make_container(tmp_path, cid(1), 1, "cgroupfs", Figures())  # started again
    rows = by_target(source.sample())
    assert set(rows) == {"app", "steady"}
    assert rows["app"].cpu_cores is None and rows["steady"].cpu_cores is not None


def test_falls_back_to_stats_api_with_a_warning(tmp_path: Path) -> None:
    api = FakeAPI()
    api.add(1, "remote-app")
    gib = 1024 * MB
    # +0.4 s of container CPU while the host's 2 CPUs advance 2 s: 1 s of wall time.
    api.stats_by_id[cid(1)] = [
        api_stats(1_000_000_000, 100_000_000_000, 300 * MB, 50 * MB, gib),
        api_stats(1_400_000_000, 102_000_000_000, 300 * MB, 50 * MB, gib),
    ]
    source = DockerSource(client=api, cgroup_root=tmp_path / "empty")
    warnings = source.take_warnings()
    assert len(warnings) == 1 and "remote-app" in warnings[0] and "stats API" in warnings[0]
    assert "1 via the stats API" in source.describe()
    assert source.sample() == []  # asked now; the answer is a row of the next tick
    first = by_target(next_tick(source))["remote-app"]
    assert first.cpu_cores is None
    assert first.mem_mb == pytest.approx(250.0)  # usage minus total_inactive_file (v1)
    assert first.mem_limit_mb == pytest.approx(1024.0)
    assert first.ts_unix_s == pytest.approx(1795729823.5)  # the daemon's read time
    second = by_target(next_tick(source))["remote-app"]
    assert second.cpu_cores == pytest.approx(0.4)
    assert second.cpu_throttled_s == pytest.approx(0.0)
    time.sleep(0.05)
    assert api.calls.count("stats") == 3  # one per tick, never two for one answer
    source.close()


def test_stats_calls_run_concurrently() -> None:
    """One-shot calls wait for the daemon's next round (~1 s); in turn, 6 would take 6 s."""
    api = FakeAPI()
    api.stats_delay_s = 0.3
    for n in range(6):
        api.add(n, f"c{n}")
        api.stats_by_id[cid(n)] = [api_stats(1, 1, MB, 0, 100 * MB)]
    source = DockerSource(client=api, cgroup_root=None)
    assert source.sample() == []
    time.sleep(0.6)
    assert len(source.sample()) == 6
    source.close()


def test_unreadable_cgroup_files_fall_back(tmp_path: Path) -> None:
    api = FakeAPI()
    api.add(1, "app")
    api.stats_by_id[cid(1)] = [api_stats(1, 1, 10 * MB, 0, 100 * MB)]
    make_container(tmp_path, cid(1), 2, "cgroupfs", Figures())
    stat = tmp_path / "docker" / cid(1) / "memory.stat"
    stat.unlink()
    stat.mkdir()  # opens, but reading it fails (EISDIR); root ignores permission bits
    source = DockerSource(client=api, cgroup_root=tmp_path)
    assert any("not readable" in w for w in source.take_warnings())
    source.sample()
    assert by_target(next_tick(source))["app"].mem_mb == pytest.approx(10.0)


def test_stopped_container_via_api_is_a_gap(tmp_path: Path) -> None:
    api = FakeAPI()
    api.add(1, "app")
    api.stats_by_id[cid(1)] = [
        {"read": "0001-01-01T00:00:00Z", "cpu_stats": {}, "memory_stats": {}}
    ]
    source = DockerSource(client=api, cgroup_root=None)
    assert source.sample() == []
    assert next_tick(source) == []
    assert api.calls.count("stats") == 1  # not asked again until listed as running


def test_daemon_lost_mid_run_warns_and_keeps_sampling(tmp_path: Path) -> None:
    api = FakeAPI()
    api.add(1, "app")
    make_container(tmp_path, cid(1), 1, "systemd", Figures())
    source = DockerSource(client=api, cgroup_root=tmp_path, rediscover_s=0.0)
    source.take_warnings()
    api.down = True
    assert [s.target for s in source.sample()] == ["app"]  # cgroup files still read
    assert [s.target for s in source.sample()] == ["app"]
    warnings = source.take_warnings()
    assert len(warnings) == 1 and "unreachable" in warnings[0]
    api.down = False
    source.sample()
    assert source.take_warnings() == ["docker daemon reachable again"]


def test_daemon_unreachable_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    api = FakeAPI()
    api.down = True
    with pytest.raises(TargetUnreachable):
        DockerSource(client=api, cgroup_root=tmp_path)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(TargetUnreachable) as caught:
        connect_docker(timeout_s=2)
    message = str(caught.value)
    assert "\n" not in message and "no-such.sock" in message


def test_no_match_warns_once_and_later_containers_appear(tmp_path: Path) -> None:
    api = FakeAPI()
    source = DockerSource(pattern="late-*", client=api, cgroup_root=tmp_path, rediscover_s=0.0)
    assert source.take_warnings() == ["no container matches name late-* (yet)"]
    make_container(tmp_path, cid(7), 2, "systemd", Figures())
    api.add(7, "late-1")
    assert [s.target for s in source.sample()] == ["late-1"]
    assert source.take_warnings() == []


def test_counters_from_stats_v2_and_stopped() -> None:
    stats = api_stats(5, 10, 100 * MB, 0, 200 * MB)
    stats["memory_stats"]["stats"] = {"inactive_file": 20 * MB}  # cgroup v2 daemon
    counters = counters_from_stats(stats)
    assert counters is not None and counters.mem_working_set_bytes == 80 * MB
    assert counters_from_stats({"cpu_stats": {"cpu_usage": {"total_usage": 0}}}) is None
