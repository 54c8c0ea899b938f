"""The sampler's schedule, incremental writes and fault handling; resources.csv reading/merging."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from capacity.collect import (
    ALL_COLUMNS,
    COLUMNS,
    ResourceSample,
    Sampler,
    merge_resource_files,
    read_resources,
)
from capacity.collect.samples import CounterDeltas
from capacity.errors import ConfigError


class CountingSource:
    """Returns one row per call, numbered, so tests can see every tick."""

    name = "fake"

    def __init__(self, target: str = "svc", delay_s: float = 0.0) -> None:
        self.target = target
        self.delay_s = delay_s
        self.calls = 0

    def describe(self) -> str:
        return "fake"

    def sample(self) -> list[ResourceSample]:
        self.calls += 1
        time.sleep(self.delay_s)
        return [
            ResourceSample(time.time(), "process", self.target, 0.5, float(self.calls), None, None)
        ]


class BrokenSource:
    name = "broken"

    def describe(self) -> str:
        return "broken"

    def sample(self) -> list[ResourceSample]:
        raise RuntimeError("boom")


def test_fixed_schedule_without_drift(tmp_path: Path) -> None:
    """A tick that takes 40% of the interval must not push later ticks back."""
    out = tmp_path / "resources.csv"
    source = CountingSource(delay_s=0.04)
    sampler = Sampler([source], out, interval_s=0.1)
    sampler.start()
    time.sleep(1.05)
    written = sampler.stop()
    frame = read_resources(out)
    assert written == len(frame) == source.calls
    # 11 ticks fit in 1.05 s at t = 0, 0.1, ..., 1.0; drifting by 40 ms each would give 8.
    assert 10 <= len(frame) <= 12
    offsets = frame["ts_unix_s"] - frame["ts_unix_s"].iloc[0]
    expected = [0.1 * i for i in range(len(frame))]
    assert max(abs(o - e) for o, e in zip(offsets, expected, strict=True)) < 0.06


def test_rows_are_on_disk_while_running(tmp_path: Path) -> None:
    out = tmp_path / "resources.csv"
    with Sampler([CountingSource()], out, interval_s=0.05) as sampler:
        time.sleep(0.3)
        lines = out.read_text().splitlines()
        assert lines[0] == ",".join(ALL_COLUMNS)
        assert len(lines) >= 3  # header plus rows, readable before stop()
    assert sampler.samples_written >= len(lines) - 1


def test_broken_source_warns_once_and_others_go_on(tmp_path: Path) -> None:
    warnings: list[str] = []
    out = tmp_path / "r.csv"
    sampler = Sampler([BrokenSource(), CountingSource()], out, 0.05, on_warning=warnings.append)
    with sampler:
        time.sleep(0.3)
    assert warnings == ["broken source failed: RuntimeError: boom"]
    assert sampler.ticks >= 3 and sampler.samples_written == sampler.ticks


def test_sources_are_closed_on_stop(tmp_path: Path) -> None:
    class Closing(CountingSource):
        closed = False

        def close(self) -> None:
            self.closed = True

    source = Closing()
    with Sampler([source], tmp_path / "r.csv", 1.0):
        pass
    assert source.closed


def test_read_resources_tolerates_a_killed_writer(tmp_path: Path) -> None:
    path = tmp_path / "resources.csv"
    path.write_text(
        ",".join(COLUMNS) + "\n"
        "100.0,container,vextrus-gateway-1,,12.5,512,\n"
        "101.0,container,vextrus-gateway-1,0.25,12.75,512,0.01\n"
        "101.0,process,NA,0.1,3,,\n"
        "102.0,container,vextrus-gate"  # cut short by a kill
    )
    frame = read_resources(path)
    assert len(frame) == 3
    assert frame["cpu_cores"].isna().tolist() == [True, False, False]
    assert frame.loc[1, "cpu_cores"] == pytest.approx(0.25)
    assert frame.loc[2, "target"] == "NA"  # a name, not a missing value
    assert frame["mem_limit_mb"].dtype == "float64"

    (tmp_path / "empty.csv").write_text("")
    assert read_resources(tmp_path / "empty.csv").empty
    (tmp_path / "header.csv").write_text(",".join(ALL_COLUMNS) + "\n")
    assert list(read_resources(tmp_path / "header.csv").columns) == list(ALL_COLUMNS)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="lacks column"):
        read_resources(tmp_path / "bad.csv")


def test_merge_hosts(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    with Sampler([CountingSource("gateway")], a, 0.05, host="node-a"):
        time.sleep(0.12)
    with Sampler([CountingSource("db")], b, 0.05, host="node-b"):
        time.sleep(0.12)
    # A file written with the contract's columns only (no host column) gets its file stem.
    legacy = tmp_path / "node-c.csv"
    legacy.write_text(",".join(COLUMNS) + "\n50.0,host,host,1.0,100,200,\n")
    c_host = tmp_path / "node-d.csv"
    c_host.write_text(",".join(COLUMNS) + "\n51.0,host,host,0.5,100,200,\n")
    out = tmp_path / "run" / "resources.csv"
    rows = merge_resource_files([a, b, legacy, c_host], out)
    merged = read_resources(out)
    assert rows == len(merged) == len(read_resources(a)) + len(read_resources(b)) + 2
    assert list(merged.columns[: len(ALL_COLUMNS)]) == list(ALL_COLUMNS)
    assert merged["ts_unix_s"].is_monotonic_increasing
    assert set(merged["host"]) == {"node-a", "node-b", "node-c", "node-d"}
    # Two machines' host totals must stay apart for analysis that groups by target.
    assert set(merged.loc[merged["source"] == "host", "target"]) == {"host@node-c", "host@node-d"}
    assert set(merged.loc[merged["host"] == "node-a", "target"]) == {"gateway"}

    relabelled = tmp_path / "relabelled.csv"
    merge_resource_files([a, b], relabelled, hosts=["x", "y"])
    assert set(read_resources(relabelled)["host"]) == {"x", "y"}
    with pytest.raises(ConfigError):
        merge_resource_files([a, b], relabelled, hosts=["x"])


def test_counter_deltas() -> None:
    deltas = CounterDeltas()
    assert deltas.rate(("c", "cpu"), 10.0, 5.0) is None
    assert deltas.rate(("c", "cpu"), 12.0, 6.0) == pytest.approx(0.5)
    assert deltas.rate(("c", "cpu"), 13.0, 1.0) is None  # went backwards: restarted
    assert deltas.increase(("c", "cpu"), 14.0, 1.5) == pytest.approx(0.5)
    deltas.forget("c")
    assert deltas.rate(("c", "cpu"), 15.0, 2.0) is None
