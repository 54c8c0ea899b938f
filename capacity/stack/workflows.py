"""Sample ERP Temporal workflows: PurchaseOrderApproval, InvoicePosting and InvoiceApproval.

Kept free of I/O and of non-deterministic imports because the Temporal sandbox re-imports
this module; activities are referred to by name so `activities.py` (aiohttp) stays outside.
PurchaseOrderApproval and InvoicePosting take and return one JSON-able dict; InvoiceApproval
takes two arguments and is driven from outside, as approval workflows are: a `decide`
signal, a `status` query and a `set_priority` update (whose validator rejects a priority
outside 1-5), so the load driver's signals, queries and updates have something real to meet.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

TASK_QUEUE = "vextrus-erp"
NAMESPACE = "vextrus"
ACTIVITY_TIMEOUT = timedelta(seconds=10)
# Upstream faults (an injected HTTP 500) are retried quickly, as a real worker would;
# business and injected workflow failures are non-retryable and close the workflow FAILED.
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=1),
    maximum_attempts=5,
)


async def _call(name: str, arg: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = await workflow.execute_activity(
        name, arg, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ACTIVITY_RETRY
    )
    return result


@workflow.defn(name="PurchaseOrderApproval")
class PurchaseOrderApproval:
    """Check budget, ask the rules-engine who must approve, record the approval."""

    @workflow.run
    async def run(self, args: dict[str, Any]) -> dict[str, Any]:
        budget = await _call("check_budget", args)
        decision = await _call(
            "decide_approval_level",
            {"amount": args.get("amount"), "role": args.get("role", "staff")},
        )
        record = await _call(
            "record_approval",
            {
                "vendorId": args.get("vendorId"),
                "amount": args.get("amount"),
                "requestedBy": args.get("requestedBy"),
                "approval": decision["approval"],
            },
        )
        return {
            "status": "approved" if decision["approval"] == "auto" else "pending",
            "approval": decision["approval"],
            "budgetRemaining": budget["remaining"],
            "approvalId": record["approvalId"],
        }


@workflow.defn(name="InvoicePosting")
class InvoicePosting:
    """Validate the invoice against master-data, compute VAT by rule, post to the ledger."""

    @workflow.run
    async def run(self, args: dict[str, Any]) -> dict[str, Any]:
        invoice = await _call("validate_invoice", args)
        vat = await _call("compute_vat", invoice)
        journal = await _call("post_to_ledger", {**invoice, "vat": vat})
        return {
            "status": "posted",
            "invoiceId": invoice["invoiceId"],
            "vatRate": vat["rate"],
            "vatAmount": vat["amount"],
            "journalId": journal["journalId"],
        }


DECISION_TIMEOUT = timedelta(seconds=60)
PRIORITIES = range(1, 6)


@workflow.defn(name="InvoiceApproval")
class InvoiceApproval:
    """Check the invoice in master-data, then wait for an approver's decision (a signal)."""

    def __init__(self) -> None:
        self.invoice_id = ""
        self.decision: str | None = None
        self.priority = 3

    @workflow.run
    async def run(self, invoice_id: str, approver: str) -> dict[str, Any]:
        self.invoice_id = invoice_id
        invoice = await _call("validate_invoice", {"invoiceId": invoice_id})
        try:
            await workflow.wait_condition(
                lambda: self.decision is not None, timeout=DECISION_TIMEOUT
            )
        except TimeoutError:
            self.decision = "expired"
        return {
            "invoiceId": invoice["invoiceId"],
            "invoiceStatus": invoice["status"],
            "total": invoice["total"],
            "approver": approver,
            "decision": self.decision,
            "priority": self.priority,
        }

    @workflow.signal
    def decide(self, decision: str) -> None:
        if self.decision is None:
            self.decision = str(decision)

    @workflow.query
    def status(self) -> dict[str, Any]:
        return {
            "invoiceId": self.invoice_id,
            "decision": self.decision or "pending",
            "priority": self.priority,
        }

    @workflow.update
    def set_priority(self, priority: int) -> dict[str, Any]:
        self.priority = priority
        return {"invoiceId": self.invoice_id, "priority": priority}

    @set_priority.validator
    def check_priority(self, priority: int) -> None:
        if (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or priority not in PRIORITIES
        ):
            raise ValueError(f"priority must be 1-5, got {priority!r}")


WORKFLOWS: dict[str, type] = {
    "PurchaseOrderApproval": PurchaseOrderApproval,
    "InvoicePosting": InvoicePosting,
    "InvoiceApproval": InvoiceApproval,
}
