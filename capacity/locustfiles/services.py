"""The services' own APIs: REST requests with assertions, request chains, Temporal workflows
with signals, queries and updates (`[users.http]` and `[users.workflows]`).

Named services.py, not http.py: Locust puts this folder first on sys.path, and an http.py
here would shadow the standard library's http package.

locust -f locustfiles/services.py --headless -u 10 -r 5 -t 30s
"""

from capacity.locust_plugin import locustfile_users

globals().update(locustfile_users("services.toml", kinds=("http", "workflows")))
