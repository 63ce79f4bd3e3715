"""pipeline.bigquery_errors: every reason of BigQuery's error table, read from each place an error arrives.

The expected kinds are written out here, not read from the module, so a changed mapping fails a test. The
errors are google-cloud-bigquery's and google.api_core's own objects (a job built from an API resource, an
exception built from a real requests.Response), not look-alikes.
"""

from __future__ import annotations

import concurrent.futures

import pytest
import requests
from google.api_core import exceptions as api
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from pipeline import bigquery_errors as E

# reason -> (its HTTP status on https://cloud.google.com/bigquery/docs/error-messages, or the one
# google-cloud-bigquery uses where the page names none; what the writers do)
EXPECTED = {
    "invalid": (400, E.CONTENT),
    "invalidQuery": (400, E.CONTENT),
    "notImplemented": (501, E.CONTENT),
    "resourcesExceeded": (400, E.CONTENT),
    "attributeError": (400, E.CONTENT),
    "badRequest": (400, E.CONTENT),
    "billingTierLimitExceeded": (400, E.CONTENT),
    "quotaExceeded": (403, E.THROTTLED),
    "rateLimitExceeded": (403, E.THROTTLED),
    "jobRateLimitExceeded": (400, E.THROTTLED),
    "backendError": (503, E.TRANSIENT),
    "internalError": (500, E.TRANSIENT),
    "badGateway": (502, E.TRANSIENT),
    "jobBackendError": (400, E.TRANSIENT),
    "jobInternalError": (400, E.TRANSIENT),
    "tableUnavailable": (400, E.TRANSIENT),
    "timeout": (400, E.TRANSIENT),
    "resourceInUse": (400, E.TRANSIENT),
    "stopped": (200, E.TRANSIENT),
    "accessDenied": (403, E.FATAL),
    "billingNotEnabled": (403, E.FATAL),
    "blocked": (403, E.FATAL),
    "policyViolation": (403, E.FATAL),
    "notFound": (404, E.FATAL),
    "duplicate": (409, E.FATAL),
    "responseTooLarge": (403, E.FATAL),
    "invalidUser": (400, E.FATAL),
    "proxyAuthenticationRequired": (407, E.FATAL),
}


def _response(status: int, body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.request = requests.Request("POST", "http://127.0.0.1:9/bigquery/v2/projects/p/insertAll").prepare()
    return response


def _body(status: int, reason: str) -> bytes:
    return (
        b'{"error": {"code": %d, "message": "m", "errors": [{"domain": "global", "reason": "%s", "message": "m"}]}}'
        % (status, reason.encode())
    )


def _failed_load_job(error_result: dict, errors: list[dict] | None = None) -> bigquery.LoadJob:
    client = bigquery.Client(project="p", credentials=AnonymousCredentials())
    resource = {
        "jobReference": {"projectId": "p", "jobId": "workbench_load_x_0", "location": "EU"},
        "configuration": {"load": {"destinationTable": {"projectId": "p", "datasetId": "d", "tableId": "t"}}},
        "status": {"state": "DONE", "errorResult": error_result, "errors": errors or [error_result]},
    }
    return bigquery.LoadJob.from_api_repr(resource, client)


@pytest.mark.parametrize("reason", sorted(EXPECTED))
def test_each_reason_of_the_error_table_from_an_api_exception(reason):
    status, expected = EXPECTED[reason]
    exc = api.from_http_status(status if status >= 400 else 500, "m", errors=[{"reason": reason, "message": "m"}])
    assert E.kind(exc) == expected


@pytest.mark.parametrize("reason", sorted(EXPECTED))
def test_each_reason_from_an_http_response_the_client_library_turned_into_an_exception(reason):
    status, expected = EXPECTED[reason]
    status = status if status >= 400 else 500
    exc = api.from_http_response(_response(status, _body(status, reason)))
    assert E.kind(exc) == expected


@pytest.mark.parametrize("reason", sorted(EXPECTED))
def test_each_reason_from_a_failed_load_jobs_error_result_and_from_its_result_exception(reason):
    _, expected = EXPECTED[reason]
    job = _failed_load_job({"reason": reason, "message": "m"})
    assert E.kind(job) == expected
    assert E.kind(job.error_result) == expected
    assert E.kind(job.errors) == expected
    with pytest.raises(Exception) as raised:  # the job is DONE: result() raises without a request
        job.result(timeout=1)
    assert E.kind(raised.value) == expected


def test_a_quota_error_is_throttled_though_its_status_is_a_403_like_access_denied():
    quota = api.Forbidden("Quota exceeded", errors=[{"reason": "quotaExceeded"}])
    denied = api.Forbidden("Access Denied", errors=[{"reason": "accessDenied"}])
    assert (E.kind(quota), E.kind(denied)) == (E.THROTTLED, E.FATAL)


def test_a_load_jobs_rate_limit_is_throttled_though_the_client_maps_it_to_429_and_quota_to_403():
    for reason, status in (("rateLimitExceeded", 429), ("quotaExceeded", 403)):
        job = _failed_load_job({"reason": reason, "message": "Exceeded rate limits: too many table update operations"})
        with pytest.raises(api.GoogleAPICallError) as raised:
            job.result(timeout=1)
        assert raised.value.code == status
        assert E.kind(raised.value) == E.THROTTLED


def test_the_most_cautious_reason_wins():
    assert E.kind([{"reason": "invalid"}, {"reason": "quotaExceeded"}]) == E.THROTTLED
    assert E.kind([{"reason": "invalid"}, {"reason": "notFound"}]) == E.FATAL
    assert E.kind([{"reason": "stopped"}, {"reason": "invalid"}]) == E.CONTENT
    assert E.kind([{"reason": "stopped"}]) == E.TRANSIENT
    job = _failed_load_job({"reason": "invalid", "message": "m"}, [{"reason": "rateLimitExceeded"}])
    assert E.kind(job) == E.THROTTLED


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, E.CONTENT),
        (413, E.CONTENT),
        (401, E.FATAL),
        (403, E.FATAL),
        (404, E.FATAL),
        (409, E.FATAL),
        (408, E.TRANSIENT),
        (429, E.THROTTLED),
        (500, E.TRANSIENT),
        (502, E.TRANSIENT),
        (503, E.TRANSIENT),
        (504, E.TRANSIENT),
    ],
)
def test_a_status_without_a_reason_decides_by_its_class(status, expected):
    assert E.kind(api.from_http_status(status, "no body")) == expected
    assert E.kind(api.from_http_response(_response(status, b"<html>a proxy page</html>"))) == expected


