"""A loopback HTTP proxy in front of the BigQuery emulator that answers the first load jobs with BigQuery's errors
(quota and rate limits, and the fatal notFound and accessDenied), passing everything else through unchanged:
bqemulator has no quotas, and answers a missing table with `invalid` where BigQuery answers notFound, so the load
path's handling of these could not be exercised otherwise.

    with BigQueryFaults(bigquery_emulator.host_port, failures=2, where="job") as proxy:
        client = bigquery_client(project, proxy.endpoint)   # the first 2 load jobs fail with quotaExceeded

Uploads are google-cloud-bigquery's resumable ones: a POST of the job's metadata, then a PUT of the rows to the
session URL, which the proxy keeps pointing at itself. The error bodies are BigQuery's
(https://cloud.google.com/bigquery/docs/troubleshoot-quotas, "Overview": HTTP 403, reason quotaExceeded or
rateLimitExceeded). `where="job"`: the job is created and ends DONE with that error in its status (how a load job
meets a table's daily limits, e.g. partition modifications); `where="request"`: the jobs.insert request itself is
refused with 403 rateLimitExceeded (the short-term rate limits). `reason` picks another of ERRORS.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from loopback_http import LoopbackHTTP, bigquery_error

QUOTA_MESSAGE = (
    "Quota exceeded: Your table exceeded quota for Number of partition modifications to a column partitioned table"
)
RATE_MESSAGE = "Exceeded rate limits: too many table update operations for this table"
# reason -> (HTTP status, message) of BigQuery's answer (https://cloud.google.com/bigquery/docs/error-messages)
ERRORS = {
    "quotaExceeded": (403, QUOTA_MESSAGE),
    "rateLimitExceeded": (403, RATE_MESSAGE),
    "notFound": (404, "Not found: Table backfill-load:events.inventory was not found in location US"),
    "accessDenied": (
        403,
        "Access Denied: Table backfill-load:events.inventory: Permission bigquery.tables.updateData"
        " denied on table backfill-load:events.inventory (or it may not exist).",
    ),
}
_HOP_HEADERS = {"connection", "transfer-encoding", "keep-alive", "content-length", "host"}


class BigQueryFaults(LoopbackHTTP):
    def __init__(self, emulator: str, failures: int, where: str = "job", reason: str | None = None) -> None:
        self.emulator, self.failures, self.where = emulator, failures, where
        self.reason = reason or ("quotaExceeded" if where == "job" else "rateLimitExceeded")
        self.uploads: list[dict] = []  # every load job upload begun: job_id, location, refused, rows
        self.project = ""
        self._sessions: dict[str, int] = {}  # upload session path -> its upload's number
        self._lock = threading.Lock()
        super().__init__(self._handler())

    def _begin(self, body: bytes) -> tuple[int, dict | None]:
        """A load job's upload begins (its metadata): record it; -> (its number, the answer to give instead of
        the emulator's, or None to pass it on)."""
        job = _field(body, "jobId")
        with self._lock:
            refused = sum(u["refused"] for u in self.uploads) < self.failures
            self.uploads.append({"job_id": job, "location": _field(body, "location"), "refused": refused, "rows": 0})
            number = len(self.uploads) - 1
        if refused and self.where == "request":
            status, message = ERRORS[self.reason]
            return number, {"status": status, "body": bigquery_error(status, self.reason, message)}
        return number, None

    def _finish(self, number: int, body: bytes) -> dict | None:
        """A load job's rows arrive: count them; a job refused on the job side ends DONE with its error."""
        with self._lock:
            upload = self.uploads[number]
            upload["rows"] += body.count(b'"event_id"')
        if not upload["refused"] or self.where != "job":
            return None
        error = {"reason": self.reason, "message": ERRORS[self.reason][1]}
        project = self.project
        resource = {
            "kind": "bigquery#job",
            "id": f"{project}:{upload['job_id']}",
            "jobReference": {"projectId": project, "jobId": upload["job_id"], "location": upload["location"]},
            "configuration": {"jobType": "LOAD", "load": {}},
            "status": {"state": "DONE", "errorResult": error, "errors": [error]},
            "statistics": {},
        }
        return {"status": 200, "body": resource}

    def _handler(self):
        faults = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet: the test reads the record instead
                pass

            def _answer(self, answer: dict) -> None:
                payload = json.dumps(answer["body"]).encode()
                self.send_response(answer["status"])
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                number = None
                if self.command == "POST" and self.path.startswith("/upload/bigquery/v2/") and "/jobs" in self.path:
                    faults.project = self.path.split("/projects/", 1)[1].split("/", 1)[0]
                    number, answer = faults._begin(body)
                    if answer is not None:
                        return self._answer(answer)
                elif self.command == "PUT" and self.path in faults._sessions:
                    answer = faults._finish(faults._sessions[self.path], body)
                    if answer is not None:
                        return self._answer(answer)
                host, port = faults.emulator.rsplit(":", 1)
                upstream = http.client.HTTPConnection(host, int(port), timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if name.lower() == "location" and number is not None:  # the upload session: through us
                            session = urlsplit(value)
                            path = session.path + (f"?{session.query}" if session.query else "")
                            faults._sessions[path] = number
                            value = faults.endpoint + path
                        if name.lower() not in _HOP_HEADERS:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    upstream.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

        return Handler


def _field(body: bytes, name: str) -> str | None:
    found = re.search(rb'"' + name.encode() + rb'"\s*:\s*"([^"]+)"', body)
    return found.group(1).decode() if found else None
