"""Beam's BigQuery IO pointed at the local BigQuery emulator, for `workbench exec`.

Beam's Python SDK has no setting for this: its apitools client has a fixed base URL and no endpoint option, and its
insert client is built without one (apache/beam #23598, open; #28149 and #28841, which asked the same, were closed
by #32153, which added an endpoint option to the Java SDK only: Beam 2.77's Python SDK has none, neither in
apache_beam/options nor in io/gcp/bigquery*.py). Every hook below therefore replaces a
private part of Beam 2.77 (read from apache_beam/io/gcp/bigquery_tools.py and bigquery_file_loads.py);
tests/workbench/exec/test_beam_redirect_hooks.py pins each one, so a Beam upgrade that moves one fails there by
name instead of as a pipeline that writes to real BigQuery or hangs asking for credentials.

- `BigqueryV2` (apitools: tables get/insert, load and copy jobs, job polling): its class attribute BASE_URL is the
  only place the URL lives, and `get_credentials=False` keeps it from starting oauth2client's interactive browser
  flow when there are no credentials (the pipeline would hang).
- `bigquery_tools.gcp_bigquery` (Beam's insertAll client, google-cloud-bigquery): Beam calls
  `gcp_bigquery.Client(client_info=...)` with neither endpoint nor credentials. The module global is replaced by a
  proxy whose Client adds the emulator's endpoint and anonymous credentials; google-cloud-bigquery itself is left
  alone, so the user's own clients are unchanged.
- `bigquery_file_loads.file_prefix_generator` (FILE_LOADS' temp files): Beam insists on a gs:// temp location.
  Locally a directory works as well (the emulator runs on the same machine and loads a local path), so a local
  --temp_location or custom_gcs_temp_location is accepted and made absolute (the emulator runs in another folder).
- `BigqueryV2.DatasetsService.List`: bqemulator ignores datasets.list's label `filter`, and ReadFromBigQuery's
  cleanup step (`_clean_up_beam_labelled_temporary_datasets`) deletes, with their contents, every dataset the
  filtered list returns: against the bare emulator one DIRECT_READ deleted every dataset of the project (measured).
  The filter is applied here, on the answer, as BigQuery applies it.
- `bigquery.bq_storage` (ReadFromBigQuery's DIRECT_READ client, google-cloud-bigquery-storage): built with neither
  endpoint nor credentials; the proxy's BigQueryReadClient talks to the emulator's Storage Read gRPC service over
  a plain loopback channel.
- `BigQueryWrapper.perform_load_job`: bqemulator reads gs:// only from a folder of its own (BQEMU_GCS_LOCAL_ROOT),
  not from the GCS emulator. With a gs:// temp location the load's files are copied from the GCS emulator (through
  Beam's own FileSystems) into a local folder, and the job loads those.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import threading
from typing import Any
from urllib.parse import urlsplit

from eventmodel.resources import BIGQUERY_GRPC_OFFSET
from workbench.beam_redirect import limits

STORAGE_ENV = "STORAGE_EMULATOR_HOST"  # what google-cloud-storage and Beam's gs:// filesystem read
_staging: list[str] = []
_staging_lock = threading.Lock()


def api_base_url(endpoint: str) -> str:
    """The apitools base URL for an emulator at http://HOST:PORT (as BIGQUERY_EMULATOR_HOST gives it)."""
    return endpoint.rstrip("/") + "/bigquery/v2/"


def local_file_prefix(base: str | None) -> str | None:
    """FILE_LOADS' temp base as the local run can use it: gs:// unchanged, a local folder made absolute, None when
    there is none at all (the caller says what to pass)."""
    if not base:
        return None
    if "://" in base:
        return base
    return os.path.abspath(os.path.expanduser(base))


