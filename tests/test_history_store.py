"""The results store keeps whole runs: a writer killed mid-insert leaves no trace of the run it
was writing and no damage, several processes writing at once all get in, and the same
store works on a real PostgreSQL (from the pgserver package)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT

from capacity.errors import ConfigError
from capacity.history.store import HistoryError, HistoryStore, open_store, redact

OPS_PER_RUN = 200

# One process writing runs. With PAUSE_INSIDE set, it stops inside the transaction of run
# number PAUSE_INSIDE (after the operations, before the rest), says so in a marker file and
# sleeps there: the test kills it at that moment.
WRITER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from capacity.history.store import open_store

    location, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    pause_inside = int(os.environ.get("PAUSE_INSIDE", "-1"))
    start_file = os.environ.get("START_FILE")
    while start_file and not Path(start_file).exists():
        time.sleep(0.01)

    def summary(i):
        ops = {f"graphql Op{k:03d}": {"count": 100, "p95_ms": float(i + k)}
               for k in range(int(os.environ["OPS"]))}
        return {"schema": 1, "run_id": f"{prefix}-{i:03d}", "scenario": "durability",
                "started_at": f"2026-12-01T00:00:{i:02d}Z", "status": "complete",
                "verdict": "pass", "operations": ops,
                "resources": {"gateway": {"source": "process", "cpu_cores_mean": 0.1}},
                "slos": [{"kind": "operation", "target": "graphql Op000", "metric": "p95_ms",
                          "limit": 100.0, "value": 1.0, "passed": True}]}

    with open_store(location) as store:
        for i in range(count):
            if i == pause_inside:
                # A tiny page cache makes SQLite spill the open transaction's pages into the
                # WAL, so the kill leaves uncommitted frames on disk, not just in memory.
                store._conn.execute("PRAGMA cache_size=1")
                wal = Path(location + "-wal")
                before = wal.stat().st_size
                original = store._insert_many
                def paused(statement, rows, original=original, before=before, wal=wal):
                    original(statement, rows)
                    if statement.startswith("INSERT INTO operations"):
                        sizes = {"before": before, "inside": wal.stat().st_size}
                        Path(os.environ["MARKER"]).write_text(json.dumps(sizes))
                        time.sleep(600)
                store._insert_many = paused
            store.record(summary(i), {"host_cores": 2.0, "writer": prefix})
            print(f"{prefix}-{i:03d}", flush=True)
    """
)


def writer(location: str, prefix: str, count: int, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, location, prefix, str(count)],
        cwd=REPO_ROOT,
        env={**os.environ, "OPS": str(OPS_PER_RUN), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_whole_runs(store: HistoryStore, expected_ids: set[str]) -> None:
    runs = store.runs("durability")
    assert {r.run_id for r in runs} == expected_ids
    assert all(len(r.operations) == OPS_PER_RUN for r in runs)
    assert all(r.resources["gateway"]["cpu_cores_mean"] == 0.1 for r in runs)
    assert store.integrity_ok()


def test_a_writer_killed_mid_insert_leaves_whole_runs_only(tmp_path: Path) -> None:
    location = str(tmp_path / "h.sqlite")
    marker = tmp_path / "inside"
    proc = writer(location, "killed", 10, PAUSE_INSIDE="3", MARKER=str(marker))
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the writer never reached run 3"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # The killed transaction had written part of run 3 into the WAL, never committed.
    sizes = json.loads(marker.read_text())
    assert sizes["inside"] > sizes["before"], sizes
    with open_store(location) as store:
        assert_whole_runs(store, {f"killed-{i:03d}" for i in range(3)})
        assert store.summary("killed-003") is None
    again = writer(location, "after", 2)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    with open_store(location) as store:
        assert_whole_runs(store, {f"killed-{i:03d}" for i in range(3)} | {"after-000", "after-001"})


@pytest.mark.parametrize("writers", [6])
def test_concurrent_writers_all_get_in(tmp_path: Path, writers: int) -> None:
    location = str(tmp_path / "h.sqlite")
    start = tmp_path / "go"
    per_writer = 12
    procs = [writer(location, f"w{n}", per_writer, START_FILE=str(start)) for n in range(writers)]
    try:
        time.sleep(1.0)  # every interpreter up and waiting
        start.write_text("go")
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    with open_store(location) as store:
        assert_whole_runs(
            store, {f"w{n}-{i:03d}" for n in range(writers) for i in range(per_writer)}
        )


def test_rerecording_a_run_replaces_it(tmp_path: Path) -> None:
    base: dict[str, Any] = {"schema": 1, "run_id": "r1", "scenario": "s", "verdict": "pass"}
    with open_store(tmp_path / "h.sqlite") as store:
        store.record({**base, "operations": {"a": {"p95_ms": 1.0}, "b": {"p95_ms": 2.0}}}, {})
        store.record({**base, "operations": {"a": {"p95_ms": 3.0}}}, {"x": 1})
        (run,) = store.runs()
        assert run.operations == {"a": {**dict.fromkeys(run.operations["a"]), "p95_ms": 3.0}}
        assert run.fingerprint == {"x": 1} and store.count() == 1


def test_a_file_that_is_not_a_database_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "h.sqlite"
    bad.write_text("not a database " * 100)
    with pytest.raises(HistoryError, match=r"h\.sqlite: not a usable SQLite database"):
        open_store(bad)
    assert issubclass(HistoryError, ConfigError)  # exit 2


def test_passwords_never_appear_in_the_store_name() -> None:
    url = "postgresql://perf:s3cret@db.example:5432/capacity?sslmode=require"
    assert redact(url) == "postgresql://***@db.example:5432/capacity?sslmode=require"
    assert redact("/tmp/h.sqlite") == "/tmp/h.sqlite"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL 16 from the pgserver package, on a Unix socket, stopped after."""
    pgserver = pytest.importorskip("pgserver")
    server = pgserver.get_server(str(tmp_path_factory.mktemp("pg")), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def test_postgresql_store_round_trip_and_concurrent_writers(postgres: str) -> None:
    procs = [writer(postgres, f"pg{n}", 5) for n in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    with open_store(postgres) as store:
        assert store.postgres
        assert_whole_runs(store, {f"pg{n}-{i:03d}" for n in range(3) for i in range(5)})
        summary = store.summary("pg1-004")
        assert summary is not None and summary["operations"]["graphql Op002"]["p95_ms"] == 6.0
        assert json.loads(json.dumps(store.runs("durability")[0].fingerprint))["host_cores"] == 2.0


def test_unreachable_postgresql_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://perf:s3cret@/capacity?host={tmp_path}&connect_timeout=2"
    with pytest.raises(HistoryError) as caught:
        open_store(url)
    message = str(caught.value)
    assert "s3cret" not in message and "\n" not in message
    assert message.startswith("history store postgresql://***@/capacity")
