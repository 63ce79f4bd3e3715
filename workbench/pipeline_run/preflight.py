"""Checks that fail in seconds, with the fix, before a run that could not work starts.

Local checks only: the emulators answer, the subscription, dead-letter topic and tables exist, the output root
is writable. Real GCP resources are checked by Dataflow at submission.
"""

from __future__ import annotations

import os
import re
import socket
import uuid

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from endpoints.bigquery import bigquery_client
from endpoints.pubsub import publisher_client, subscriber_client
from eventmodel import rows
from eventmodel.resources import DEFAULT_PROJECT
from pipeline.options import EventPipelineOptions, resource_path
from workbench.errors import WorkbenchError


def preflight(options: PipelineOptions) -> None:
    """Fail in seconds, with the fix, when the run could not work: resources missing, emulators down, root
    unwritable. Local checks only (real GCP resources are checked by Dataflow at submission)."""
    app = options.view_as(EventPipelineOptions)
    project = options.view_as(GoogleCloudOptions).project
    if not project:
        raise WorkbenchError("no project given", "pass --project (locally any id works, e.g. workbench-local)")
    try:
        subscription = resource_path("subscriptions", app.subscription, project)
    except ValueError as exc:
        raise WorkbenchError(str(exc), "pass --project or a full subscription path") from None
    emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
    if emulator:
        check_pubsub(emulator, subscription, resource_path("topics", app.dead_letter_topic, project)
                      if app.dead_letter_topic else None)  # fmt: skip
    check_output_root(app.output_root)
    if app.dataset and app.bigquery_emulator_host:
        check_bigquery(app.bigquery_emulator_host, app.bigquery_project or project, app.dataset)


def check_pubsub(emulator: str, subscription: str | None, dead_letter_topic: str | None) -> None:
    """The emulator answers and the subscription (when given) and dead-letter topic (when given) exist."""
    from google.api_core import exceptions

    host, _, port = emulator.rpartition(":")
    try:  # a closed port is known in milliseconds; the clients would retry UNAVAILABLE for most of a minute
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=3).close()
    except (OSError, ValueError) as exc:
        raise WorkbenchError(
            f"no Pub/Sub emulator answers at {emulator} ({exc})",
            "start the local stack with `workbench up`, or point PUBSUB_EMULATOR_HOST / --emulator at a running one",
        ) from None
    subscriber = subscriber_client(emulator)
    publisher = publisher_client(emulator)
    # Which one is missing is known by the call that said NotFound, not by the words of its message.
    lookups = (
        ("subscription", subscription, lambda: subscriber.get_subscription(
            request={"subscription": subscription}, timeout=5, retry=None)),
        ("dead-letter topic", dead_letter_topic, lambda: publisher.get_topic(
            request={"topic": dead_letter_topic}, timeout=5, retry=None)),
    )  # fmt: skip
    try:
        for missing, name, lookup in lookups:
            if not name:
                continue
            try:
                lookup()
            except exceptions.NotFound:
                raise WorkbenchError(
                    f"the {missing} {name} does not exist on the Pub/Sub emulator at {emulator}",
                    "run `workbench up` (it creates the topic, subscription and dead-letter topic), or pass the right "
                    "--project / --subscription",
                ) from None
    except (exceptions.DeadlineExceeded, exceptions.ServiceUnavailable, exceptions.RetryError) as exc:
        raise WorkbenchError(
            f"no Pub/Sub emulator answers at {emulator} ({type(exc).__name__})",
            "start the local stack with `workbench up`, or point PUBSUB_EMULATOR_HOST / --emulator at a running one",
        ) from None
    finally:
        subscriber.close()
        publisher.stop()


def check_output_root(root: str) -> None:
    """Write and delete a probe file under the root: an unwritable root fails now, not at the first flush."""
    from apache_beam.io.filesystems import FileSystems

    probe = f"{root.rstrip('/')}/.workbench-probe-{uuid.uuid4().hex}"
    try:
        with FileSystems.create(probe) as handle:
            handle.write(b"probe")
        FileSystems.delete([probe])
    except Exception as exc:
        raise WorkbenchError(
            f"cannot write under --output-root {root}: {type(exc).__name__}: {exc}",
            "choose a directory you can write to (or gs://bucket/prefix with access), e.g. --output-root ./output",
        ) from None


