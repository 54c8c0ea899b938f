"""The results store: every completed run's summary and environment fingerprint, in SQL.

SQLite by default (`.capacity/history.sqlite` under the working directory), PostgreSQL when
the location is a `postgresql://` URL (psycopg 3, the `postgres` extra). One run is written in
one transaction (its row, then its operations, resources, SLO rows and spans), so a writer
killed mid-insert leaves either the whole run or nothing: SQLite runs in WAL mode with
`synchronous=FULL`, and a later opener rolls the torn transaction back. Writers take SQLite's
write lock at `BEGIN IMMEDIATE` and wait for it (busy timeout) instead of failing, so several
`capacity run` processes can record at once. Re-recording a run id replaces that run.

The location may carry a password (a PostgreSQL URL): every message names it through
`redact`, never verbatim.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from capacity.addresses import redact
from capacity.errors import ConfigError

STORE_SCHEMA = 1
HISTORY_ENV = "CAPACITY_HISTORY"
DEFAULT_LOCATION = Path(".capacity") / "history.sqlite"
BUSY_TIMEOUT_S = 60.0
POSTGRES_SCHEMES = ("postgresql", "postgres")
# An arbitrary constant: PostgreSQL's advisory lock key that serialises schema creation.
_PG_SCHEMA_LOCK = 7_318_004_018

OPERATION_COLUMNS = (
    "count",
    "failures",
    "error_rate",
    "rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "p95_intended_ms",
    "p99_intended_ms",
)
RESOURCE_COLUMNS = ("cpu_cores_mean", "cpu_cores_max", "mem_mb_mean", "mem_mb_max", "samples")

_DDL = (
    """CREATE TABLE IF NOT EXISTS history_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        scenario TEXT NOT NULL,
        started_at TEXT,
        recorded_at TEXT NOT NULL,
        status TEXT,
        verdict TEXT,
        run_dir TEXT,
        fingerprint_sha256 TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        summary TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS runs_by_scenario ON runs (scenario, started_at)",
    """CREATE TABLE IF NOT EXISTS operations (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        count BIGINT,
        failures BIGINT,
        error_rate DOUBLE PRECISION,
        rps DOUBLE PRECISION,
        p50_ms DOUBLE PRECISION,
        p95_ms DOUBLE PRECISION,
        p99_ms DOUBLE PRECISION,
        p999_ms DOUBLE PRECISION,
        max_ms DOUBLE PRECISION,
        p95_intended_ms DOUBLE PRECISION,
        p99_intended_ms DOUBLE PRECISION,
        PRIMARY KEY (run_id, name))""",
    """CREATE TABLE IF NOT EXISTS resources (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        target TEXT NOT NULL,
        source TEXT,
        cpu_cores_mean DOUBLE PRECISION,
        cpu_cores_max DOUBLE PRECISION,
        mem_mb_mean DOUBLE PRECISION,
        mem_mb_max DOUBLE PRECISION,
        samples BIGINT,
        PRIMARY KEY (run_id, target))""",
    """CREATE TABLE IF NOT EXISTS slos (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        kind TEXT,
        target TEXT,
        metric TEXT,
        limit_value DOUBLE PRECISION,
        value DOUBLE PRECISION,
        passed INTEGER,
        basis TEXT,
        PRIMARY KEY (run_id, seq))""",
    """CREATE TABLE IF NOT EXISTS spans (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (run_id, name))""",
)
_CHILD_TABLES = ("operations", "resources", "slos", "spans")


class HistoryError(ConfigError):
    """The store cannot be opened, read or written (exit 2); the message names the store."""


@dataclass(frozen=True)
class StoredRun:
    """One recorded run as the series and the gate read it."""

    run_id: str
    scenario: str
    started_at: str
    recorded_at: str
    status: str
    verdict: str
    run_dir: str
    fingerprint: Mapping[str, Any]
    fingerprint_sha256: str
    operations: Mapping[str, Mapping[str, float | None]]
    resources: Mapping[str, Mapping[str, Any]]


