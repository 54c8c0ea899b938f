"""Load and validate scenario TOML files into frozen objects.

Validation happens once, at load time, so that a typo stops the run before any load is sent:
every unknown key, wrong type, number out of range (NaN and infinity included) or missing or
unreadable file raises `ConfigError` naming the file and key. `scenarios/README.md` documents
every key; `tests/test_scenario_docs.py` keeps the two in step.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from capacity.addresses import AddressError
from capacity.errors import ConfigError
from capacity.scenario.calls import check_request_hosts
from capacity.scenario.model import (
    ONE_REQUEST_KINDS,
    TARGET_SERVICES,
    USER_KINDS,
    VARIABLE_CASTS,
    ArrivalStage,
    DataPool,
    GraphQLOperation,
    GraphQLSettings,
    HealthCheck,
    LoadProfile,
    ResourceSelection,
    RuleCase,
    RuleSetLoad,
    Scenario,
    Stage,
    Targets,
    UserClass,
    WorkflowLoad,
    think_time_s,
)
from capacity.scenario.reader import Section, read_text_file
from capacity.scenario.sections import (
    load_profile,
    load_resources,
    load_slos,
    load_stack,
    scale_durations,
)
from capacity.scenario.targets import check_allowed_hosts, load_targets, target_hosts
from capacity.scenario.users import load_data, load_users
from capacity.traces.config import load_traces

__all__ = [
    "ONE_REQUEST_KINDS",
    "TARGET_SERVICES",
    "USER_KINDS",
    "VARIABLE_CASTS",
    "ArrivalStage",
    "DataPool",
    "GraphQLOperation",
    "GraphQLSettings",
    "HealthCheck",
    "LoadProfile",
    "ResourceSelection",
    "RuleCase",
    "RuleSetLoad",
    "Scenario",
    "Stage",
    "Targets",
    "UserClass",
    "WorkflowLoad",
    "check_allowed_hosts",
    "load_scenario",
    "scale_durations",
    "target_hosts",
    "think_time_s",
]


def load_scenario(path: str | Path, *, time_scale: float = 1.0) -> Scenario:
    """Read and validate a scenario file; raise ConfigError naming file and key on any problem.

    `time_scale` multiplies every duration, so a soak scenario can be smoke-checked in seconds.
    """
    file = Path(path)
    if not 0 < time_scale <= 100:
        raise ConfigError(f"--time-scale: must be in (0, 100], got {time_scale:g}")
    text = read_text_file(file, "scenario file")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    root = Section(file, "", raw)
    base = file.parent

    meta = root.sub("scenario")
    name = file.stem
    description = ""
    if meta:
        name = meta.get("name", str, name)
        description = meta.get("description", str, "")
        if not name.strip():
            raise meta.error("scenario.name", "must not be empty")
        meta.finish()

    try:
        targets = load_targets(root.sub("targets"), base)
    except AddressError as exc:  # a default combined with a configured one
        raise ConfigError(f"{file}: key 'targets': {exc}") from None
    load = load_profile(root.sub("load"))
    data = load_data(root.sub("data"), base)
    users = load_users(root.sub("users"), base, data)
    if not users:
        raise root.error("users", "at least one user class is required")
    slos = load_slos(root.sub("slos"))
    tuning, keep_state = load_stack(root.sub("stack"))
    resources = load_resources(root.sub("resources"))
    traces = load_traces(root.sub("traces"))
    root.finish()
    if time_scale != 1.0:
        load = scale_durations(load, time_scale)
    scenario = Scenario(
        name=name,
        path=file.absolute(),
        description=description,
        targets=targets,
        load=load,
        users=users,
        data=data,
        slos=slos,
        stack_tuning=tuning,
        stack_keep_state=keep_state,
        resources=resources,
        time_scale=time_scale,
        traces=traces,
    )
    check_allowed_hosts(scenario.targets, file)
    check_request_hosts(scenario)  # [users.http] base URLs (capacity.scenario.calls)
    return scenario
