"""The verdict as a terminal shows it, for `capacity run` and a plain `locust -f` run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capacity import runfolder


def verdict_text(summary: dict[str, Any], run_dir: Path) -> str:
    """The verdict as the terminal shows it: one line, then reasons and broken limits."""
    lines = [f"capacity: verdict {summary['verdict']} ({run_dir / runfolder.REPORT_HTML})"]
    lines += [f"  - {reason}" for reason in summary.get("reasons", [])]
    for slo in summary.get("slos", []):
        if slo["passed"] is False:
            lines.append(f"  FAIL {slo['target']} {slo['metric']}: {slo['value']} > {slo['limit']}")
    return "\n".join(lines)
