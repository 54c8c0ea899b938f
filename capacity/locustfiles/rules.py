"""Rules-engine evaluation, one Locust stat per rule set; wrong outcomes are failures.

locust -f locustfiles/rules.py --headless -u 10 -r 5 -t 30s
"""

from capacity.locust_plugin import locustfile_users

globals().update(locustfile_users("rules.toml", kinds=("rules",)))
