"""Mixed ERP traffic: GraphQL, rules evaluation, Temporal workflows and health checks.

locust -f locustfiles/erp.py                       # web UI, embedded stack addresses
locust -f locustfiles/erp.py --headless -u 10 -r 5 -t 20s
locust -f locustfiles/erp.py --scenario scenarios/baseline.toml
"""

from capacity.drivers.users import build_shape, build_user_classes
from capacity.locust_plugin import REPO_ROOT, load_active_scenario

scenario = load_active_scenario(REPO_ROOT / "scenarios" / "smoke.toml")
globals().update(build_user_classes(scenario))
if (ScenarioShape := build_shape(scenario)) is None:
    del ScenarioShape
