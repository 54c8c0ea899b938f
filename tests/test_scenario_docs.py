"""Every key the scenario loader reads is documented in scenarios/README.md (in code spans)."""

from __future__ import annotations

import re

from conftest import REPO_ROOT

LOADER = REPO_ROOT / "capacity" / "scenario"
DOCS = REPO_ROOT / "scenarios" / "README.md"


def loader_keys() -> set[str]:
    files = [*sorted(LOADER.glob("*.py")), REPO_ROOT / "capacity" / "traces" / "config.py"]
    source = "\n".join(p.read_text(encoding="utf-8") for p in files)
    patterns = (
        r'\.(?:get|require|positive|sub|number|integer|file_path)\(\s*"([a-z_]+)"',
        r'_choice\(\w+, "([a-z_]+)"',  # a key with a fixed set of values
        r'\.seen\.add\("([a-z_]+)"\)',  # a key of any JSON type, read from the table
        r'"([a-z_]+)" in \w+\.table',  # a key whose presence picks the form
    )
    keys = {k for pattern in patterns for k in re.findall(pattern, source)}
    # Keys of which exactly one is given: `for k in ("a", "b") if k in x.table`.
    for group in re.findall(r"for k in \(([^)]*)\) if k in \w+\.table", source):
        keys |= set(re.findall(r'"([a-z_]+)"', group))
    from capacity.slos import METRICS, SERVICE_METRIC_ALIASES

    metrics = {m for names in METRICS.values() for m in names} | set(SERVICE_METRIC_ALIASES)
    return keys | metrics


def test_loader_keys_are_found() -> None:
    keys = loader_keys()
    assert {"users", "allowed_hosts", "rule_sets", "p95_ms", "rate_per_s"} <= keys
    assert {"requests", "chains", "extract", "id_conflict_policy", "wait_result"} <= keys


def test_every_key_is_documented() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    code_spans = " ".join(re.findall(r"`[^`]+`", docs))
    missing = sorted(k for k in loader_keys() if not re.search(rf"\b{k}\b", code_spans))
    assert not missing, f"undocumented scenario keys: {missing}"
