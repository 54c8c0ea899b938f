"""Workflow entries of a scenario compiled for the Temporal driver, once before the run.

Everything about a start that does not change per request is done here: the start options
(task queue, timeouts, id policies as temporalio's enums), the argument, id, memo and search
attribute templates, and the calls with their result checks; per start the driver only fills
the templates from one draw of rows (`capacity.drivers.templates`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from capacity.drivers.assertions import compile_result_check
from capacity.drivers.templates import RowDraw, Rows, compile_text, compile_value
from capacity.drivers.variables import PoolCursor
from capacity.scenario.calls import workflow_args
from capacity.scenario.model import DEFAULT_WORKFLOW_OPTIONS, WorkflowCall, WorkflowLoad


@dataclass(frozen=True)
class CompiledCall:
    name: str  # "workflow update InvoiceApproval set_priority"
    kind: str
    handler: str
    args: Callable[[Rows], Any]
    check: Callable[[Any, Rows], str | None] | None
    pause_s: float


@dataclass(frozen=True)
class CompiledWorkflow:
    workflow_type: str
    weight: int
    task_queue: str
    timeout_s: float
    draw: RowDraw
    args: Callable[[Rows], Any]
    workflow_id: Callable[[Rows], str] | None
    options: Mapping[str, Any]  # start_workflow keyword arguments that never change
    memo: Callable[[Rows], Any] | None
    search_attributes: Callable[[Rows], Any] | None
    wait_result: bool
    calls: tuple[CompiledCall, ...]
    extract: tuple[tuple[str, tuple[str, ...]], ...]
    sample_per_s: float
    start_name: str
    complete_name: str


def compile_workflow(
    load: WorkflowLoad, task_queue: str, timeout_s: float, cursors: Mapping[str, PoolCursor]
) -> CompiledWorkflow:
    """Everything about starting one workflow entry that can be done before the run."""
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    opts = load.options or DEFAULT_WORKFLOW_OPTIONS
    wf_type = load.workflow_type
    options: dict[str, Any] = {
        "task_queue": opts.task_queue or task_queue,
        "execution_timeout": timedelta(seconds=timeout_s),
        "rpc_timeout": timedelta(seconds=timeout_s),
    }
    if opts.id_reuse_policy:
        options["id_reuse_policy"] = WorkflowIDReusePolicy[opts.id_reuse_policy.upper()]
    if opts.id_conflict_policy:
        options["id_conflict_policy"] = WorkflowIDConflictPolicy[opts.id_conflict_policy.upper()]
    args = workflow_args(load)
    calls = tuple(_compile_call(wf_type, c) for c in opts.calls)
    templates: list[Any] = [args, opts.id_template or "", dict(opts.memo)]
    templates += [dict(opts.search_attributes)] + [list(c.args) for c in opts.calls]
    templates += [a.value for c in opts.calls for a in c.assertions]
    return CompiledWorkflow(
        workflow_type=wf_type,
        weight=load.weight,
        task_queue=options["task_queue"],
        timeout_s=timeout_s,
        draw=RowDraw(templates, cursors),
        args=compile_value(args),
        workflow_id=compile_text(opts.id_template) if opts.id_template else None,
        options=options,
        memo=compile_value(dict(opts.memo)) if opts.memo else None,
        search_attributes=_search_attributes(opts.search_attributes),
        wait_result=opts.wait_result,
        calls=calls,
        extract=tuple(opts.extract.items()),
        sample_per_s=opts.schedule_to_start_per_s,
        start_name=f"workflow start {wf_type}",
        complete_name=f"workflow complete {wf_type}",
    )


def _compile_call(workflow_type: str, call: WorkflowCall) -> CompiledCall:
    return CompiledCall(
        name=f"workflow {call.kind} {workflow_type} {call.handler}",
        kind=call.kind,
        handler=call.handler,
        args=compile_value(list(call.args)),
        check=compile_result_check(call.assertions),
        pause_s=call.pause_s,
    )


def _search_attributes(template: Mapping[str, Any]) -> Callable[[Rows], Any] | None:
    """Typed search attributes; each value's type (after filling) picks the attribute's type."""
    if not template:
        return None
    from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

    fill = compile_value(dict(template))
    makers: dict[type, Callable[[str], Any]] = {
        str: SearchAttributeKey.for_keyword,
        bool: SearchAttributeKey.for_bool,
        int: SearchAttributeKey.for_int,
        float: SearchAttributeKey.for_float,
        list: SearchAttributeKey.for_keyword_list,
    }

    def build(rows: Rows) -> Any:
        pairs = [
            SearchAttributePair(makers[type(value)](name), value)
            for name, value in fill(rows).items()
        ]
        return TypedSearchAttributes(pairs)

    return build
