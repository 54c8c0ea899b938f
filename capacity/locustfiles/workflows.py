"""Temporal workflow starts and completions through one shared temporalio client.

locust -f locustfiles/workflows.py --headless -u 10 -r 5 -t 30s
"""

from capacity.locust_plugin import locustfile_users

globals().update(locustfile_users("workflows.toml", kinds=("workflows",)))
