"""GraphQL operations through the gateway, one Locust stat per operation.

Named graphql_ops.py, not graphql.py: Locust puts this folder first on sys.path, and a
graphql.py here would shadow the graphql-core package.

    locust -f locustfiles/graphql_ops.py --headless -u 20 -r 10 -t 30s
"""

from capacity.locust_plugin import locustfile_users

globals().update(locustfile_users("graphql.toml", kinds=("graphql",)))
