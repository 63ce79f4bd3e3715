"""Resource names, attribute keys and local defaults: the one place every part of the workbench reads them.

The topic and subscription names are the assessment's; the dead-letter names follow the same pattern.
"""

from __future__ import annotations

import os
from pathlib import Path

# Pub/Sub
TOPIC = "backend-events-topic"
SUBSCRIPTION = "backend-events-topic-sub"
DEAD_LETTER_TOPIC = "backend-events-dead-letter"
DEAD_LETTER_SUBSCRIPTION = "backend-events-dead-letter-sub"
# Reconcile's own subscription on the dead-letter topic: it retains acked messages so that every reconcile can
# seek back and read the same dead letters without taking them from another reader.
DEAD_LETTER_RECONCILE_SUBSCRIPTION = "backend-events-dead-letter-reconcile"

# Project used when none is given (--project, PUBSUB_PROJECT_ID, GOOGLE_CLOUD_PROJECT): emulators accept any id.
DEFAULT_PROJECT = "workbench-local"
PROJECT_ENV_VARS = ("PUBSUB_PROJECT_ID", "GOOGLE_CLOUD_PROJECT")

# BigQuery
DATASET = "events"

# Message attributes set by the workbench's publisher. Production producers set none of them: consumers
# treat them as hints (event_type comes from the payload; without event_id the Pub/Sub message_id is the id).
ATTR_EVENT_TYPE = "event_type"
ATTR_EVENT_ID = "event_id"
ATTR_RUN_ID = "run_id"
ATTR_SCHEMA_VERSION = "schema_version"
# Attributes a backfill gives each historical record (it has no Pub/Sub metadata): the object it was read from
# and the 1-based line of the uncompressed object it starts on.
ATTR_SOURCE_OBJECT = "source_object"
ATTR_SOURCE_LINE = "source_line"

# Attributes the pipeline adds to a dead-lettered message (the original attributes are kept beside them).
ATTR_DLQ_REASON = "dlq_reason"
ATTR_DLQ_DETAIL = "dlq_detail"
ATTR_DLQ_SOURCE_MESSAGE_ID = "dlq_source_message_id"
ATTR_DLQ_STAGE = "dlq_stage"

# Loopback ports of the embedded local stack (the official emulators' customary ports where there is one).
LOCAL_HOST = "127.0.0.1"
PUBSUB_EMULATOR_PORT = 8085
BIGQUERY_EMULATOR_PORT = 9050
BIGQUERY_GRPC_OFFSET = 10  # bqemulator's Storage Read/Write gRPC port sits beside its REST port (9050 -> 9060)
GCS_EMULATOR_PORT = 9023
# The variables client libraries read to reach an emulator (PUBSUB: HOST:PORT; the other two: http://HOST:PORT).
PUBSUB_EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"
BIGQUERY_EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"
STORAGE_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"

# S3 (the history backfill's source): the local stack's S3 server (moto's server mode) on moto's customary port, and
# the standard AWS variables that boto3, Beam's s3:// filesystem and the AWS CLI read (AWS_ENDPOINT_URL since
# botocore 1.31: no endpoint flag needed when it is set).
S3_SERVER_PORT = 5000
AWS_ENDPOINT_ENV = "AWS_ENDPOINT_URL"
AWS_ACCESS_KEY_ID_ENV = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
AWS_REGION_ENV = "AWS_DEFAULT_REGION"
# The local S3 server's credentials and region (LOCAL_S3_*) are the S3 client factory's: endpoints/s3.py.
# Where `workbench publish --history` writes and `workbench backfill` reads by default; `workbench up --s3` creates it.
HISTORY_BUCKET = "workbench-history"
# The object metadata a history run stamps its run id in (x-amz-meta-workbench-run-id; boto3 strips the prefix).
S3_RUN_ID_METADATA = "workbench-run-id"

# Where runs (manifests) and local-stack state live; WORKBENCH_HOME overrides.
HOME_ENV_VAR = "WORKBENCH_HOME"
DEFAULT_HOME = ".workbench"


def workbench_home() -> Path:
    """Where runs and the local stack's state live: $WORKBENCH_HOME, else ./.workbench, as an absolute path.

    Absolute because the home is handed to child processes that run in folders of their own (the BigQuery emulator
    runs in stack/work/bigquery: a relative --data-dir put its tables where the next `up` wiped them) and kept in
    state files read from other folders; `~` is expanded since a quoted or `=`-joined value reaches us unexpanded.
    """
    return Path(os.environ.get(HOME_ENV_VAR) or DEFAULT_HOME).expanduser().absolute()


def resolve_project(explicit: str | None, default: str = DEFAULT_PROJECT) -> str:
    """--project, else PUBSUB_PROJECT_ID or GOOGLE_CLOUD_PROJECT, else the local default."""
    if explicit:
        return explicit
    for name in PROJECT_ENV_VARS:
        if os.environ.get(name):
            return os.environ[name]
    return default
