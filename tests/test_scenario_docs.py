"""Every key the scenario loader reads is documented in scenarios/README.md (in code spans)."""

from __future__ import annotations

import re

from conftest import REPO_ROOT

LOADERS = (REPO_ROOT / "capacity" / "scenario.py", REPO_ROOT / "capacity" / "traces" / "config.py")
DOCS = REPO_ROOT / "scenarios" / "README.md"


def loader_keys() -> set[str]:
    source = "\n".join(p.read_text(encoding="utf-8") for p in LOADERS)
    pattern = r'\.(?:get|require|positive|sub)\(\s*"([a-z_]+)"|_opt_positive\(\w+, "([a-z_0-9]+)"'
    return {a or b for a, b in re.findall(pattern, source)}


def test_loader_keys_are_found() -> None:
    keys = loader_keys()
    assert {"users", "allowed_hosts", "rule_sets", "p95_ms", "rate_per_s"} <= keys


def test_every_key_is_documented() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    code_spans = " ".join(re.findall(r"`[^`]+`", docs))
    missing = sorted(k for k in loader_keys() if not re.search(rf"\b{k}\b", code_spans))
    assert not missing, f"undocumented scenario keys: {missing}"
