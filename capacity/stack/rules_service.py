"""rules-engine stand-in: evaluates the JSON rule sets shipped in `capacity/stack/rulesets/`.

The evaluation itself is `capacity.stack.ruleengine` (pure); this module only loads files,
routes HTTP and injects wrong outcomes (`wrong_outcome_rate`), which answer 200 with a
plausible but wrong value so that only a correctness check in the driver can notice.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from capacity.stack.httpkit import RUNTIME_KEY, create_app, error_response, json_response, read_json
from capacity.stack.ruleengine import RuleSet, RuleSetError, evaluate, parse_ruleset, perturb
from capacity.stack.tuning import Tuning

RULESETS_DIR = Path(__file__).resolve().parent / "rulesets"
RULESETS_KEY = web.AppKey("rulesets", dict)


def load_rulesets(directory: Path = RULESETS_DIR) -> dict[str, RuleSet]:
    """Every `*.json` rule set in `directory`, by name; a bad file raises naming that file."""
    rulesets: dict[str, RuleSet] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RuleSetError(f"{path}: not valid JSON: {exc}") from exc
        ruleset = parse_ruleset(doc, str(path))
        rulesets[ruleset.name] = ruleset
    return rulesets


async def list_rulesets(request: web.Request) -> web.Response:
    rulesets: dict[str, RuleSet] = request.app[RULESETS_KEY]
    return json_response(
        {
            "ruleSets": sorted(rulesets),
            "details": [
                {"name": rs.name, "description": rs.description, "mode": rs.mode,
                 "rules": [r.name for r in rs.rules]}
                for rs in rulesets.values()
            ],
        }
    )  # fmt: skip


async def evaluate_handler(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("ruleSet"), str):
        return error_response('body must be {"ruleSet": NAME, "facts": {...}}', 400)
    facts = body.get("facts", {})
    if not isinstance(facts, dict):
        return error_response("'facts' must be a JSON object", 400)
    name = body["ruleSet"]
    ruleset = request.app[RULESETS_KEY].get(name)
    if ruleset is None:
        return error_response(f"unknown rule set '{name}'", 404)
    result = evaluate(ruleset, facts)
    outcome = result.outcome
    runtime = request.app[RUNTIME_KEY]
    if runtime.chance(runtime.tuning.wrong_outcome_rate):
        runtime.count("wrong_outcome")
        outcome = perturb(ruleset, outcome, runtime.rng)
    return json_response({"ruleSet": name, "outcome": outcome, "matched": result.matched})


def build_app(tuning: Tuning, rulesets_dir: Path = RULESETS_DIR) -> web.Application:
    """The rules-engine aiohttp application."""
    app = create_app("rules-engine", tuning)
    app[RULESETS_KEY] = load_rulesets(rulesets_dir)
    app.router.add_get("/rulesets", list_rulesets)
    app.router.add_post("/evaluate", evaluate_handler)
    return app