def redirect(endpoint: str, project: str | None) -> None:
    """Install every hook (idempotent): Beam's BigQuery IO of this process then talks to the emulator at
    `endpoint` (http://HOST:PORT), anonymously; `project` is the insert client's default project."""
    from apache_beam.io.gcp import bigquery_file_loads, bigquery_tools
    from apache_beam.io.gcp.internal.clients.bigquery import bigquery_v2_client

    v2 = bigquery_v2_client.BigqueryV2
    if getattr(v2, "_workbench_redirect", None) == endpoint:
        return
    v2.BASE_URL = api_base_url(endpoint)
    original_init = getattr(v2, "_workbench_original_init", v2.__init__)

    def __init__(self, url="", credentials=None, get_credentials=True, **kwargs):
        original_init(self, url=url or v2.BASE_URL, credentials=credentials, get_credentials=False, **kwargs)

    v2._workbench_original_init = original_init
    v2.__init__ = __init__
    v2._workbench_redirect = endpoint

    datasets = v2.DatasetsService
    original_list = getattr(datasets, "_workbench_original_list", datasets.List)

    @functools.wraps(original_list)  # apitools reads the method's config from the function (method_config)
    def List(self, request, global_params=None):
        response = original_list(self, request, global_params=global_params)
        wanted = getattr(request, "filter", None)
        if wanted and response.datasets:
            response.datasets = [d for d in response.datasets if label_filter_matches(wanted, _labels(d))]
        return response

    datasets._workbench_original_list = original_list
    datasets.List = List

    real = getattr(bigquery_tools.gcp_bigquery, "_workbench_real", bigquery_tools.gcp_bigquery)
    bigquery_tools.gcp_bigquery = _EmulatorBigQuery(real, endpoint, project)

    original_prefix = getattr(
        bigquery_file_loads, "_workbench_original_prefix", bigquery_file_loads.file_prefix_generator
    )

    def file_prefix_generator(with_validation=True, pipeline_gcs_location=None, temp_location=None):
        from apache_beam.options.value_provider import StaticValueProvider

        def base_now() -> str:
            custom = pipeline_gcs_location.get() if pipeline_gcs_location is not None else None
            base = local_file_prefix(custom or temp_location)
            if base is None:
                limits.refuse(limits.FILE_LOADS_WITHOUT_TEMP)
            if base.startswith("gs://") and not os.environ.get(STORAGE_ENV):
                limits.refuse(limits.GS_WITHOUT_GCS_EMULATOR.format(base=base))
            return base

        if pipeline_gcs_location is None or isinstance(pipeline_gcs_location, StaticValueProvider):
            base_now()  # called where the pipeline is built: refuse there, in the user's own thread

        def generate(element):
            base = base_now()
            # Beam's own generator, told not to insist on gs:// (its only check) and given the absolute base.
            return original_prefix(False, StaticValueProvider(str, base), base)(element)

        return generate

    bigquery_file_loads._workbench_original_prefix = original_prefix
    bigquery_file_loads.file_prefix_generator = file_prefix_generator

    from apache_beam.io.gcp import bigquery as beam_bigquery

    storage = getattr(beam_bigquery, "bq_storage", None)
    if storage is not None:  # DIRECT_READ's client: the emulator's Storage Read gRPC service
        real_storage = getattr(storage, "_workbench_real", storage)
        beam_bigquery.bq_storage = _EmulatorStorage(real_storage, storage_read_address(endpoint))

    wrapper = bigquery_tools.BigQueryWrapper
    original_load = getattr(wrapper, "_workbench_original_load", wrapper.perform_load_job)

    def perform_load_job(self, destination, job_id, source_uris=None, *args, **kwargs):
        if source_uris:
            source_uris = [_local_copy(uri) if uri.startswith("gs://") else uri for uri in source_uris]
        return original_load(self, destination, job_id, source_uris, *args, **kwargs)

    wrapper._workbench_original_load = original_load
    wrapper.perform_load_job = perform_load_job


class _EmulatorBigQuery:
    """Stands in for the google.cloud.bigquery module inside Beam's bigquery_tools: the same module, except that
    Client() goes to the emulator anonymously."""

    def __init__(self, real: Any, endpoint: str, project: str | None) -> None:
        self._workbench_real = real
        self._endpoint = endpoint
        self._project = project

    def Client(self, *args: Any, **kwargs: Any) -> Any:
        from google.auth.credentials import AnonymousCredentials

        kwargs.setdefault("project", self._project)
        kwargs.setdefault("credentials", AnonymousCredentials())
        kwargs.setdefault("client_options", {"api_endpoint": self._endpoint})
        return self._workbench_real.Client(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._workbench_real, name)


