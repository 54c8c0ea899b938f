"""GraphQL operations through the gateway, one Locust stat per operation.

Named graphql_ops.py, not graphql.py: Locust puts this folder first on sys.path, and a
graphql.py here would shadow the graphql-core package.

    locust -f locustfiles/graphql_ops.py --headless -u 20 -r 10 -t 30s
"""

from capacity.drivers.users import build_shape, build_user_classes
from capacity.locust_plugin import REPO_ROOT, load_active_scenario

scenario = load_active_scenario(REPO_ROOT / "scenarios" / "graphql.toml")
globals().update(build_user_classes(scenario, kinds=("graphql",)))
if (ScenarioShape := build_shape(scenario)) is None:
    del ScenarioShape
