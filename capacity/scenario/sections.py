"""`[load]`, `[slos]`, `[stack]` and `[resources]` of a scenario."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from capacity.scenario.model import ArrivalStage, LoadProfile, ResourceSelection, Stage
from capacity.scenario.reader import Section, missing
from capacity.scenario.users import MAX_USERS
from capacity.slos import (
    OPERATION_METRICS,
    SERVICE_METRIC_ALIASES,
    SERVICE_METRICS,
    SPAN_METRICS,
    SloSpec,
)

MAX_DURATION_S = 7 * 24 * 3600.0
MAX_RATE_PER_S = 1_000_000.0


def load_profile(sec: Section | None) -> LoadProfile:
    if sec is None:
        return LoadProfile()
    default = LoadProfile()
    stages: list[Stage] = []
    for i, raw in enumerate(sec.get("stages", list, [])):
        st = Section(sec.file, f"{sec.path('stages')}[{i}]", raw)
        kind = st.get("kind", str, "step")
        if kind not in ("ramp", "step", "spike", "soak"):
            raise st.error(st.path("kind"), f"expected ramp, step, spike or soak, got '{kind}'")
        if "duration_s" not in st.table:
            missing(st, "duration_s")
        users = st.require("users", int)
        users = st.integer("users", users, 0, MAX_USERS)
        stages.append(
            Stage(
                users=users,
                duration_s=st.number("duration_s", 0.0, 0.0, MAX_DURATION_S, low_open=True),
                spawn_rate=st.number(
                    "spawn_rate", max(1.0, float(users)), 0.0, 100_000.0, low_open=True
                ),
                kind=kind,
            )
        )
        st.finish()
    if stages and not any(s.users > 0 for s in stages):
        raise sec.error(sec.path("stages"), "every stage has 0 users: nothing would run")
    arrival: list[ArrivalStage] = []
    for i, raw in enumerate(sec.get("arrival", list, [])):
        st = Section(sec.file, f"{sec.path('arrival')}[{i}]", raw)
        for key in ("duration_s", "rate_per_s"):
            if key not in st.table:
                missing(st, key)
        arrival.append(
            ArrivalStage(
                rate_per_s=st.number("rate_per_s", 0.0, 0.0, MAX_RATE_PER_S),
                duration_s=st.number("duration_s", 0.0, 0.0, MAX_DURATION_S, low_open=True),
                ramp=st.get("ramp", bool, False),
            )
        )
        st.finish()
    if stages and arrival:
        raise sec.error(sec.path("arrival"), "use either load.stages or load.arrival, not both")
    profile = LoadProfile(
        users=sec.integer("users", default.users, 1, MAX_USERS),
        spawn_rate=sec.number("spawn_rate", default.spawn_rate, 0.0, 100_000.0, low_open=True),
        duration_s=sec.number("duration_s", default.duration_s, 0.0, MAX_DURATION_S, low_open=True),
        warmup_s=sec.number("warmup_s", default.warmup_s, 0.0, MAX_DURATION_S),
        stages=tuple(stages),
        arrival=tuple(arrival),
        max_users=sec.integer("max_users", 50 if arrival else 0, 1 if arrival else 0, MAX_USERS),
        slice_s=sec.number("slice_s", default.slice_s, 0.5, 5.0),
    )
    if profile.warmup_s >= profile.total_duration_s:
        raise sec.error(sec.path("warmup_s"), "must be shorter than the run")
    sec.finish()
    return profile


def scale_durations(load: LoadProfile, scale: float) -> LoadProfile:
    """The same profile with every duration multiplied by `scale` (slices stay as they are)."""
    return replace(
        load,
        duration_s=load.duration_s * scale,
        warmup_s=load.warmup_s * scale,
        stages=tuple(replace(st, duration_s=st.duration_s * scale) for st in load.stages),
        arrival=tuple(replace(st, duration_s=st.duration_s * scale) for st in load.arrival),
    )


def load_slos(sec: Section | None) -> tuple[SloSpec, ...]:
    """`[slos.operations."<pattern>"]`, `[slos.services."<pattern>"]` and
    `[slos.spans."<pattern>"]` (server-side spans, `capacity.traces`) as flat limits."""
    if sec is None:
        return ()
    specs: list[SloSpec] = []
    for section, kind, metrics in (
        ("operations", "operation", OPERATION_METRICS),
        ("services", "service", SERVICE_METRICS + tuple(SERVICE_METRIC_ALIASES)),
        ("spans", "span", SPAN_METRICS),
    ):
        group = sec.sub(section)
        if group is None:
            continue
        for pattern in list(group.table):
            if not pattern.strip():
                raise group.error(group.path(pattern), "empty pattern")
            s = group.sub(pattern)
            assert s is not None
            for key in list(s.table):
                if key not in metrics:
                    s.seen.add(key)
                    raise s.error(s.path(key), f"unknown key; expected one of {list(metrics)}")
                high = 1.0 if key == "error_rate" else 1e9
                limit = s.number(key, 0.0, 0.0, high, low_open=key != "error_rate")
                metric = SERVICE_METRIC_ALIASES.get(key, key) if kind == "service" else key
                specs.append(SloSpec(kind, pattern, metric, limit))  # type: ignore[arg-type]
            s.finish()
        group.finish()
    sec.finish()
    return tuple(specs)


def load_stack(sec: Section | None) -> tuple[dict[str, dict[str, Any]], bool]:
    """`[stack]`: knobs per service (`[stack.tuning.<service>]`) and `keep_state`."""
    if sec is None:
        return {}, False
    keep_state = bool(sec.get("keep_state", bool, False))
    return load_tuning(sec), keep_state


def load_tuning(sec: Section | None) -> dict[str, dict[str, Any]]:
    if sec is None:
        return {}
    tuning: dict[str, dict[str, Any]] = {}
    t = sec.sub("tuning")
    if t:
        for service in list(t.table):
            knobs = t.sub(service)
            assert knobs is not None
            tuning[service] = dict(knobs.table)
            knobs.seen.update(knobs.table)
        t.finish()
    sec.finish()
    return tuning


def load_resources(sec: Section | None) -> ResourceSelection:
    """`[resources]`: containers, compose project, processes and the host to sample."""
    if sec is None:
        return ResourceSelection()
    containers = sec.get("containers", list, [])
    if not all(isinstance(c, str) and c for c in containers):
        raise sec.error(sec.path("containers"), "expected an array of container name patterns")
    processes: dict[str, int | str] = {}
    procs = sec.sub("processes")
    if procs is not None:
        for name in list(procs.table):
            value = procs.get(name, (int, str))
            if isinstance(value, int) and value < 1:
                raise procs.error(
                    procs.path(name), "expected a pid (> 0) or a command-line pattern"
                )
            if isinstance(value, str):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise procs.error(
                        procs.path(name), f"not a regular expression: {exc}"
                    ) from None
            processes[name] = value
        procs.finish()
    selection = ResourceSelection(
        host=sec.get("host", bool, True),
        containers=tuple(containers),
        compose_project=sec.get("compose_project", str, None),
        processes=processes,
        docker_host=sec.get("docker_host", str, None),
    )
    sec.finish()
    return selection
