"""Tuning knobs: validation of the contract, command-line parsing, latency sampling, CPU burn."""

from __future__ import annotations

import random
import statistics
import time

import pytest

from capacity.errors import ConfigError
from capacity.stack.tuning import (
    DEFAULT_TUNING,
    Tuning,
    TuningError,
    apply_updates,
    burn_cpu,
    knob_names,
    parse_tune_args,
    sample_latency_ms,
    validate_tuning,
)


def test_each_service_has_common_and_own_knobs() -> None:
    assert "graphql_error_rate" in knob_names("gateway")
    assert "wrong_outcome_rate" in knob_names("rules-engine")
    assert "workflow_failure_rate" in knob_names("workflow")
    assert "graphql_error_rate" not in knob_names("master-data")
    for service in ("gateway", "master-data", "rules-engine", "workflow"):
        assert {"latency_dist", "cpu_ms", "concurrency", "slowdown", "error_rate"} <= set(
            knob_names(service)
        )
        assert set(DEFAULT_TUNING[service].as_dict(service)) == set(knob_names(service))


def test_apply_updates_coerces_ints_to_floats_and_keeps_the_rest() -> None:
    tuned = apply_updates(Tuning(), {"cpu_ms": 2, "concurrency": 4}, "gateway")
    assert tuned.cpu_ms == 2.0 and isinstance(tuned.cpu_ms, float)
    assert tuned.concurrency == 4 and tuned.slowdown == 1.0


@pytest.mark.parametrize(
    ("service", "updates", "knob"),
    [
        ("gateway", {"wrong_outcome_rate": 0.1}, "wrong_outcome_rate"),
        ("master-data", {"bogus": 1}, "bogus"),
        ("gateway", {"cpu_ms": "1"}, "cpu_ms"),
        ("gateway", {"cpu_ms": True}, "cpu_ms"),
        ("gateway", {"cpu_ms": -1}, "cpu_ms"),
        ("gateway", {"cpu_ms": float("nan")}, "cpu_ms"),
        ("gateway", {"error_rate": 1.01}, "error_rate"),
        ("gateway", {"slowdown": 0}, "slowdown"),
        ("gateway", {"concurrency": 1.5}, "concurrency"),
        ("gateway", {"concurrency": -1}, "concurrency"),
        ("gateway", {"latency_dist": "pareto"}, "latency_dist"),
    ],
)
def test_bad_knobs_are_named(service: str, updates: dict, knob: str) -> None:
    with pytest.raises(TuningError) as err:
        apply_updates(Tuning(), updates, service)
    assert err.value.knob == knob
    assert knob in str(err.value)


def test_tuning_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown service 'nginx'"):
        validate_tuning({"nginx": {"cpu_ms": 1}})


def test_parse_tune_args_types_values_per_knob() -> None:
    parsed = parse_tune_args(
        ["gateway.cpu_ms=1.5", "master-data.concurrency=8", "rules-engine.latency_dist=fixed"]
    )
    assert parsed == {
        "gateway": {"cpu_ms": 1.5},
        "master-data": {"concurrency": 8},
        "rules-engine": {"latency_dist": "fixed"},
    }
    with pytest.raises(ConfigError, match="SERVICE.KNOB=VALUE"):
        parse_tune_args(["gateway=1"])
    with pytest.raises(ConfigError, match="master-data.concurrency must be an integer"):
        parse_tune_args(["master-data.concurrency=many"])


@pytest.mark.parametrize("dist", ["fixed", "uniform", "lognormal", "exponential"])
def test_latency_ms_is_the_median_of_every_distribution(dist: str) -> None:
    rng = random.Random(7)
    tuning = Tuning(latency_dist=dist, latency_ms=10.0, latency_sigma=0.5)
    draws = [sample_latency_ms(tuning, rng) for _ in range(4000)]
    assert statistics.median(draws) == pytest.approx(10.0, rel=0.08)
    assert min(draws) >= 0


def test_slowdown_multiplies_latency_and_none_means_zero() -> None:
    rng = random.Random(1)
    assert sample_latency_ms(Tuning(latency_dist="fixed", latency_ms=4, slowdown=2.5), rng) == 10
    assert sample_latency_ms(Tuning(latency_dist="none", latency_ms=4), rng) == 0


def test_burn_cpu_uses_thread_cpu_time() -> None:
    t0 = time.thread_time()
    burn_cpu(30.0)
    used_ms = (time.thread_time() - t0) * 1000
    assert 30.0 <= used_ms < 80.0


def test_worker_knobs_of_the_workflow_service() -> None:
    assert {"worker_task_slots", "worker_task_delay_ms"} <= set(knob_names("workflow"))
    tuned = apply_updates(
        DEFAULT_TUNING["workflow"], {"worker_task_slots": 2, "worker_task_delay_ms": 50}, "workflow"
    )
    assert (tuned.worker_task_slots, tuned.worker_task_delay_ms) == (2, 50.0)
    # One slot would be held by the poll of the (empty) sticky queue: tasks would stop, not slow.
    with pytest.raises(TuningError, match="worker_task_slots must be 0 .* or >= 2, got 1"):
        apply_updates(DEFAULT_TUNING["workflow"], {"worker_task_slots": 1}, "workflow")
    with pytest.raises(TuningError, match="unknown knob 'worker_task_slots' for rules-engine"):
        apply_updates(DEFAULT_TUNING["rules-engine"], {"worker_task_slots": 2}, "rules-engine")
