"""google-cloud-bigquery's client for BigQuery or for an emulator: the one place one is made, for the pipeline's
sinks (on Dataflow workers too, so it imports nothing heavier than the client) and for the workbench
(workbench.localstack.clients adds its error for missing credentials)."""

from __future__ import annotations

from typing import Any

from endpoints import http_endpoint
from endpoints.bigquery_strict import maybe_strict


def bigquery_client(project: str, endpoint: str | None, location: str | None = None) -> Any:
    """google-cloud-bigquery's client: for BigQuery itself, or for an emulator at `endpoint` (anonymous).

    `location` is the dataset's, for job calls (a load job, jobs.get) that need it outside the US and EU
    multi-regions; insertAll needs none. With WORKBENCH_BIGQUERY_STRICT=1 (the test suite sets it) the client
    refuses what real BigQuery refuses and the emulator forgives (eventmodel.bigquery_strict)."""
    from google.cloud import bigquery

    if not endpoint:
        return maybe_strict(bigquery.Client(project=project, location=location))
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    return maybe_strict(
        bigquery.Client(
            project=project,
            location=location,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=http_endpoint(endpoint)),
        )
    )
