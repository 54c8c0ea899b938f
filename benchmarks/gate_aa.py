"""Benchmark: the regression gate's error rates measured on real runs (issue 12).

Blocks of real runs of a short scenario on the embedded stack (free ports, restarted between
runs as `capacity run --repeat` does by default). Each block is the recommended CI recipe,
`capacity run A --repeat 6 --interleave B` (A B A B ..., 12 runs); a block can run with a
bounded CPU burner beside it (a busy machine), and a detection block slows one service by
20% on side B (`[stack.tuning.rules-engine] slowdown = 1.2`).

Per block, the gate is run two ways on the same 12 runs:
- interleaved (the recipe): `capacity baseline save` of the A runs, `capacity check` of the
  B runs, paired;
- sequential (what a job comparing yesterday's runs with today's does): the first 6 runs by
  start time against the last 6, unpaired.

Printed: per block and recipe, the gate's exit code and every metric's verdict; then the
false-alarm rate per gate run (exit 1 on identical code) and per metric, and the detection
rate of the slowed service's operations, with their sample sizes.

    python benchmarks/gate_aa.py [--blocks 3] [--burner-blocks 1] [--detect-blocks 1]
                                 [--time-scale 0.5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))
from conftest import write_scenario  # noqa: E402

from capacity.stack.supervisor import pick_free_ports  # noqa: E402

SCENARIO = "rules.toml"
SLOWED = "rules-engine"


def burn(duty: float, until_s: float) -> None:
    """Busy `duty` of every 100 ms on one core until `until_s` (bounded: it stops itself)."""
    while time.time() < until_s:
        start = time.perf_counter()
        while time.perf_counter() - start < 0.1 * duty:
            pass
        time.sleep(0.1 * (1 - duty))


def capacity(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capacity", *args], cwd=cwd, capture_output=True, text=True
    )


def block(
    root: Path, name: str, time_scale: float, slowdown_b: float, burner: bool
) -> dict[str, Any]:
    """One block: 12 interleaved runs, then the gate both ways; returns what it decided."""
    work = root / name
    ports: Any = SimpleNamespace(ports=pick_free_ports())
    a = write_scenario(
        work / "s", SCENARIO, ports, replace={"wait_s = [0.3, 0.9]": "wait_s = [0.05, 0.15]"}
    )
    # A fixed 20 ms service time on the slowed service, so a 1.2 slowdown is a real +20%.
    tuned = a.read_text() + (
        f'\n[stack.tuning.{SLOWED}]\nlatency_dist = "fixed"\nlatency_ms = 20\nslowdown = {{}}\n'
    )
    a.write_text(tuned.format(1.0))
    b = a.with_name("b.toml")
    b.write_text(tuned.format(slowdown_b))
    burners: list[multiprocessing.Process] = []
    if burner:
        until = time.time() + 3600
        burners = [multiprocessing.Process(target=burn, args=(0.6, until), daemon=True)]
        for p in burners:
            p.start()
    t0 = time.monotonic()
    try:
        done = capacity(
            "run", str(a), "--repeat", "6", "--interleave", str(b), "--time-scale",
            str(time_scale), "--state-dir", str(work / "stack"), "--reports", str(work / "r"),
            "--no-history", cwd=work,
        )  # fmt: skip
    finally:
        for p in burners:
            p.terminate()
    runs = sorted(
        (work / "r").iterdir(),
        key=lambda d: json.loads((d / "run.json").read_text())["started_at"] + d.name,
    )
    sides: dict[str, list[Path]] = {"A": [], "B": []}
    for run in runs:
        sides[json.loads((run / "run.json").read_text())["repeat"]["side"]].append(run)
    out: dict[str, Any] = {
        "name": name,
        "runs": len(runs),
        "minutes": (time.monotonic() - t0) / 60,
        "run_exit": done.returncode,
        "burner": burner,
        "slowdown_b": slowdown_b,
    }
    for recipe, ref, cur in (
        ("interleaved", sides["A"], sides["B"]),
        ("sequential", runs[:6], runs[6:]),
    ):
        baseline = work / f"{recipe}.toml"
        saved = capacity("baseline", "save", *map(str, ref), "--out", str(baseline), cwd=work)
        if saved.returncode != 0:
            out[recipe] = {"error": saved.stderr.strip()}
            continue
        gate_json = work / f"{recipe}.json"
        checked = capacity(
            "check", *map(str, cur), "--baseline", str(baseline), "--json", str(gate_json), cwd=work
        )
        decision = json.loads(gate_json.read_text()) if gate_json.exists() else {}
        checks = [c for c in decision.get("checks", []) if c["check"] == "relative"]
        out[recipe] = {
            "exit": checked.returncode,
            "verdicts": {f"{c['target']} {c['metric']}": c["verdict"] for c in checks},
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--blocks", type=int, default=3, help="A/A blocks (identical code)")
    p.add_argument("--burner-blocks", type=int, default=1, help="of which with a CPU burner")
    p.add_argument("--detect-blocks", type=int, default=1, help="blocks with B slowed 20%%")
    p.add_argument("--time-scale", type=float, default=0.5)
    p.add_argument("--keep", type=Path)
    args = p.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="gate-aa-"))
    results = []
    try:
        plan = [(f"aa-{i + 1}", 1.0, i < args.burner_blocks) for i in range(args.blocks)]
        plan += [(f"detect-{i + 1}", 1.2, False) for i in range(args.detect_blocks)]
        for name, slowdown, burner in plan:
            result = block(root, name, args.time_scale, slowdown, burner)
            results.append(result)
            print(json.dumps(result), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    for recipe in ("interleaved", "sequential"):
        aa = [r[recipe] for r in results if r["slowdown_b"] == 1.0 and "exit" in r[recipe]]
        metrics = [v for r in aa for v in r["verdicts"].values()]
        false_runs = sum(r["exit"] == 1 for r in aa)
        false_metrics = sum(v == "regression" for v in metrics)
        inconclusive = sum(v in ("inconclusive", "suspect") for v in metrics)
        print(
            f"{recipe}: identical code failed {false_runs} of {len(aa)} gate runs; "
            f"{false_metrics} of {len(metrics)} metric checks called a regression, "
            f"{inconclusive} inconclusive"
        )
        detect = [r[recipe] for r in results if r["slowdown_b"] != 1.0 and "exit" in r[recipe]]
        slowed = [
            verdict
            for r in detect
            for key, verdict in r["verdicts"].items()
            if key.startswith("rules ") and "_ms" in key
        ]
        found = sum(v == "regression" for v in slowed)
        print(
            f"{recipe}: the 20% slowdown of {SLOWED} was found in {found} of {len(slowed)} "
            f"latency checks of its operations; gate exit 1 in "
            f"{sum(r['exit'] == 1 for r in detect)} of {len(detect)} runs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
