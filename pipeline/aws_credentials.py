"""AWS credentials for a backfill's workers, from Secret Manager: never in the job's options, where the Dataflow
console and API show them to everyone who can view the job.

    --aws_credentials_secret projects/P/secrets/aws-history-reader/versions/latest

The secret's payload is JSON: {"aws_access_key_id": "...", "aws_secret_access_key": "...", and optionally
"aws_session_token": "..."}. Each worker reads it once (Beam's public apache_beam.utils.secret.GcpSecret,
google-cloud-secretmanager) and puts the keys into its environment, where boto3, and so Beam's s3://
filesystem, reads them; the worker's service account needs roles/secretmanager.secretAccessor on the secret.
Without the option nothing changes: boto3 reads the environment, a profile or an instance role as usual.
"""

from __future__ import annotations

import os
import threading

import orjson

_FIELDS = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
}
_loaded: set[str] = set()
_lock = threading.Lock()


def credentials_from(payload: bytes) -> dict[str, str]:
    """The environment a secret's JSON payload stands for; ValueError naming what is missing."""
    try:
        values = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ValueError('the AWS credentials secret is not JSON: store {"aws_access_key_id": ..., ...}') from None
    if not isinstance(values, dict):
        raise ValueError("the AWS credentials secret must be a JSON object")
    missing = [k for k in ("aws_access_key_id", "aws_secret_access_key") if not values.get(k)]
    if missing:
        raise ValueError(f"the AWS credentials secret lacks {', '.join(missing)}")
    return {env: str(values[key]) for key, env in _FIELDS.items() if values.get(key)}


def use_secret(version_name: str | None) -> None:
    """Put the secret's AWS keys into this process's environment, once per process (no-op for None)."""
    if not version_name:
        return
    with _lock:
        if version_name in _loaded:
            return
        from apache_beam.utils.secret import GcpSecret

        os.environ.update(credentials_from(GcpSecret(version_name).get_bytes()))
        _loaded.add(version_name)
