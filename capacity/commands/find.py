"""`capacity find SCENARIO`: the highest arrival rate that meets the scenario's SLOs."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from capacity.errors import EXIT_INCONCLUSIVE, EXIT_PASS, ConfigError

EPILOG = """\
examples:
  capacity find scenarios/capacity-sweep.toml
  capacity find scenarios/rules.toml --max-rate 400 --probe-s 10 --resolution 0.05

Each probe is a real short run of the scenario as an open model (one [[load.arrival]] stage
at the probe's rate, the scenario's users, SLOs and stack tuning unchanged), in its own run
folder under reports/<id>-<name>-find/probes/. The search brackets the answer (growing towards
the saturation the measured CPU per request predicts), bisects until the interval is narrower
than --resolution, and re-probes the lower bound once. A probe that was short only of samples
for an SLO runs again at the same rate for twice as long (up to twice). Any other invalid probe
(load generator saturated, a run stopped early) stops the search: inconclusive.
Writes find.json, find.html and find.md; prints the path of find.html.
exit codes: 0 found, 2 bad input, 3 inconclusive (no interval, or an invalid probe)."""

# Requests per operation in a probe's steady state for its SLOs to be judged (`validity`):
# 50 for an error rate and 40 for a P95, 200 for a P99; 1.5 times that, so the random choice
# of operation per iteration leaves a probe short of samples only beyond 3 standard deviations.
SAMPLE_MARGIN = 1.5
# A probe short only of samples runs again at the same rate this many times longer, at most
# LENGTHEN_MAX times (and never past MAX_PROBE_S).
LENGTHEN_FACTOR = 2.0
LENGTHEN_MAX = 2
MAX_PROBE_S = 600.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "find",
        help="search the highest arrival rate that meets the scenario's SLOs",
        description="Find the SLO-limited capacity of a scenario by short open-model probes: "
        "bracket, then bisect, and name the first bottleneck.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", type=Path, help="scenario TOML file (its SLOs are the goal)")
    p.add_argument(
        "--min-rate",
        type=float,
        default=None,
        metavar="R",
        help="lowest rate to probe, per second (default: enough for the SLOs' sample minimums)",
    )
    p.add_argument(
        "--max-rate",
        type=float,
        default=2000.0,
        metavar="R",
        help="highest rate to probe, per second (default 2000)",
    )
    p.add_argument(
        "--start-rate",
        type=float,
        default=None,
        metavar="R",
        help="first probe's rate (default: the minimum rate)",
    )
    p.add_argument(
        "--probe-s",
        type=float,
        default=6.0,
        metavar="S",
        help="load duration of each probe, seconds (default 6)",
    )
    p.add_argument(
        "--warmup-s",
        type=float,
        default=1.0,
        metavar="S",
        help="warm-up excluded from each probe's statistics (default 1)",
    )
    p.add_argument(
        "--resolution",
        type=float,
        default=0.05,
        metavar="F",
        help="stop when (fail rate / pass rate - 1) <= F (default 0.05)",
    )
    p.add_argument(
        "--max-probes",
        type=int,
        default=10,
        metavar="N",
        help="give up (inconclusive) after N probes (default 10)",
    )
    p.add_argument(
        "--max-users",
        type=int,
        default=None,
        metavar="N",
        help="user pool of the arrival executor (default: the scenario's, else 50)",
    )
    p.add_argument(
        "--no-confirm", action="store_true", help="do not re-probe the lower bound at the end"
    )
    p.add_argument(
        "--reports",
        type=Path,
        default=Path("reports"),
        help="folder that receives the find folder (default: reports)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="embedded stack state folder (default: .capacity/stack)",
    )
    p.add_argument(
        "--keep-stack",
        action="store_true",
        help="leave an embedded stack this command started running afterwards",
    )
    p.set_defaults(func=run)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def steady_seconds(probe_s: float, warmup_s: float, slice_s: float) -> float:
    """The steady state a probe is judged on: the warm-up is rounded up to a whole slice
    (`capacity.analysis.summary.in_steady_state`), so up to one slice more than it is lost."""
    if warmup_s <= 0:
        return probe_s
    return max(probe_s - warmup_s - slice_s, min(slice_s, probe_s - warmup_s))


def short_of_samples_only(reasons: tuple[str, ...]) -> bool:
    """True when every reason a probe was invalid is an SLO's sample minimum: a longer probe
    at the same rate can be judged."""
    return bool(reasons) and all("too few samples" in r for r in reasons)


def minimum_rate(scenario: object, steady_s: float) -> float:
    """Lowest rate at which every operation gets enough steady-state requests for its SLOs."""
    from capacity.scenario import Scenario
    from capacity.slos import MIN_SAMPLES

    assert isinstance(scenario, Scenario)
    metrics = {s.metric for s in scenario.slos if s.kind == "operation"}
    need = max((MIN_SAMPLES[m] for m in metrics), default=MIN_SAMPLES["error_rate"])
    classes = [c for c in scenario.users.values() if c.fixed_count == 0 and c.weight > 0]
    total = sum(c.weight for c in classes) or 1
    shares = []
    for c in classes:
        weights = [o.weight for o in c.operations] or [r.weight for r in c.rule_sets]
        weights = weights or [w.weight for w in c.workflows] or [1]
        shares += [c.weight / total * w / sum(weights) for w in weights]
    smallest = min(shares) if shares else 1.0
    return SAMPLE_MARGIN * need / (smallest * steady_s)


def run(args: argparse.Namespace) -> int:
    from capacity import runfolder
    from capacity.find.probe import Probe, run_probe
    from capacity.find.render import write_find
    from capacity.find.result import headline, make_result
    from capacity.find.search import SearchConfig, decide
    from capacity.runner import DEFAULT_STATE_DIR, EmbeddedStack
    from capacity.scenario import load_scenario
    from capacity.slos import specs_to_json

    if not 1.0 <= args.probe_s <= MAX_PROBE_S:
        raise ConfigError(f"--probe-s must be between 1 and 600 s, got {args.probe_s:g}")
    if not 0 <= args.warmup_s < args.probe_s:
        raise ConfigError("--warmup-s must be at least 0 and shorter than --probe-s")
    source = args.scenario.resolve()
    scenario = load_scenario(source)
    if not scenario.slos:
        raise ConfigError(f"{args.scenario}: no [slos.*]: nothing to find the capacity against")
    steady_s = steady_seconds(args.probe_s, args.warmup_s, scenario.load.slice_s)
    min_rate = args.min_rate if args.min_rate is not None else minimum_rate(scenario, steady_s)
    start = args.start_rate if args.start_rate is not None else min_rate
    host_cores = float(os.cpu_count() or 1)
    cpu_limits = {"temporal": host_cores}  # as the sweep assumes: Temporal uses every core
    try:
        config = SearchConfig(
            min_rate_per_s=min_rate,
            max_rate_per_s=args.max_rate,
            start_rate_per_s=start,
            resolution=args.resolution,
            max_probes=args.max_probes,
            confirm=not args.no_confirm,
            cpu_limit_cores=cpu_limits,
        )
    except ValueError as exc:
        raise ConfigError(f"capacity find: {exc}") from None
    if args.max_users is not None and args.max_users < 1:
        raise ConfigError(f"--max-users must be at least 1, got {args.max_users}")
    find_dir = runfolder.create_run_dir(args.reports, f"{scenario.name}-find")
    state_dir = args.state_dir or DEFAULT_STATE_DIR
    say(f"find folder: {find_dir}")
    started = time.monotonic()
    probes: list[Probe] = []
    lengthened: list[Probe] = []  # probes run again for longer (short of samples only)
    # One stack (and its lease) for every probe; each probe's run reuses it.
    stack = (
        EmbeddedStack(scenario, state_dir, say, keep=args.keep_stack)
        if scenario.targets.embedded_stack
        else None
    )
    with stack if stack is not None else _Null():
        decision = decide([], config)
        while decision.next_rate_per_s is not None:
            rate = decision.next_rate_per_s
            probe_s = args.probe_s
            for attempt in range(LENGTHEN_MAX + 1):
                say(f"probe {len(probes) + 1}: {rate:.1f} arrivals/s for {probe_s:g} s")
                probe = run_probe(
                    len(probes) + 1,
                    source,
                    rate,
                    find_dir,
                    duration_s=probe_s,
                    warmup_s=args.warmup_s,
                    max_users=args.max_users,
                    state_dir=state_dir,
                    stack=stack,
                    say=lambda line: None,
                )
                p95 = "-" if probe.p95_ms is None else f"{probe.p95_ms:.1f} ms"
                say(
                    f"  -> {probe.outcome.outcome}: {probe.outcome.throughput_rps:.1f}/s "
                    f"measured, P95 {p95} ({probe.wall_s:.0f} s)"
                )
                longer = min(probe_s * LENGTHEN_FACTOR, MAX_PROBE_S)
                if (
                    probe.outcome.outcome != "invalid"
                    or not short_of_samples_only(probe.outcome.reasons)
                    or attempt == LENGTHEN_MAX
                    or longer <= probe_s
                ):
                    break
                say(f"  too few samples for an SLO ({probe.outcome.reasons[0]}): probing longer")
                lengthened.append(probe)
                probe_s = longer
            probes.append(probe)
            decision = decide([p.outcome for p in probes], config)
    elapsed = time.monotonic() - started
    result = make_result(
        scenario.name,
        decision,
        probes,
        elapsed_s=elapsed,
        settings={
            "probe_s": args.probe_s,
            "warmup_s": args.warmup_s,
            "resolution": args.resolution,
            "min_rate_per_s": round(min_rate, 3),
            "max_rate_per_s": args.max_rate,
            "start_rate_per_s": round(start, 3),
            "max_probes": args.max_probes,
            "confirm": not args.no_confirm,
            "source": str(source),
            # Probes short only of samples, each run again at its rate for longer.
            "lengthened_probes": [
                {
                    "rate_per_s": p.outcome.rate_per_s,
                    "duration_s": p.duration_s,
                    "reasons": list(p.outcome.reasons),
                    "run_dir": p.run_dir,
                }
                for p in lengthened
            ],
        },
        slos=specs_to_json(scenario.slos),
        cpu_limit_cores=cpu_limits,
    )
    write_find(find_dir, result)
    say(headline(result))
    print(find_dir / "find.html", flush=True)
    return EXIT_PASS if result.status == "found" else EXIT_INCONCLUSIVE


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
