"""What a BigQuery error means for the rows being written: one classifier for both write paths.

    from pipeline import bigquery_errors as E

    E.kind(exc)                      # an exception a client call raised (google.api_core, requests, a timeout)
    E.kind(job)                      # a finished job: its error_result, then its errors
    E.kind(job.error_result)         # one ErrorProto dict {"reason": ..., "message": ...}
    E.kind(row_errors)               # a list of ErrorProto dicts (one row of an insertAll answer, a job's errors)

Each answer is one of four kinds, and each kind has one policy in every writer (pipeline.bigquery's streaming
inserts, pipeline.bigquery_load's load jobs, the dead-letter table):

- CONTENT: the rows are at fault (`invalid`, `invalidQuery`, `notImplemented`, `resourcesExceeded`, or a 4xx
  with no better reason). The same rows fail again; smaller requests may pass. Split the batch until the row at
  fault stands alone, and dead-letter that row.
- THROTTLED: a quota or rate limit (`quotaExceeded`, `rateLimitExceeded`, `jobRateLimitExceeded`, HTTP 429).
  The rows are fine and the project is asking too fast. Never split (a failed load job counts against the same
  quotas, so splitting turns one quota error into thousands); back off longer than for an outage
  (THROTTLED_INITIAL_S .. THROTTLED_CAP_S), within the sink's retry budget, then dead-letter with a detail that
  says quota.
- TRANSIENT: the service or the network (`backendError`, `internalError`, `badGateway`, `jobBackendError`,
  `jobInternalError`, `tableUnavailable`, `timeout`, `stopped`, any 5xx, 408, a connection error, a timeout, an
  exception of no known kind). Retry the same request with backoff within the budget.
- FATAL: nothing the rows or time can change (`accessDenied`, `notFound`, `billingNotEnabled`, `blocked`,
  `policyViolation`, `duplicate`, `responseTooLarge`, `invalidUser`, or a 401/403/404/409 with no better
  reason): a person must act (grant a role, create the table). Do not split; dead-letter at once with a detail
  naming the cause, so the original bytes wait in the dead-letter topic for a re-drive. This keeps what the
  pipeline has always done with a 404 (a missing table): retrying it for the whole budget would hold every
  batch of the stream for that long and still end in the dead letter.

The reasons and their HTTP codes are BigQuery's error table,
https://cloud.google.com/bigquery/docs/error-messages (quota errors: 403 with reason quotaExceeded or
rateLimitExceeded, https://cloud.google.com/bigquery/docs/troubleshoot-quotas). google-cloud-bigquery reads the
same reasons: its retry predicate retries rateLimitExceeded, backendError, internalError and badGateway
(google/cloud/bigquery/retry.py `_RETRYABLE_REASONS`) and its job retry adds jobBackendError,
jobInternalError and jobRateLimitExceeded (`job_retry_reasons`); it maps a job's rateLimitExceeded to 429 and
quotaExceeded to 403 (job/base.py `_ERROR_REASON_TO_EXCEPTION`), which is why the reason, not the status, decides.

When several reasons are present (a job's error_result and its errors, one row's errors), the most cautious
wins: THROTTLED, then FATAL, then CONTENT, then TRANSIENT; so a quota error never splits a batch, and a row
that is `invalid` and `stopped` is still at fault.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from endpoints.errors import FixableError

CONTENT = "content"
THROTTLED = "throttled"
TRANSIENT = "transient"
FATAL = "fatal"
KINDS = (CONTENT, THROTTLED, TRANSIENT, FATAL)

# Back-off for THROTTLED: BigQuery's SLA asks for at least 1 s after an error, doubling up to 32 s
# (https://cloud.google.com/bigquery/sla, "Back-off Requirements").
THROTTLED_INITIAL_S = 1.0
THROTTLED_CAP_S = 32.0

REASONS: dict[str, str] = {
    # the rows or the request are refused for what they are
    "invalid": CONTENT,
    "invalidQuery": CONTENT,
    "notImplemented": CONTENT,  # Beam's rule too (bigquery_tools.RetryStrategy: never retried)
    "resourcesExceeded": CONTENT,  # the request needs more than a job may use: a smaller one may pass
    "attributeError": CONTENT,
    "badRequest": CONTENT,
    "billingTierLimitExceeded": CONTENT,
    # asked too fast or too much: back off
    "quotaExceeded": THROTTLED,
    "rateLimitExceeded": THROTTLED,
    "jobRateLimitExceeded": THROTTLED,
    # the service or the network: retry
    "backendError": TRANSIENT,
    "internalError": TRANSIENT,
    "badGateway": TRANSIENT,
    "jobBackendError": TRANSIENT,
    "jobInternalError": TRANSIENT,
    "tableUnavailable": TRANSIENT,
    "timeout": TRANSIENT,
    "resourceInUse": TRANSIENT,
    "stopped": TRANSIENT,  # insertAll: not inserted because another row of the request failed
    # a person must act
    "accessDenied": FATAL,
    "billingNotEnabled": FATAL,
    "blocked": FATAL,
    "policyViolation": FATAL,
    "notFound": FATAL,
    "duplicate": FATAL,
    "responseTooLarge": FATAL,
    "invalidUser": FATAL,
    "proxyAuthenticationRequired": FATAL,
}

_PRECEDENCE = (THROTTLED, FATAL, CONTENT, TRANSIENT)


def kind_of_reason(reason: str | None) -> str | None:
    """The kind of one ErrorProto reason, or None for a reason BigQuery's table does not name."""
    return REASONS.get(reason) if reason else None


