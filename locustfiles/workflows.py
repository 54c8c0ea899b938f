"""Temporal workflow starts and completions through one shared temporalio client.

locust -f locustfiles/workflows.py --headless -u 10 -r 5 -t 30s
"""

from capacity.drivers.users import build_shape, build_user_classes
from capacity.locust_plugin import REPO_ROOT, load_active_scenario

scenario = load_active_scenario(REPO_ROOT / "scenarios" / "workflows.toml")
globals().update(build_user_classes(scenario, kinds=("workflows",)))
if (ScenarioShape := build_shape(scenario)) is None:
    del ScenarioShape
