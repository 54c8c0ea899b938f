"""`capacity collect`: arguments, exit codes, a clean stop on SIGTERM, and --merge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from capacity.cli import main
from capacity.collect import read_resources
from capacity.commands.collect import parse_duration_s, parse_pids
from capacity.errors import ConfigError


def test_durations() -> None:
    assert parse_duration_s("1s") == 1.0
    assert parse_duration_s("500ms") == 0.5
    assert parse_duration_s("2m") == 120.0
    assert parse_duration_s("1.5") == 1.5
    for bad in ("", "0s", "fast", "1d", "-1s"):
        with pytest.raises(ConfigError, match="duration"):
            parse_duration_s(bad)


def test_pids() -> None:
    assert parse_pids(["gateway=12", "worker=34"]) == {"gateway": 12, "worker": 34}
    for bad in ("gateway", "=12", "gateway=x"):
        with pytest.raises(ConfigError, match="NAME=PID"):
            parse_pids([bad])


def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "r.csv")
    assert main(["collect", "--out", out]) == 2
    assert "nothing to sample" in capsys.readouterr().err
    assert main(["collect", "--host", "--interval", "soon", "--out", out]) == 2
    assert "--interval" in capsys.readouterr().err
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    assert main(["collect", "--containers", "vextrus-*", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "docker daemon unreachable" in err and "absent.sock" in err


def test_pids_and_host_for_a_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.csv"
    args = ["collect", "--pids", f"me={os.getpid()}", "--host", "--interval", "100ms"]
    code = main([*args, "--duration", "1s", "--progress", "400ms", "--out", str(out)])
    assert code == 0
    frame = read_resources(out)
    assert set(zip(frame["source"], frame["target"], strict=True)) == {
        ("process", "me"),
        ("host", "host"),
    }
    assert 8 <= len(frame) / 2 <= 12  # ten ticks in a second
    err = capsys.readouterr().err
    assert "samples" in err and "done:" in err  # progress lines, then the summary


def test_sigterm_stops_cleanly_with_everything_flushed(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "capacity",
            "collect",
            "--host",
            "--interval",
            "200ms",
            "--out",
            str(out),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline
            and len(out.read_text().splitlines() if out.exists() else []) < 4
        ):
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    rows = read_resources(out)
    assert len(rows) >= 3
    assert out.read_text().endswith("\n")  # no half-written line
    assert f"done: {len(rows)} rows" in err


def test_merge_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = "ts_unix_s,source,target,cpu_cores,mem_mb,mem_limit_mb,cpu_throttled_s\n"
    (tmp_path / "a.csv").write_text(header + "2.0,container,gw,0.5,10,,\n")
    (tmp_path / "b.csv").write_text(header + "1.0,container,db,0.25,20,100,0\n")
    out = tmp_path / "run" / "resources.csv"
    code = main(
        [
            "collect",
            "--merge",
            str(tmp_path / "a.csv"),
            str(tmp_path / "b.csv"),
            "--hosts",
            "node-a",
            "node-b",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    merged = read_resources(out)
    assert merged["target"].tolist() == ["db", "gw"]
    assert merged["host"].tolist() == ["node-b", "node-a"]
    assert "2 rows" in capsys.readouterr().err
