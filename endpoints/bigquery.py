"""google-cloud-bigquery's client for BigQuery or for an emulator: the one place one is made, for the pipeline's sinks
(on Dataflow workers too, so it imports nothing heavier than the client), reconcile, `bq apply` and the local stack.

    client = bigquery_client("my-project", location="EU")                 # BigQuery, Application Default Credentials
    client = bigquery_client("workbench-local", "127.0.0.1:9050", "US")   # bqemulator, anonymous
"""

from __future__ import annotations

import os
from typing import Any

from endpoints import http_endpoint
from endpoints.bigquery_strict import maybe_strict
from endpoints.errors import EndpointError

CREDENTIALS_FIX = "run `gcloud auth application-default login`, or pass --emulator HOST:PORT for the local emulator"


def bigquery_client(project: str, emulator: str | None = None, location: str | None = None) -> Any:
    """google-cloud-bigquery's client: for the emulator at HOST:PORT or http://HOST:PORT (anonymous, no metadata
    server probe), or for BigQuery itself with emulator None (EndpointError with the fix when there are no
    credentials).

    `location` is the dataset's, the default of the client's job calls (a query, a load job, jobs.get), which need
    it outside the US and EU multi-regions; None leaves each call to name its own (insertAll needs none). With
    WORKBENCH_BIGQUERY_STRICT=1 (the test suite sets it) the client refuses what real BigQuery refuses and the
    emulator forgives (endpoints/bigquery_strict.py)."""
    from google.cloud import bigquery

    if emulator:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        # Without credentials google-auth probes the GCE metadata server first (seconds, offline): an emulator
        # needs none.
        os.environ.setdefault("NO_GCE_CHECK", "true")
        client = bigquery.Client(
            project=project,
            location=location,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=http_endpoint(emulator)),
        )
        return maybe_strict(client)
    try:
        client = bigquery.Client(project=project, location=location)
    except Exception as exc:  # google.auth.exceptions.DefaultCredentialsError and friends
        raise EndpointError(f"cannot reach BigQuery for project {project}: {exc}", CREDENTIALS_FIX) from None
    return maybe_strict(client)
