"""Sample ERP Temporal workflows: PurchaseOrderApproval and InvoicePosting.

Kept free of I/O and of non-deterministic imports because the Temporal sandbox re-imports
this module; activities are referred to by name so `activities.py` (aiohttp) stays outside.
Each workflow takes and returns one JSON-able dict.
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


WORKFLOWS: dict[str, type] = {
    "PurchaseOrderApproval": PurchaseOrderApproval,
    "InvoicePosting": InvoicePosting,
}
