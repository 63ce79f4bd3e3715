"""Where each service is, and the one place a client for it is made: the bottom layer of the workbench.

`Endpoints` says, per service, whether the workbench talks to a local emulator (its address) or to the cloud
service itself (None). The CLI resolves it once (workbench.localstack.stack.local_endpoints) and passes it down;
the libraries below never read the environment to find an emulator. One factory per service, each taking plain
values so that the pipeline's DoFns can call them on Dataflow workers from option strings:

- endpoints/bigquery.py   bigquery_client(project, emulator, location): google-cloud-bigquery, strict when
                          WORKBENCH_BIGQUERY_STRICT=1 (endpoints/bigquery_strict.py, which reads scripts with
                          endpoints/sql_statements.py when sqlglot cannot)
- endpoints/pubsub.py     pubsub_channel, publisher_client, subscriber_client
- endpoints/storage.py    storage_client (google-cloud-storage), use_anonymous_beam_credentials (Beam's gs://)
- endpoints/s3.py         s3_client (boto3, bounded timeouts and retries), create_buckets
- endpoints/errors.py     FixableError, the shape of every package's user-facing error

This package imports no other package of the project (it ships to Dataflow workers with the pipeline).

    >>> Endpoints(project="p", bigquery="127.0.0.1:9050").bigquery
    '127.0.0.1:9050'
    >>> http_endpoint("127.0.0.1:9050")
    'http://127.0.0.1:9050'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoints:
    """Where each service is: an emulator's address, or None for the cloud service itself (Google Cloud, AWS)."""

    project: str | None = None  # the project the local stack created its resources in (None: the caller's own)
    pubsub: str | None = None  # Pub/Sub emulator HOST:PORT
    bigquery: str | None = None  # bqemulator HOST:PORT or http://HOST:PORT
    storage: str | None = None  # GCS emulator http://HOST:PORT
    s3: str | None = None  # S3 endpoint URL (the local server, or any S3-compatible one)
    s3_region: str | None = None  # None: boto3's own (AWS_DEFAULT_REGION, the profile)


def http_endpoint(host_or_url: str) -> str:
    """An emulator's REST endpoint: HOST:PORT as users write it becomes http://HOST:PORT; a URL stays as given."""
    return host_or_url if "://" in host_or_url else f"http://{host_or_url}"
