"""The container collector against a real Docker engine (see .ci/docker-setup.sh).

Checked against what the engine enforces (a `--cpus 0.5` limit, N MiB written to tmpfs)
and against `docker stats`, through both read paths: cgroup files and the one-shot stats API.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from capacity.cli import main as capacity_main
from capacity.collect import DockerSource, Sampler, read_resources

pytest_plugins = ["docker_fixtures"]
pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]

BURN = "while :; do :; done"
ALLOC_MB = 96
# Rows expected in the ~5 s window: the API path gets one answer per daemon round (~1 s).
MIN_ROWS = {"cgroup": 8, "api": 4}


def wait_for_log(container: Any, text: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in container.logs().decode(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{container.name} did not print {text!r} within {timeout_s} s")


def sources(pattern: str) -> tuple[DockerSource, DockerSource]:
    """The same containers through cgroup files and through the stats API."""
    via_cgroup = DockerSource(pattern=pattern)
    via_api = DockerSource(pattern=pattern, cgroup_root=None)
    assert "0 via the stats API" in via_cgroup.describe(), via_cgroup.take_warnings()
    assert "0 via cgroup" in via_api.describe()
    return via_cgroup, via_api


def rows_for(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame[(frame["target"] == name) & (frame["source"] == "container")]


@pytest.fixture(scope="module")
def workload(containers: Any) -> dict[str, Any]:
    """A CPU burner limited to half a core and a container holding ALLOC_MB MiB in tmpfs."""
    burn = containers.run("burn", BURN, nano_cpus=500_000_000)
    alloc = containers.run(
        "alloc",
        f"dd if=/dev/zero of=/dev/shm/fill bs=1M count={ALLOC_MB} 2>/dev/null; "
        "echo ready; sleep 600",
        shm_size="256m",
        mem_limit="256m",
    )
    wait_for_log(alloc, "ready")
    return {"burn": burn, "alloc": alloc, "pattern": containers.prefix + "*"}


@pytest.fixture(scope="module")
def measured(
    workload: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, docker_stats: Any
) -> dict:
    """Both read paths sampled side by side, with `docker stats` taken during the window."""
    out = tmp_path_factory.mktemp("collect")
    via_cgroup, via_api = sources(workload["pattern"])
    names = [workload["burn"].name, workload["alloc"].name]
    with (
        Sampler([via_cgroup], out / "cgroup.csv", interval_s=0.5),
        Sampler([via_api], out / "api.csv", interval_s=0.5),
    ):
        time.sleep(1.0)
        stats_start = time.time()
        cli = docker_stats(names)
        stats_end = time.time()
        time.sleep(max(0.0, 4.0 - (time.time() - stats_start)))
    return {
        "cgroup": read_resources(out / "cgroup.csv"),
        "api": read_resources(out / "api.csv"),
        "cli": cli,
        "cli_window": (stats_start - 1.5, stats_end + 0.5),
    }


@pytest.mark.parametrize("path", ["cgroup", "api"])
def test_cpu_limit_of_half_a_core(workload: dict, measured: dict, path: str) -> None:
    rows = rows_for(measured[path], workload["burn"].name)
    assert rows["cpu_cores"].isna().iloc[0]  # first sample has no interval behind it
    cpu = rows["cpu_cores"].dropna()
    assert len(cpu) >= MIN_ROWS[path] - 1
    assert cpu.mean() == pytest.approx(0.5, rel=0.10)
    # How much CFS throttles depends on the machine's load; the figure must be there.
    throttled = rows["cpu_throttled_s"]
    assert throttled.iloc[1:].notna().all() and (throttled.dropna() >= 0).all()


@pytest.mark.parametrize("path", ["cgroup", "api"])
def test_memory_of_n_mb(workload: dict, measured: dict, path: str) -> None:
    rows = rows_for(measured[path], workload["alloc"].name)
    assert len(rows) >= MIN_ROWS[path]
    assert rows["mem_mb"].mean() == pytest.approx(ALLOC_MB, rel=0.10)
    assert rows["mem_limit_mb"].iloc[-1] == pytest.approx(256.0)
    assert rows["cpu_cores"].dropna().mean() < 0.05  # sleeping
    assert rows["cpu_throttled_s"].dropna().max() == 0.0  # no CPU limit, never throttled


@pytest.mark.parametrize("path", ["cgroup", "api"])
def test_agrees_with_docker_stats(workload: dict, measured: dict, path: str) -> None:
    start, end = measured["cli_window"]
    frame = measured[path]
    window = frame[(frame["ts_unix_s"] >= start) & (frame["ts_unix_s"] <= end)]
    burn = rows_for(window, workload["burn"].name)
    alloc = rows_for(window, workload["alloc"].name)
    cli = measured["cli"]
    assert burn["cpu_cores"].mean() == pytest.approx(
        cli[workload["burn"].name]["cpu_cores"], rel=0.10
    )
    assert alloc["mem_mb"].mean() == pytest.approx(cli[workload["alloc"].name]["mem_mb"], rel=0.10)
    assert alloc["mem_limit_mb"].iloc[-1] == pytest.approx(
        cli[workload["alloc"].name]["limit_mb"], rel=0.01
    )
    # Without a limit both report the host's memory.
    assert burn["mem_limit_mb"].iloc[-1] == pytest.approx(
        cli[workload["burn"].name]["limit_mb"], rel=0.01
    )


def test_restart_leaves_a_gap_and_collection_goes_on(containers: Any, tmp_path: Path) -> None:
    flapping = containers.run("flap", BURN, nano_cpus=200_000_000)
    steady = containers.run("steady", "sleep 600")
    pattern = containers.prefix + "[fs][lt]*"  # flap and steady only
    via_cgroup, via_api = sources(pattern)
    with (
        Sampler([via_cgroup], tmp_path / "cgroup.csv", interval_s=0.25),
        Sampler([via_api], tmp_path / "api.csv", interval_s=0.25),
    ):
        time.sleep(1.5)
        flapping.kill()
        stopped_at = time.time()
        time.sleep(2.0)
        started_at = time.time()  # before start(): it returns once the container runs
        flapping.start()
        time.sleep(4.0)
    for name in ("cgroup", "api"):
        frame = read_resources(tmp_path / f"{name}.csv")
        flap = rows_for(frame, flapping.name)
        before = flap[flap["ts_unix_s"] < stopped_at]
        after = flap[flap["ts_unix_s"] > started_at]
        assert len(before) >= (4 if name == "cgroup" else 1), name
        assert not ((flap["ts_unix_s"] > stopped_at + 0.3) & (flap["ts_unix_s"] < started_at)).any()
        assert len(after) >= (8 if name == "cgroup" else 3), name  # back within a second or two
        assert after["ts_unix_s"].iloc[0] < started_at + 2.5, name
        assert after["cpu_cores"].isna().iloc[0], name  # counters restarted from zero
        assert after["cpu_cores"].dropna().mean() == pytest.approx(0.2, rel=0.25), name
        # The other container was sampled throughout.
        steady_ts = rows_for(frame, steady.name)["ts_unix_s"]
        assert steady_ts.diff().max() < (0.8 if name == "cgroup" else 2.5), name


def test_collect_command_against_the_engine(workload: dict, tmp_path: Path) -> None:
    out = tmp_path / "host-a.csv"
    code = capacity_main(
        [
            "collect",
            "--containers",
            workload["pattern"],
            "--host",
            "--interval",
            "250ms",
            "--duration",
            "1500ms",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    frame = read_resources(out)
    assert {workload["burn"].name, workload["alloc"].name, "host"} <= set(frame["target"])
    assert set(frame["source"]) == {"container", "host"}
    ids = frame.loc[frame["source"] == "container", "container_id"]
    assert (ids.str.len() == 12).all()
