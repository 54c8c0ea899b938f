"""Activities of the sample ERP workflows; they call master-data and rules-engine over HTTP.

They run in the workflow stand-in's process, so they share its `ServiceRuntime`: that is
where `workflow_failure_rate` is read and `workflow_failure` is counted. The injected
failure is decided once, on the first attempt of the first activity, and raised as a
non-retryable ApplicationError so the workflow closes FAILED exactly once per decision.
"""

from __future__ import annotations

import itertools
from typing import Any

import aiohttp
from temporalio import activity
from temporalio.exceptions import ApplicationError

from capacity.stack.httpkit import ServiceRuntime

BUDGET_LIMIT_BDT = 50_000_000.0


class UpstreamFailed(Exception):
    """An upstream stand-in answered with an unexpected status (retried by Temporal)."""


class ErpActivities:
    """Activity implementations bound to one HTTP session and the process's runtime."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        master_data_url: str,
        rules_engine_url: str,
        runtime: ServiceRuntime,
    ) -> None:
        self.session = session
        self.master_data_url = master_data_url.rstrip("/")
        self.rules_engine_url = rules_engine_url.rstrip("/")
        self.runtime = runtime
        self._ids = itertools.count(1)

    def all(self) -> list[Any]:
        """The bound activity callables to register with the worker."""
        return [
            self.check_budget,
            self.decide_approval_level,
            self.record_approval,
            self.validate_invoice,
            self.compute_vat,
            self.post_to_ledger,
        ]

    def _maybe_inject_failure(self, args: dict[str, Any]) -> None:
        if activity.info().attempt > 1:
            return
        runtime = self.runtime
        if args.get("fail") is True or runtime.chance(runtime.tuning.workflow_failure_rate):
            runtime.count("workflow_failure")
            raise ApplicationError(
                "injected workflow failure", type="InjectedFailure", non_retryable=True
            )

    async def _get(self, url: str) -> Any:
        async with self.session.get(url) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise UpstreamFailed(f"GET {url} -> HTTP {resp.status}")
            return await resp.json()

    async def _rule(self, rule_set: str, facts: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.rules_engine_url}/evaluate"
        async with self.session.post(url, json={"ruleSet": rule_set, "facts": facts}) as resp:
            if resp.status != 200:
                raise UpstreamFailed(f"POST {url} ({rule_set}) -> HTTP {resp.status}")
            body = await resp.json()
        outcome: dict[str, Any] = body["outcome"]
        return outcome

    @activity.defn(name="check_budget")
    async def check_budget(self, args: dict[str, Any]) -> dict[str, Any]:
        self._maybe_inject_failure(args)
        amount = args.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
            raise ApplicationError(
                f"amount must be a positive number, got {amount!r}",
                type="InvalidInput",
                non_retryable=True,
            )
        if amount > BUDGET_LIMIT_BDT:
            raise ApplicationError(
                f"amount {amount} exceeds the budget", type="BudgetExceeded", non_retryable=True
            )
        return {"ok": True, "remaining": BUDGET_LIMIT_BDT - float(amount)}

    @activity.defn(name="decide_approval_level")
    async def decide_approval_level(self, args: dict[str, Any]) -> dict[str, Any]:
        outcome = await self._rule("approval-limit", args)
        return {"approval": str(outcome.get("approval", "manager"))}

    @activity.defn(name="record_approval")
    async def record_approval(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"approvalId": f"APR-{next(self._ids):08d}", "approval": args.get("approval")}

    @activity.defn(name="validate_invoice")
    async def validate_invoice(self, args: dict[str, Any]) -> dict[str, Any]:
        self._maybe_inject_failure(args)
        invoice_id = args.get("invoiceId")
        invoice = await self._get(f"{self.master_data_url}/invoices/{invoice_id}")
        if invoice is None:
            raise ApplicationError(
                f"invoice {invoice_id!r} not found", type="NotFound", non_retryable=True
            )
        customer = await self._get(f"{self.master_data_url}/customers/{invoice['customerId']}")
        main_line = max(invoice["lines"], key=lambda line: line["amount"])
        product = await self._get(f"{self.master_data_url}/products/{main_line['productId']}")
        return {
            "invoiceId": invoice["id"],
            "status": invoice["status"],
            "total": invoice["total"],
            "currency": invoice["currency"],
            "country": customer["country"] if customer else "BD",
            "category": product["category"] if product else "other",
        }

    @activity.defn(name="compute_vat")
    async def compute_vat(self, args: dict[str, Any]) -> dict[str, Any]:
        facts = {"country": args["country"], "category": args["category"]}
        outcome = await self._rule("vat", facts)
        rate = float(outcome.get("rate", 0.0))
        return {"rate": rate, "amount": round(float(args["total"]) * rate, 2)}

    @activity.defn(name="post_to_ledger")
    async def post_to_ledger(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"journalId": f"JRN-{next(self._ids):08d}", "invoiceId": args["invoiceId"]}
