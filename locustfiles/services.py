"""The services' own APIs: REST requests with assertions, request chains, Temporal workflows
with signals, queries and updates (`[users.http]` and `[users.workflows]`).

Named services.py, not http.py: Locust puts this folder first on sys.path, and an http.py
here would shadow the standard library's http package.

    locust -f locustfiles/services.py --headless -u 10 -r 5 -t 30s
"""

from capacity.drivers.users import build_shape, build_user_classes
from capacity.locust_plugin import REPO_ROOT, load_active_scenario

scenario = load_active_scenario(REPO_ROOT / "scenarios" / "services.toml")
globals().update(build_user_classes(scenario, kinds=("http", "workflows")))
if (ScenarioShape := build_shape(scenario)) is None:
    del ScenarioShape
