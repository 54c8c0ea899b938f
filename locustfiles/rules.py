"""Rules-engine evaluation, one Locust stat per rule set; wrong outcomes are failures.

locust -f locustfiles/rules.py --headless -u 10 -r 5 -t 30s
"""

from capacity.drivers.users import build_shape, build_user_classes
from capacity.locust_plugin import REPO_ROOT, load_active_scenario

scenario = load_active_scenario(REPO_ROOT / "scenarios" / "rules.toml")
globals().update(build_user_classes(scenario, kinds=("rules",)))
if (ScenarioShape := build_shape(scenario)) is None:
    del ScenarioShape