def check_bigquery(endpoint: str, project: str, dataset: str) -> None:
    from google.api_core import exceptions

    client = bigquery_client(project, endpoint, location=None)
    tables = [*rows.TABLES.values(), rows.DEAD_LETTER_TABLE]
    try:
        for table in tables:
            client.get_table(f"{project}.{dataset}.{table}", timeout=5, retry=None)
    except exceptions.NotFound:
        raise WorkbenchError(
            f"table {project}.{dataset}.{table} does not exist on the BigQuery emulator at {endpoint}",
            f"create the model first: `workbench bq apply --project {project} --dataset {dataset}`",
        ) from None
    except Exception as exc:
        raise WorkbenchError(
            f"no BigQuery emulator answers at {endpoint}: {type(exc).__name__}",
            "start the local stack with `workbench up`, or pass --dataset '' to run without BigQuery",
        ) from None
    finally:
        client.close()


# ------------------------------------------------------------------------------------------------ Dataflow

# The rules as Google states them, so that a wrong value fails here in one line instead of deep in Beam (an
# invalid project id is a ValueError traceback; an invalid bucket makes Beam try to create a default staging
# bucket over the network first).
# Project ids (gcloud projects create): 6 to 30 lowercase letters, digits or hyphens, starting with a letter, not
# ending with a hyphen; legacy domain-scoped ids carry a "domain:" prefix.
_PROJECT_ID = re.compile(r"([a-z][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]")
# Bucket names (Cloud Storage, "Bucket naming guidelines"): 3-63 lowercase letters, digits, dashes, underscores or
# dots, starting and ending with a letter or digit (up to 222 with dots, each part at most 63), not an IP address,
# not starting with "goog", not containing "google".
_BUCKET = re.compile(r"[a-z0-9][-_.a-z0-9]{1,220}[a-z0-9]")
_IP = re.compile(r"[0-9]+(\.[0-9]+){3}")
# Dataflow regions: continent-area plus a number (us-central1, europe-west1, northamerica-northeast2).
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")


def bucket_problem(url: str) -> str | None:
    """Why a gs:// URL's bucket cannot exist, or None."""
    if not url.startswith("gs://"):
        return "it is not a gs:// URL"
    bucket = url[len("gs://") :].split("/", 1)[0]
    if not _BUCKET.fullmatch(bucket) or any(len(part) > 63 for part in bucket.split(".")):
        return (
            f"bucket {bucket!r} is not a Cloud Storage bucket name (3-63 lowercase letters, digits, dashes, "
            "underscores or dots, starting and ending with a letter or digit)"
        )
    if "." not in bucket and len(bucket) > 63:
        return f"bucket {bucket!r} is longer than 63 characters"
    if _IP.fullmatch(bucket) or bucket.startswith("goog") or "google" in bucket:
        return f"bucket {bucket!r} is reserved (an IP address, a goog prefix or google in the name)"
    return None


def check_dataflow(options: PipelineOptions) -> None:
    """What Dataflow needs and would refuse, checked before Beam sees it: a real project, a region, a gs:// temp
    location and a gs:// output root (the workers cannot write to this machine's disk)."""
    cloud = options.view_as(GoogleCloudOptions)
    app = options.view_as(EventPipelineOptions)
    project = cloud.project or ""
    if not project or project == DEFAULT_PROJECT:
        raise WorkbenchError(
            "Dataflow needs your Google Cloud project, not the local default" if project else "no project given",
            "pass --project YOUR-PROJECT-ID (or set GOOGLE_CLOUD_PROJECT)",
        )
    if not _PROJECT_ID.fullmatch(project):
        raise WorkbenchError(
            f"--project {project!r} is not a Google Cloud project id: 6 to 30 lowercase letters, digits or hyphens, "
            "starting with a letter and not ending with a hyphen",
            "pass the project's id (`gcloud projects list` shows it), not its name or number",
        )
    if not cloud.region:
        raise WorkbenchError("Dataflow needs --region", "pass the region to run in, e.g. --region europe-west1")
    if not _REGION.fullmatch(cloud.region):
        raise WorkbenchError(
            f"--region {cloud.region!r} is not a Google Cloud region (like us-central1 or europe-west1)",
            "pass a region name (`gcloud dataflow regions list` or the Dataflow locations page lists them)",
        )
    temp = cloud.temp_location or cloud.staging_location
    if not temp:
        raise WorkbenchError(
            "Dataflow needs --temp_location gs://BUCKET/tmp",
            "pass a gs:// folder in a bucket the job's service account can write (docs/pipeline.md, runbook)",
        )
    for flag, url in (("--temp_location", cloud.temp_location), ("--staging_location", cloud.staging_location),
                      ("--output_root", app.output_root)):  # fmt: skip
        problem = bucket_problem(url) if url else None
        if problem:
            raise WorkbenchError(
                f"{flag} {url}: {problem}",
                "on Dataflow every location is gs://BUCKET/PATH in an existing bucket; the workers cannot write to "
                "this machine's disk"
                if flag == "--output_root"
                else "pass gs://BUCKET/PATH in an existing bucket",
            )
