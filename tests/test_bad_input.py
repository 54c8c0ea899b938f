"""Bad input to every command: one line naming the file, key or service, exit 2, no traceback,
and no run folder left behind. (Issue 11's corpus, table-driven.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SCENARIOS

from capacity.cli import main

RULES = """
[targets]
embedded_stack = false
[users.rules]
[[users.rules.rule_sets]]
file = "rules/vat-cases.json"
"""


def scenario_dir(tmp: Path, body: str, name: str = "s.toml") -> Path:
    for sub in ("graphql", "rules", "data"):
        if not (tmp / sub).exists():
            (tmp / sub).symlink_to(SCENARIOS / sub)
    path = tmp / name
    path.write_text(body)
    return path


def latin1(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_bytes(text.encode("latin-1"))
    return path


Setup = Callable[[Path], list[str]]


def run_with(body: str, *extra: str) -> Setup:
    return lambda tmp: ["run", str(scenario_dir(tmp, body)), "--reports", str(tmp / "r"), *extra]


def graphql_doc(content: bytes) -> Setup:
    def setup(tmp: Path) -> list[str]:
        (tmp / "doc.graphql").write_bytes(content)
        body = '[users.graphql]\n[[users.graphql.operations]]\ndocument = "doc.graphql"\n'
        return ["run", str(scenario_dir(tmp, body)), "--reports", str(tmp / "r")]

    return setup


def data_pool(content: bytes) -> Setup:
    def setup(tmp: Path) -> list[str]:
        (tmp / "pool.csv").write_bytes(content)
        body = RULES + '[data.p]\ncsv = "pool.csv"\n'
        return ["run", str(scenario_dir(tmp, body)), "--reports", str(tmp / "r")]

    return setup


def rules_file(content: bytes) -> Setup:
    def setup(tmp: Path) -> list[str]:
        (tmp / "r.json").write_bytes(content)
        body = '[users.rules]\n[[users.rules.rule_sets]]\nfile = "r.json"\n'
        return ["run", str(scenario_dir(tmp, body)), "--reports", str(tmp / "r")]

    return setup


def run_folder(meta: object, slices: bytes | None = None) -> Setup:
    def setup(tmp: Path) -> list[str]:
        run = tmp / "run"
        run.mkdir()
        (run / "run.json").write_text(json.dumps(meta))
        if slices is not None:
            (run / "slices.jsonl").write_bytes(slices)
        return ["report", str(run)]

    return setup


def stack_state(text: str, command: str) -> Setup:
    def setup(tmp: Path) -> list[str]:
        (tmp / "st").mkdir()
        (tmp / "st" / "stack.json").write_text(text)
        return ["stack", command, "--state-dir", str(tmp / "st")]

    return setup


def reports_under_a_file(tmp: Path) -> list[str]:
    (tmp / "file").write_text("x")
    return ["run", str(scenario_dir(tmp, RULES)), "--reports", str(tmp / "file" / "r")]


def init_over_files(tmp: Path) -> list[str]:
    (tmp / "smoke.toml").write_text("x")
    return ["init", str(tmp)]


def baseline_out_under_a_file(tmp: Path) -> list[str]:
    (tmp / "file").write_text("x")
    return ["baseline", "save", str(tmp), "--out", str(tmp / "file" / "b.toml")]


CASES: list[tuple[str, Setup, str]] = [
    ("scenario not UTF-8", lambda t: ["run", str(latin1(t, "s.toml", "# caf\xe9\n"))], "not UTF-8"),
    ("graphql not UTF-8", graphql_doc("query Caf\xe9 { a }".encode("latin-1")), "not UTF-8"),
    ("graphql not graphql", graphql_doc(b"root:x:0:0::/root:/bin/sh\n"), "not a valid GraphQL"),
    ("csv not UTF-8", data_pool("id\ncaf\xe9\n".encode("latin-1")), "not UTF-8"),
    ("rules not UTF-8", rules_file('{"ruleSet": "caf\xe9"}'.encode("latin-1")), "not UTF-8"),
    ("rules not JSON", rules_file(b"{nope"), "invalid JSON at line 1"),
    (
        "temporal no port",
        run_with(RULES.replace("embedded_stack", 'temporal = "127.0.0.1"\nembedded_stack')),
        "expected host:port",
    ),
    (
        "port 99999",
        run_with(RULES.replace("embedded_stack", 'temporal = "h:99999"\nembedded_stack')),
        "outside 1-65535",
    ),
    ("duration nan", run_with(RULES + "[load]\nduration_s = nan\n"), "finite number"),
    ("duration inf", run_with(RULES + "[load]\nduration_s = inf\n"), "finite number"),
    ("warmup nan", run_with(RULES + "[load]\nwarmup_s = nan\n"), "finite number"),
    ("slo nan", run_with(RULES + '[slos.operations."*"]\np95_ms = nan\n'), "finite number"),
    ("users absurd", run_with(RULES + "[load]\nusers = 1000000000\n"), "must be between"),
    (
        "max_users negative",
        run_with(
            RULES + "[load]\nmax_users = -5\n[[load.arrival]]\nrate_per_s = 1\nduration_s = 5\n"
        ),
        "max_users",
    ),
    (
        "weights all 0",
        run_with(RULES.replace("[users.rules]", "[users.rules]\nweight = 0")),
        "weight 0",
    ),
    (
        "backslash url",
        run_with(
            RULES.replace(
                "embedded_stack",
                'rules_engine = "http://a.example\\\\@127.0.0.1:1"\nembedded_stack',
            )
        ),
        "backslash",
    ),
    ("time scale", run_with(RULES, "--time-scale", "nan"), "--time-scale"),
    ("reports under a file", reports_under_a_file, "is a file"),
    ("run.json a list", run_folder([1, 2]), "expected a JSON object"),
    ("run.json bad schema", run_folder({"schema": 99}), "key 'schema'"),
    ("run.json bad status", run_folder({"schema": 2, "status": 5}), "key 'status'"),
    ("run.json bad load", run_folder({"schema": 2, "load": [1]}), "key 'load'"),
    ("stack state corrupt", stack_state("{not json", "status"), "unreadable stack state"),
    ("stack state partial", stack_state('{"schema": 1}', "down"), "incomplete stack state"),
    (
        "stack up bad host",
        lambda t: ["stack", "up", "--host", "10.254.254.254", "--state-dir", str(t / "st")],
        "is not an address of this machine",
    ),
    ("baseline out under a file", baseline_out_under_a_file, ""),
    ("init over files", init_over_files, "already exists"),
    ("unknown locustfile", lambda t: ["locustfile", "nope"], "no shipped locustfile 'nope'"),
]


@pytest.mark.parametrize(("setup", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_no_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: Setup, fragment: str
) -> None:
    args = setup(tmp_path)
    code = main(args)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("capacity: error: "), err
    assert "Traceback" not in err and fragment in lines[0], err
    reports = tmp_path / "r"
    assert not reports.exists() or not any(reports.iterdir())


@pytest.mark.parametrize(
    "slices",
    [b"\x00\xff\xfe binary \x80\n" * 3, b'{"schema": 1, "t_start_s": "x", "ops": []}\n' * 3],
    ids=["binary", "wrong shape"],
)
def test_damaged_slices_are_skipped_counted_and_inconclusive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], slices: bytes
) -> None:
    meta = {"schema": 2, "run_id": "x", "scenario": "s", "status": "complete"}
    args = run_folder(meta, slices)(tmp_path)
    assert main(args) == 3
    assert "Traceback" not in capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert any("could not be read and were skipped" in r for r in summary["reasons"])
