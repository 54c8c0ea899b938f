"""`capacity collect`: sample containers, processes or the host into a resources CSV, or merge.

Runs alone next to a (possibly remote) docker host while `capacity run` drives load from
elsewhere; the files from several hosts are then merged into one run folder's resources.csv.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from capacity.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration_s(text: str, option: str = "duration") -> float:
    """Seconds from `500ms`, `1s`, `2m`, `1h` or a bare number of seconds."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(
            f"--{option}: cannot read {text!r} as a duration (examples: 500ms, 1s, 2m)"
        )
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_pids(items: list[str]) -> dict[str, int]:
    """`NAME=PID` pairs to a mapping; one bad item is a ConfigError naming it."""
    pids: dict[str, int] = {}
    for item in items:
        name, sep, pid = item.partition("=")
        if not sep or not name or not pid.strip().isdigit():
            raise ConfigError(f"--pids: expected NAME=PID, got {item!r}")
        pids[name] = int(pid)
    return pids


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect",
        help="sample container/process/host CPU and memory into a resources CSV",
        description="Sample CPU (cores), memory working set, memory limit and CPU throttling "
        "of Docker containers (by name pattern, compose project or label), processes and the "
        "host at a fixed interval, appending one CSV row per target per sample. Runs until "
        "--duration elapses or SIGINT/SIGTERM. With --merge, combine resource files from "
        "several hosts into one instead.",
        epilog="examples: capacity collect --containers 'vextrus-*' --interval 1s --out "
        "host-a.csv | capacity collect --merge host-a.csv host-b.csv --out "
        "reports/RUN/resources.csv",
    )
    p.add_argument("--containers", metavar="PATTERN", help="container name glob, e.g. vextrus-*")
    p.add_argument("--project", metavar="P", help="docker compose project name")
    p.add_argument("--label", metavar="L", help="container label, KEY or KEY=VALUE")
    p.add_argument("--pids", nargs="+", default=[], metavar="NAME=PID", help="process trees")
    p.add_argument("--host", action="store_true", help="also sample host totals")
    p.add_argument("--interval", default="1s", help="sampling interval (default 1s)")
    p.add_argument("--duration", help="stop after this long (default: until interrupted)")
    p.add_argument("--out", type=Path, required=True, help="CSV file to write")
    p.add_argument(
        "--stats-api",
        action="store_true",
        help="read containers through the Docker stats API even when cgroup files are visible",
    )
    p.add_argument(
        "--cgroup-root", type=Path, default=None, help="cgroup mount (default /sys/fs/cgroup)"
    )
    p.add_argument("--progress", default="10s", help="stderr progress line period (default 10s)")
    p.add_argument(
        "--merge", nargs="+", type=Path, metavar="CSV", help="merge these files into --out"
    )
    p.add_argument(
        "--hosts", nargs="+", metavar="NAME", help="with --merge: host label for each file"
    )
    p.set_defaults(func=run)


def _build_sources(args: argparse.Namespace) -> list[Any]:
    from capacity.collect import DockerSource, HostSource, ProcessSource
    from capacity.collect.cgroup import CGROUP_ROOT

    sources: list[Any] = []
    if args.containers or args.project or args.label:
        cgroup_root = None if args.stats_api else (args.cgroup_root or CGROUP_ROOT)
        sources.append(
            DockerSource(
                pattern=args.containers,
                project=args.project,
                label=args.label,
                cgroup_root=cgroup_root,
            )
        )
    if args.pids:
        sources.append(ProcessSource(parse_pids(args.pids)))
    if args.host:
        sources.append(HostSource())
    if not sources:
        raise ConfigError(
            "capacity collect: nothing to sample; give --containers, --project, --label, "
            "--pids or --host (or --merge)"
        )
    return sources


def _say(message: str) -> None:
    print(f"capacity collect: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if args.merge:
        from capacity.collect import merge_resource_files

        rows = merge_resource_files(args.merge, args.out, hosts=args.hosts)
        _say(f"merged {len(args.merge)} file(s), {rows} rows -> {args.out}")
        return 0
    interval_s = parse_duration_s(args.interval, "interval")
    duration_s = parse_duration_s(args.duration, "duration") if args.duration else None
    progress_s = parse_duration_s(args.progress, "progress")
    if args.pids:
        parse_pids(args.pids)  # bad input fails before anything connects
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Installed before connecting, so a stop during start-up still ends cleanly.
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _collect(args, interval_s, duration_s, progress_s, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _collect(
    args: argparse.Namespace,
    interval_s: float,
    duration_s: float | None,
    progress_s: float,
    stop: threading.Event,
) -> int:
    from capacity.collect import Sampler

    sources = _build_sources(args)
    for source in sources:
        _say(source.describe())
    sampler = Sampler(sources, args.out, interval_s=interval_s, on_warning=_warn)
    started = time.monotonic()
    sampler.start()
    try:
        deadline = started + duration_s if duration_s is not None else float("inf")
        next_progress = started + progress_s
        while not stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_progress:
                _progress(sampler, now - started, args.out)
                next_progress += progress_s
            stop.wait(min(deadline, next_progress) - now)
    finally:
        written = sampler.stop()
    _say(
        f"done: {written} rows in {sampler.ticks} samples over "
        f"{time.monotonic() - started:.1f} s -> {args.out}"
    )
    return 0


def _warn(message: str) -> None:
    _say(f"warning: {message}")


def _progress(sampler: Any, elapsed_s: float, out: Path) -> None:
    targets = len({(s.source, s.target) for s in sampler.last_samples})
    _say(
        f"{elapsed_s:.0f} s: {sampler.ticks} samples, {targets} target(s) in the last, "
        f"{sampler.samples_written} rows -> {out}"
    )
