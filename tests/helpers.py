"""Test helpers: SLO limits and summaries written the short way.

`OperationSlo("graphql *", p95_ms=500)` gives the `capacity.slos.SloSpec` limits a scenario's
`[slos.operations."graphql *"]` table would; `summarize(...)` analyses slice records with a
run.json given as a dict, as `capacity report` does with a real run folder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from capacity.analysis import summary as _summary
from capacity.runfolder.meta import RunMeta
from capacity.slos import SERVICE_METRIC_ALIASES, SloSpec


def OperationSlo(pattern: str, **limits: float | None) -> list[SloSpec]:  # noqa: N802
    return [SloSpec("operation", pattern, m, float(v)) for m, v in limits.items() if v is not None]


def ServiceSlo(pattern: str, **limits: float | None) -> list[SloSpec]:  # noqa: N802
    return [
        SloSpec("service", pattern, SERVICE_METRIC_ALIASES.get(m, m), float(v))
        for m, v in limits.items()
        if v is not None
    ]


def flatten(slos: Iterable[SloSpec | Sequence[SloSpec]]) -> list[SloSpec]:
    out: list[SloSpec] = []
    for item in slos:
        out.extend([item] if isinstance(item, SloSpec) else item)
    return out


def meta_of(run_meta: Mapping[str, Any], slos: Iterable[SloSpec] = ()) -> RunMeta:
    data = {"schema": 2, "run_id": "r", "scenario": "s", **run_meta}
    data["slos"] = [s.to_json() for s in slos]
    return RunMeta.parse(data, Path("run.json"))


def summarize(
    slices: Sequence[Mapping[str, Any]],
    resources: pd.DataFrame | None,
    *,
    run_meta: Mapping[str, Any],
    operation_slos: Iterable[Any] = (),
    service_slos: Iterable[Any] = (),
) -> dict[str, Any]:
    meta = meta_of(run_meta, flatten([*operation_slos, *service_slos]))
    first = min((float(s["t_start_s"]) for s in slices), default=None)
    return _summary.summarize(slices, resources, meta, first_start_s=first).summary
