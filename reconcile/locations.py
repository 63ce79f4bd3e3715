"""Where reconcile's BigQuery engine may read: its scratch dataset beside the events dataset, and a gs:// tree in a
bucket colocated with them, checked before any query (cloud.google.com/bigquery/docs/locations, "Query Cloud Storage
data"). A pure rule (bucket_colocated) and the reads that feed it.
"""

from __future__ import annotations

from typing import Any

from reconcile.errors import ReconcileError

# BigQuery's multi-regions and the one region in each whose buckets an external table reads without transfer
# charges; every other location is a region. cloud.google.com/bigquery/docs/locations, "Location considerations",
# "Query Cloud Storage data".
MULTI_REGION_HOME = {"us": "us-central1", "eu": "europe-west4"}
# Cloud Storage's predefined dual-regions and their regions (cloud.google.com/storage/docs/locations,
# "Predefined dual-regions"); a configurable dual-region names its regions itself (the bucket's data_locations).
PREDEFINED_DUAL_REGIONS = {
    "asia1": ("asia-northeast1", "asia-northeast2"),
    "eur4": ("europe-north1", "europe-west4"),
    "nam4": ("us-central1", "us-east1"),
}


def bucket_colocated(
    dataset_location: str, bucket_location: str, bucket_type: str, data_locations: tuple[str, ...] = ()
) -> bool:
    """Whether BigQuery reads a bucket's objects for a dataset's external table without data transfer charges.

    The rule of cloud.google.com/bigquery/docs/locations ("Query Cloud Storage data"): a regional dataset wants
    its own region, or a dual-region holding it; a US multi-region dataset wants us-central1 or a dual-region
    holding it (NAM4), an EU one europe-west4 or a dual-region holding it (EUR4). Any other bucket, a multi-region
    bucket included ("must be in a dual-region that includes Iowa"), and even a region inside the dataset's
    multi-region (us-west1 for US), costs data transfer on every query.
    """
    home = MULTI_REGION_HOME.get(dataset_location.lower(), dataset_location.lower())
    kind = bucket_type.lower()
    if kind == "region":
        regions = {bucket_location.lower()}
    elif kind == "dual-region":
        regions = {r.lower() for r in data_locations} or set(PREDEFINED_DUAL_REGIONS.get(bucket_location.lower(), ()))
    else:  # multi-region
        regions = set()
    return home in regions


def check_locations(target: Any, session: Any) -> None:
    """The BigQuery engine's locations, before any query: the scratch dataset where the events dataset is (a job
    reads and writes datasets of its own location only), and a gs:// tree read through external tables in a
    bucket colocated with them. ReconcileError (exit 2) naming both locations otherwise."""
    from google.api_core.exceptions import NotFound

    if not session.location:
        return
    scratch = f"{target.project}.{target.scratch_dataset}"
    try:
        scratch_location = session.client.get_dataset(scratch).location
    except NotFound:
        scratch_location = None  # BigQueryEngine creates it in session.location
    if scratch_location and scratch_location.lower() != session.location.lower():
        raise ReconcileError(
            f"the scratch dataset {scratch} is in {scratch_location} and the events dataset "
            f"{target.project}.{target.dataset} in {session.location}: a query job runs in one location and "
            "cannot join them",
            f"create a scratch dataset in {session.location} (`bq mk --location={session.location} -d "
            f"{target.project}:{target.scratch_dataset}_{session.location.lower().replace('-', '_')}`) and pass it "
            "with --scratch-dataset",
        )
    if target.external():
        bucket = target.output_root.split("://", 1)[1].split("/", 1)[0]
        location, kind, regions = bucket_location(target, bucket)
        if not bucket_colocated(session.location, location, kind, regions):
            where = f"{location} ({kind}{': ' + ', '.join(regions) if regions else ''})"
            home = MULTI_REGION_HOME.get(session.location.lower(), session.location.lower())
            raise ReconcileError(
                f"the bucket gs://{bucket} is in {where} and the dataset {target.project}.{target.dataset or scratch} "
                f"in {session.location}: BigQuery would read the tree through external tables across locations, "
                "at data-transfer prices on every poll (cloud.google.com/bigquery/docs/locations)",
                f"reconcile with --engine duckdb (it reads the tree outside BigQuery), or keep the output in a "
                f"bucket in {home} or a dual-region with it",
            )


def bucket_location(target: Any, bucket: str) -> tuple[str, str, tuple[str, ...]]:
    """(location, location type, regions of a configurable dual-region) of a bucket, read through the GCS client
    (needs storage.buckets.get: roles/storage.legacyBucketReader or a custom role, docs/reconcile.md)."""
    from google.api_core.exceptions import GoogleAPICallError

    client = target.storage_client()
    try:
        found = client.get_bucket(bucket)
    except GoogleAPICallError as exc:
        raise ReconcileError(
            f"cannot read the location of the bucket gs://{bucket}: {getattr(exc, 'message', exc)}",
            "grant storage.buckets.get on it (roles/storage.legacyBucketReader), or reconcile with --engine duckdb",
        ) from None
    return found.location or "", found.location_type or "", tuple(getattr(found, "data_locations", None) or ())
