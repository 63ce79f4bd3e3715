"""Resource-name rules of Pub/Sub (projects/{project}/topics/{id}, projects/{project}/subscriptions/{id}).

The rules follow the public documentation: an id is 3-255 characters, starts with a letter, uses letters, digits
and `-_.~+%`, and must not start with `goog`. Pure functions, so they are unit-tested without a server.
"""

from __future__ import annotations

import re

from emulator.pubsub.errors import invalid_argument

_ID = re.compile(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")
_PROJECT = re.compile(r"[A-Za-z0-9\-_.:]+")

# The topic a subscription points at after its topic was deleted (what the real service reports).
DELETED_TOPIC = "_deleted-topic_"


def _check(name: str, collection: str, field: str) -> tuple[str, str]:
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != collection or not _PROJECT.fullmatch(parts[1]):
        raise invalid_argument(f"Invalid [{field}] name: (name={name})")
    resource_id = parts[3]
    if not _ID.fullmatch(resource_id) or resource_id.lower().startswith("goog"):
        raise invalid_argument(f"Invalid [{field}] name: (name={name})")
    return parts[1], resource_id


def topic_name(name: str) -> tuple[str, str]:
    """Validate a full topic name; returns (project, topic id) or raises INVALID_ARGUMENT."""
    return _check(name, "topics", "topics")


def subscription_name(name: str) -> tuple[str, str]:
    """Validate a full subscription name; returns (project, subscription id) or raises INVALID_ARGUMENT."""
    return _check(name, "subscriptions", "subscriptions")


def project_name(name: str) -> str:
    """Validate `projects/{project}`; returns the project id."""
    parts = name.split("/")
    if len(parts) != 2 or parts[0] != "projects" or not _PROJECT.fullmatch(parts[1]):
        raise invalid_argument(f"Invalid [projects] name: (name={name})")
    return parts[1]


def snapshot_name(name: str) -> tuple[str, str]:
    """Validate a full snapshot name; returns (project, snapshot id) or raises INVALID_ARGUMENT."""
    return _check(name, "snapshots", "snapshots")