def resolve_location(value: str | os.PathLike[str] | None) -> str:
    """The store location: the argument, else $CAPACITY_HISTORY, else the default file."""
    if value is not None and str(value):
        return str(value)
    env = os.environ.get(HISTORY_ENV)
    return env if env else str(DEFAULT_LOCATION)


def is_postgres(location: str) -> bool:
    return urlsplit(location).scheme in POSTGRES_SCHEMES


def _finite(value: Any) -> float | None:
    """A finite number as float; anything else (None, NaN, text) as None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _whole(value: Any) -> int | None:
    number = _finite(value)
    return int(number) if number is not None else None


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fingerprint_sha256(fingerprint: Mapping[str, Any]) -> str:
    """A stable hash of a fingerprint (sorted keys, no whitespace)."""
    import hashlib

    text = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class HistoryStore:
    """An open results store; use as a context manager or call `close()`."""

    def __init__(self, location: str | os.PathLike[str] | None = None) -> None:
        self.location = resolve_location(location)
        self.postgres = is_postgres(self.location)
        self.name = redact(self.location)
        self._conn: Any = self._connect_postgres() if self.postgres else self._connect_sqlite()
        self._ensure_schema()

    # --- connections ---------------------------------------------------------------------

    def _connect_sqlite(self) -> sqlite3.Connection:
        path = Path(self.location.removeprefix("sqlite:///").removeprefix("sqlite:"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"history store {self.name}: cannot open ({exc})") from None
        try:
            self._retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise HistoryError(
                f"history store {self.name}: not a usable SQLite database ({exc})"
            ) from None
        return conn

    def _connect_postgres(self) -> Any:
        try:
            import psycopg
        except ImportError:
            raise HistoryError(
                f"history store {self.name}: PostgreSQL needs psycopg 3 "
                "(pip install 'vextrus-capacity[postgres]')"
            ) from None
        try:
            return psycopg.connect(self.location, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HistoryError(
                f"history store {self.name}: cannot connect ({redact(detail)})"
            ) from None

    def _retry_locked(self, action: Any) -> Any:
        """Run `action`, retrying while SQLite says the database is locked (busy timeout)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- SQL helpers ---------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    def _execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self._sql(statement), tuple(params))

    def _errors(self) -> tuple[type[BaseException], ...]:
        if self.postgres:
            import psycopg

            return (psycopg.Error,)
        return (sqlite3.Error,)

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction: SQLite's write lock taken at the start, waited for."""
        try:
            if self.postgres:
                self._execute("BEGIN")
            else:
                self._retry_locked(lambda: self._conn.execute("BEGIN IMMEDIATE"))
        except self._errors() as exc:
            raise HistoryError(f"history store {self.name}: cannot write ({exc})") from None
        try:
            yield
        except BaseException:
            try:
                self._execute("ROLLBACK")
            except self._errors():
                pass
            raise
        try:
            self._execute("COMMIT")
        except self._errors() as exc:
            raise HistoryError(f"history store {self.name}: cannot commit ({exc})") from None

    def _ensure_schema(self) -> None:
        try:
            with self._write():
                if self.postgres:
                    self._execute("SELECT pg_advisory_xact_lock(?)", (_PG_SCHEMA_LOCK,))
                for statement in _DDL:
                    self._execute(statement)
                row = self._execute(
                    "SELECT value FROM history_meta WHERE key = ?", ("schema",)
                ).fetchone()
                if row is None:
                    self._execute(
                        "INSERT INTO history_meta (key, value) VALUES (?, ?)",
                        ("schema", str(STORE_SCHEMA)),
                    )
                elif row[0] != str(STORE_SCHEMA):
                    raise HistoryError(
                        f"history store {self.name}: schema {row[0]} is not supported "
                        f"(this capacity reads schema {STORE_SCHEMA})"
                    )
        except HistoryError:
            raise
        except self._errors() as exc:
            raise HistoryError(f"history store {self.name}: cannot set up ({exc})") from None

    # --- writing -------------------------------------------------------------------------

    def record(
        self,
        summary: Mapping[str, Any],
        fingerprint: Mapping[str, Any],
        run_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """Store one run (replacing an earlier record of the same run id), atomically."""
        run_id, scenario = summary.get("run_id"), summary.get("scenario")
        if not isinstance(run_id, str) or not run_id:
            raise HistoryError(f"history store {self.name}: the summary has no run_id")
        if not isinstance(scenario, str) or not scenario:
            raise HistoryError(f"history store {self.name}: run {run_id} has no scenario")
        fp_json = json.dumps(fingerprint, sort_keys=True, default=str)
        summary_json = json.dumps(summary, default=str)
        try:
            with self._write():
                self._execute(
                    """INSERT INTO runs (run_id, scenario, started_at, recorded_at, status,
                           verdict, run_dir, fingerprint_sha256, fingerprint, summary)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (run_id) DO UPDATE SET
                           scenario = excluded.scenario, started_at = excluded.started_at,
                           recorded_at = excluded.recorded_at, status = excluded.status,
                           verdict = excluded.verdict, run_dir = excluded.run_dir,
                           fingerprint_sha256 = excluded.fingerprint_sha256,
                           fingerprint = excluded.fingerprint, summary = excluded.summary""",
                    (
                        run_id,
                        scenario,
                        summary.get("started_at"),
                        _now_iso(),
                        summary.get("status"),
                        summary.get("verdict"),
                        str(run_dir) if run_dir is not None else None,
                        fingerprint_sha256(fingerprint),
                        fp_json,
                        summary_json,
                    ),
                )
                for table in _CHILD_TABLES:
                    self._execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
                self._insert_children(run_id, summary)
        except HistoryError:
            raise
        except self._errors() as exc:
            raise HistoryError(
                f"history store {self.name}: cannot record run {run_id} ({exc})"
            ) from None

    def _insert_many(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.postgres:
            with self._conn.cursor() as cur:
                cur.executemany(self._sql(statement), rows)
        else:
            self._conn.executemany(statement, rows)

    def _insert_children(self, run_id: str, summary: Mapping[str, Any]) -> None:
        ops = summary.get("operations") or {}
        self._insert_many(
            f"INSERT INTO operations (run_id, name, {', '.join(OPERATION_COLUMNS)}) "
            f"VALUES ({', '.join('?' * (len(OPERATION_COLUMNS) + 2))})",
            [
                (
                    run_id,
                    str(name),
                    *(
                        _whole(op.get(c)) if c in ("count", "failures") else _finite(op.get(c))
                        for c in OPERATION_COLUMNS
                    ),
                )
                for name, op in ops.items()
                if isinstance(op, Mapping)
            ],
        )
        res = summary.get("resources") or {}
        self._insert_many(
            f"INSERT INTO resources (run_id, target, source, {', '.join(RESOURCE_COLUMNS)}) "
            f"VALUES ({', '.join('?' * (len(RESOURCE_COLUMNS) + 3))})",
            [
                (
                    run_id,
                    str(target),
                    str(row.get("source") or ""),
                    *(
                        _whole(row.get(c)) if c == "samples" else _finite(row.get(c))
                        for c in RESOURCE_COLUMNS
                    ),
                )
                for target, row in res.items()
                if isinstance(row, Mapping)
            ],
        )
        slo_rows = []
        for seq, slo in enumerate(summary.get("slos") or []):
            if not isinstance(slo, Mapping):
                continue
            passed = slo.get("passed")
            slo_rows.append(
                (
                    run_id,
                    seq,
                    slo.get("kind"),
                    slo.get("target"),
                    slo.get("metric"),
                    _finite(slo.get("limit")),
                    _finite(slo.get("value")),
                    None if passed is None else int(bool(passed)),
                    slo.get("basis"),
                )
            )
        self._insert_many(
            "INSERT INTO slos (run_id, seq, kind, target, metric, limit_value, value, passed, "
            "basis) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            slo_rows,
        )
        spans = summary.get("spans")
        items: list[tuple[str, Any]] = []
        if isinstance(spans, Mapping):
            items = [(str(k), v) for k, v in spans.items()]
        elif isinstance(spans, list):
            items = [(str(i), v) for i, v in enumerate(spans)]
        self._insert_many(
            "INSERT INTO spans (run_id, name, data) VALUES (?, ?, ?)",
            [(run_id, name, json.dumps(data, default=str)) for name, data in items],
        )

    # --- reading -------------------------------------------------------------------------

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._execute(statement, params).fetchall())
        except self._errors() as exc:
            raise HistoryError(f"history store {self.name}: cannot read ({exc})") from None

    def count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM runs")[0][0])

    def scenarios(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT scenario FROM runs ORDER BY scenario")]

    def runs(self, scenario: str | None = None) -> list[StoredRun]:
        """Recorded runs (of one scenario, or all), oldest first by start time then run id."""
        where, params = ("WHERE scenario = ?", (scenario,)) if scenario else ("", ())
        rows = self._query(
            "SELECT run_id, scenario, started_at, recorded_at, status, verdict, run_dir, "
            f"fingerprint, fingerprint_sha256 FROM runs {where}",
            params,
        )
        ids = {r[0] for r in rows}
        ops: dict[str, dict[str, dict[str, float | None]]] = {i: {} for i in ids}
        join = "JOIN runs r ON r.run_id = t.run_id " + ("WHERE r.scenario = ?" if scenario else "")
        op_cols = ", ".join(f"t.{c}" for c in OPERATION_COLUMNS)
        for row in self._query(
            f"SELECT t.run_id, t.name, {op_cols} FROM operations t {join}", params
        ):
            ops[row[0]][row[1]] = {
                c: (float(v) if v is not None else None)
                for c, v in zip(OPERATION_COLUMNS, row[2:], strict=True)
            }
        res: dict[str, dict[str, dict[str, Any]]] = {i: {} for i in ids}
        res_cols = ", ".join(f"t.{c}" for c in RESOURCE_COLUMNS)
        for row in self._query(
            f"SELECT t.run_id, t.target, t.source, {res_cols} FROM resources t {join}", params
        ):
            entry: dict[str, Any] = {"source": row[2]}
            entry.update(
                {
                    c: (float(v) if v is not None else None)
                    for c, v in zip(RESOURCE_COLUMNS, row[3:], strict=True)
                }
            )
            res[row[0]][row[1]] = entry
        out = [
            StoredRun(
                run_id=r[0],
                scenario=r[1],
                started_at=r[2] or "",
                recorded_at=r[3] or "",
                status=r[4] or "",
                verdict=r[5] or "",
                run_dir=r[6] or "",
                fingerprint=json.loads(r[7]),
                fingerprint_sha256=r[8],
                operations=ops[r[0]],
                resources=res[r[0]],
            )
            for r in rows
        ]
        return sorted(out, key=lambda run: (run.started_at, run.run_id))

    def summary(self, run_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT summary FROM runs WHERE run_id = ?", (run_id,))
        return json.loads(rows[0][0]) if rows else None

    def integrity_ok(self) -> bool:
        """SQLite's own integrity check (PostgreSQL: always True, it has no such check)."""
        if self.postgres:
            return True
        return self._query("PRAGMA integrity_check")[0][0] == "ok"


def open_store(location: str | os.PathLike[str] | None = None) -> HistoryStore:
    """Open (creating if needed) the store at `location` (see `resolve_location`)."""
    return HistoryStore(location)
