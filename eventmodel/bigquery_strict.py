# Moved to endpoints/bigquery_strict.py; this name is gone once every importer has moved (issue #23).
from endpoints.bigquery_strict import *  # noqa: F403
from endpoints.bigquery_strict import rules_from_environment as ddl_partition_rules  # noqa: F401
