"""Stuck workflows of one type share one diagnosis per check period."""

from __future__ import annotations

import asyncio

import pytest

from capacity.drivers import temporal_diagnosis


def test_one_diagnosis_shared_by_concurrent_stuck_workflows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(temporal_diagnosis, "UNSERVED_CHECK_S", 0.2)
    monkeypatch.setattr(temporal_diagnosis, "_diagnoses", {})
    calls: list[str] = []

    async def diagnose() -> str | None:
        calls.append("x")
        await asyncio.sleep(0.05)
        return "no worker polls task queue q (workflow type T)"

    async def scenario() -> tuple[list[str | None], list[str | None], str | None]:
        key = ("q", "T")
        share = temporal_diagnosis.shared_diagnosis
        first = await asyncio.gather(*(share(key, diagnose) for _ in range(50)))
        # Within the period the verdict is reused; another type gets its own diagnosis.
        again = [await temporal_diagnosis.shared_diagnosis(key, diagnose)]
        other = await temporal_diagnosis.shared_diagnosis(("q", "U"), diagnose)
        await asyncio.sleep(0.3)  # the period has passed: diagnosed afresh
        again.append(await temporal_diagnosis.shared_diagnosis(key, diagnose))
        return list(first), again, other

    first, again, other = asyncio.run(scenario())
    assert set(first) == {"no worker polls task queue q (workflow type T)"}
    assert again == [first[0], first[0]] and other == first[0]
    assert len(calls) == 3  # T once, U once, T again after the period


def test_a_failed_diagnosis_reaches_every_waiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(temporal_diagnosis, "_diagnoses", {})

    async def diagnose() -> str | None:
        await asyncio.sleep(0.01)
        raise RuntimeError("server unreachable")

    async def scenario() -> list[BaseException | str | None]:
        calls = (temporal_diagnosis.shared_diagnosis(("q", "T"), diagnose) for _ in range(5))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(r, RuntimeError) for r in results)