def kind_of_status(status: int | None) -> str:
    """The kind of an HTTP status that came without a known reason."""
    if status == 429:
        return THROTTLED
    if status in (401, 403, 404, 407, 409):
        return FATAL
    if status is not None and 400 <= status < 500 and status != 408:
        return CONTENT
    return TRANSIENT  # 408, 5xx, no status at all (a network error, a timeout)


def reasons(error: Any) -> list[str]:
    """Every reason an error carries, the main one first: from an exception's `errors` (google.api_core) or its
    HTTP response body, a job's `error_result` and `errors`, one ErrorProto dict, or a list of them."""
    if error is None:
        return []
    if isinstance(error, Mapping):
        inner = error.get("error")  # a whole response body: {"error": {"errors": [...], "code": ...}}
        if isinstance(inner, Mapping):
            return reasons(inner.get("errors") or [])
        reason = error.get("reason")
        return [reason] if isinstance(reason, str) and reason else []
    if isinstance(error, (str, bytes)):
        return []
    if isinstance(error, BaseException):
        found = reasons(_list(getattr(error, "errors", None)))
        return found or reasons(_body(getattr(error, "response", None)))
    if hasattr(error, "error_result"):  # a job (google.cloud.bigquery LoadJob, QueryJob ...)
        return reasons(getattr(error, "error_result", None)) + reasons(_list(getattr(error, "errors", None)))
    if isinstance(error, Iterable):
        return [reason for item in error for reason in reasons(item)]
    return []


def kind(error: Any) -> str:
    """CONTENT, THROTTLED, TRANSIENT or FATAL (see the module's docstring) for an exception, a job, an ErrorProto
    dict or a list of them. Pure: it reads what the error carries and calls nothing."""
    kinds = {kind_of_reason(reason) for reason in reasons(error)} - {None}
    for candidate in _PRECEDENCE:
        if candidate in kinds:
            return candidate
    if isinstance(error, FixableError):  # the workbench refused the call itself (strict mode): no retry mends it
        return FATAL
    if isinstance(error, BaseException):
        cause = getattr(error, "cause", None)  # google.api_core RetryError: the last error it retried
        if isinstance(cause, BaseException) and cause is not error:
            return kind(cause)
        return kind_of_status(status_of(error))
    if isinstance(error, Mapping) and isinstance(error.get("error"), Mapping):
        return kind_of_status(_int(error["error"].get("code")))
    return TRANSIENT  # no reason this table knows: retried within the budget, as an outage is


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries: google.api_core's `code`, else its response's status_code."""
    code = _int(getattr(exc, "code", None))
    if code is not None:
        return code
    return _int(getattr(getattr(exc, "response", None), "status_code", None))


def describe(error: Any) -> str:
    """A short human phrase for the kind, for dead-letter details and logs."""
    return {
        CONTENT: "refused for its content",
        THROTTLED: "BigQuery quota or rate limit exceeded",
        TRANSIENT: "BigQuery or the network failed",
        FATAL: "refused until someone acts (permission, missing table, billing)",
    }[kind(error)]


def is_content(error: Any) -> bool:
    return kind(error) == CONTENT


def is_throttled(error: Any) -> bool:
    return kind(error) == THROTTLED


def _list(value: Any) -> list:
    if value is None or isinstance(value, (str, bytes, Mapping)):
        return [value] if isinstance(value, Mapping) else []
    try:
        return list(value)
    except TypeError:
        return []


def _body(response: Any) -> Any:
    if response is None:
        return None
    try:
        return response.json()
    except Exception:  # not JSON (a proxy's HTML page), or no body: the status decides
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