def label_filter_matches(expression: str, labels: dict[str, str]) -> bool:
    """Whether a dataset with `labels` passes datasets.list's `filter`: `labels.NAME[:VALUE]` terms joined by
    spaces, all of which must hold (https://cloud.google.com/bigquery/docs/filtering-labels; datasets.list:
    https://cloud.google.com/bigquery/docs/reference/rest/v2/datasets/list)."""
    for term in expression.split():
        if not term.startswith("labels."):
            return False  # a filter this does not understand keeps nothing (Beam deletes what is listed)
        name, has_value, value = term[len("labels.") :].partition(":")
        if name not in labels or (has_value and labels[name] != value):
            return False
    return True


def _labels(dataset: Any) -> dict[str, str]:
    entries = getattr(getattr(dataset, "labels", None), "additionalProperties", None) or []
    return {entry.key: entry.value for entry in entries}


def storage_read_address(endpoint: str) -> str:
    """HOST:PORT of the emulator's Storage Read gRPC service, beside its REST port (services.bigquery)."""
    parts = urlsplit(endpoint)
    return f"{parts.hostname}:{(parts.port or 80) + BIGQUERY_GRPC_OFFSET}"


class _EmulatorStorage:
    """Stands in for google.cloud.bigquery_storage_v1 inside Beam's bigquery module: BigQueryReadClient() goes to
    the emulator over a plain loopback channel (the emulator serves no TLS), anonymously."""

    def __init__(self, real: Any, address: str) -> None:
        self._workbench_real = real
        self._address = address

    def BigQueryReadClient(self, *args: Any, **kwargs: Any) -> Any:
        import grpc
        from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

        if "transport" not in kwargs:
            channel = grpc.insecure_channel(self._address, options=[("grpc.max_receive_message_length", -1)])
            kwargs["transport"] = BigQueryReadGrpcTransport(channel=channel)
        return self._workbench_real.BigQueryReadClient(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._workbench_real, name)


def _local_copy(uri: str) -> str:
    """A gs:// load file copied out of the GCS emulator into a local folder the BigQuery emulator can read."""
    from apache_beam.io.filesystems import FileSystems

    with _staging_lock:
        if not _staging:
            _staging.append(tempfile.mkdtemp(prefix="workbench-exec-loads-"))
            atexit.register(shutil.rmtree, _staging[0], ignore_errors=True)
    target = os.path.join(_staging[0], uri[len("gs://") :])
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with FileSystems.open(uri, compression_type="uncompressed") as source, open(target, "wb") as sink:
        shutil.copyfileobj(source, sink, 1 << 20)
    return target


def guard_transforms(endpoint: str | None, streaming_default: bool = True) -> None:
    """Refuse, where the pipeline is built, the BigQuery IO the local stack cannot serve (limits' messages):
    any BigQuery IO without an emulator, STORAGE_WRITE_API (Java), ReadFromBigQuery's EXPORT method."""
    from apache_beam.io.gcp import bigquery as beam_bigquery

    write = beam_bigquery.WriteToBigQuery
    if getattr(write.expand, "_workbench_exec", False):
        return
    original_write = write.expand
    original_read = beam_bigquery.ReadFromBigQuery.expand

    def write_expand(self, pcoll):
        from apache_beam.options.pipeline_options import StandardOptions

        streaming = pcoll.pipeline.options.view_as(StandardOptions).streaming
        if limits.write_method(self, streaming) == "STORAGE_WRITE_API":
            limits.refuse(limits.STORAGE_WRITE_API)
        if not endpoint:
            limits.refuse(limits.NO_BIGQUERY)
        return original_write(self, pcoll)

    def storage_expand(self, pcoll):
        limits.refuse(limits.STORAGE_WRITE_API)

    def read_expand(self, pcoll):
        if not endpoint:
            limits.refuse(limits.NO_BIGQUERY)
        if str(getattr(self, "method", "EXPORT")) == "EXPORT":
            limits.refuse(limits.READ_FROM_BIGQUERY_EXPORT)
        return original_read(self, pcoll)

    for function in (write_expand, storage_expand, read_expand):
        function._workbench_exec = True
    write.expand = write_expand
    beam_bigquery.StorageWriteToBigQuery.expand = storage_expand
    beam_bigquery.ReadFromBigQuery.expand = read_expand