def test_an_unknown_reason_falls_back_to_the_status():
    assert E.kind(api.from_http_status(429, "m", errors=[{"reason": "somethingNew"}])) == E.THROTTLED
    assert E.kind(api.from_http_status(503, "m", errors=[{"reason": "somethingNew"}])) == E.TRANSIENT
    assert E.kind([{"reason": "somethingNew"}]) == E.TRANSIENT


def test_network_errors_and_timeouts_are_transient():
    assert E.kind(requests.exceptions.ConnectionError("refused")) == E.TRANSIENT
    assert E.kind(requests.exceptions.ReadTimeout("slow")) == E.TRANSIENT
    assert E.kind(ConnectionResetError()) == E.TRANSIENT
    assert E.kind(concurrent.futures.TimeoutError()) == E.TRANSIENT


def test_a_retry_error_is_classified_by_its_cause():
    cause = api.Forbidden("Quota exceeded", errors=[{"reason": "quotaExceeded"}])
    assert E.kind(api.RetryError("Deadline of 30 s exceeded", cause)) == E.THROTTLED


def test_a_response_body_is_read_when_the_exception_carries_no_errors():
    class Raw(Exception):  # an HTTP error of another library, with only the response
        def __init__(self, response):
            super().__init__("raw")
            self.response = response

    assert E.kind(Raw(_response(403, _body(403, "rateLimitExceeded")))) == E.THROTTLED
    assert E.kind(Raw(_response(404, b""))) == E.FATAL


def test_reasons_lists_the_main_reason_first():
    job = _failed_load_job({"reason": "invalid", "message": "m"}, [{"reason": "invalid"}, {"reason": "stopped"}])
    assert E.reasons(job) == ["invalid", "invalid", "stopped"]
    assert E.reasons({"error": {"errors": [{"reason": "quotaExceeded"}]}}) == ["quotaExceeded"]
    assert E.reasons(None) == [] and E.reasons("quotaExceeded") == []


def test_describe_says_quota_for_a_throttled_error():
    assert "quota" in E.describe(api.Forbidden("m", errors=[{"reason": "rateLimitExceeded"}]))


def test_a_call_the_workbench_refuses_itself_is_fatal_not_retried():
    """Strict mode (endpoints.bigquery_strict) refuses a job call that names no location: a mistake in the code,
    which no retry mends; retried, it would only turn into dead letters after the budget."""
    from endpoints.bigquery_strict import StrictModeError

    assert E.kind(StrictModeError("load_table_from_file names no location", "pass location=")) == E.FATAL
