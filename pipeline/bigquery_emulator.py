"""The one place that knows the local BigQuery emulator: a client Beam's streaming-insert writer can use.

Beam's BigQuery writer builds its clients itself, and its apitools client has a fixed base URL with no endpoint
option (apache/beam #28149, #23598). Its `test_client` hook takes one object that serves both roles; on the
streaming-insert path with CREATE_NEVER only `insert_rows_json` is called. This adapter answers that call with
a google-cloud-bigquery client pointed at the emulator with anonymous credentials.

It is built from two strings and creates its client lazily, so it pickles with the DoFn that holds it.
Nothing else in the pipeline knows whether it writes to the emulator or to BigQuery: pipeline.sinks asks
`bigquery_client(endpoint)` and gets None (the real service) or this adapter.
"""

from __future__ import annotations

from typing import Any

# The emulator answers some bad rows with HTTP 500 (architecture.md), which the client's default policy retries
# for minutes; a few seconds tells a down emulator from a bad row, and Beam's own retries take it from there.
_RETRY_DEADLINE_S = 10.0


class EmulatorBigQueryClient:
    """`insert_rows_json` against a bqemulator REST endpoint (http://host:port)."""

    def __init__(self, endpoint: str, project: str) -> None:
        self.endpoint = endpoint if "://" in endpoint else f"http://{endpoint}"
        self.project = project
        self._client = None

    def __getstate__(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "project": self.project, "_client": None}

    def _bigquery(self):
        if self._client is None:
            from google.api_core.client_options import ClientOptions
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import bigquery

            self._client = bigquery.Client(
                project=self.project,
                credentials=AnonymousCredentials(),
                client_options=ClientOptions(api_endpoint=self.endpoint),
            )
        return self._client

    def insert_rows_json(self, table: str, json_rows: list[dict], **kwargs: Any) -> list[dict]:
        from google.api_core.retry import Retry

        kwargs.setdefault("retry", Retry(initial=0.2, maximum=2.0, deadline=_RETRY_DEADLINE_S))
        return self._bigquery().insert_rows_json(table, json_rows, **kwargs)


def bigquery_client(endpoint: str | None, project: str) -> EmulatorBigQueryClient | None:
    """The client for Beam's writer: the emulator adapter for an endpoint, None (Beam's own) for BigQuery."""
    return EmulatorBigQueryClient(endpoint, project) if endpoint else None
