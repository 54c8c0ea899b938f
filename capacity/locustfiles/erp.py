"""Mixed ERP traffic: GraphQL, rules evaluation, Temporal workflows and health checks.

locust -f locustfiles/erp.py                       # web UI, embedded stack addresses
locust -f locustfiles/erp.py --headless -u 10 -r 5 -t 20s
locust -f locustfiles/erp.py --scenario scenarios/baseline.toml
"""

from capacity.locust_plugin import locustfile_users

globals().update(locustfile_users("smoke.toml"))
