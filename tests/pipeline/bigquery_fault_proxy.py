"""A loopback HTTP proxy in front of the BigQuery emulator that answers what only real BigQuery answers.

bqemulator never throttles, and it refuses a bad row with a 500 or a dropped connection, not with BigQuery's
per-row `invalid`. The proxy forwards every request to the emulator unchanged, except that it can:
- answer the first `throttle` insertAll requests with BigQuery's 403 `rateLimitExceeded` body
  (https://cloud.google.com/bigquery/docs/troubleshoot-quotas, "Overview"), forwarding nothing;
- answer an insertAll request holding a row whose insert id is in `invalid_ids` as BigQuery does with
  skipInvalidRows false: 200, that row `invalid`, every other row `stopped`, nothing inserted
  (https://cloud.google.com/bigquery/docs/reference/rest/v2/tabledata/insertAll, insertErrors);
- answer such a request with a 400 `invalid` for the whole request instead (`invalid_as_request=True`).

    with FaultProxy(emulator.endpoint, throttle=2) as proxy:
        client = bigquery_client(project, proxy.endpoint)   # the real client, through real HTTP

Every insertAll it saw is in `proxy.calls` as (wall-clock time of the answer, status, insert ids).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from loopback_http import LoopbackHTTP, bigquery_error

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


RATE_LIMIT = "Exceeded rate limits: too many api requests per user per method for this user_method"
INVALID = "Invalid value for field quantity_change: Cannot convert value to integer"


def insert_errors_body(insert_ids: list[str], invalid_ids: set[str]) -> dict:
    errors = []
    for index, insert_id in enumerate(insert_ids):
        if insert_id in invalid_ids:
            reason = {"reason": "invalid", "location": "quantity_change", "message": "Cannot convert value to integer"}
        else:
            reason = {"reason": "stopped", "location": "", "message": ""}
        errors.append({"index": index, "errors": [reason]})
    return {"kind": "bigquery#tableDataInsertAllResponse", "insertErrors": errors}


class FaultProxy(LoopbackHTTP):
    def __init__(
        self,
        upstream: str,
        throttle: int = 0,
        invalid_ids: set[str] | frozenset[str] = frozenset(),
        invalid_as_request: bool = False,
        timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.throttle = throttle
        self.invalid_ids = set(invalid_ids)
        self.invalid_as_request = invalid_as_request
        self.timeout = timeout
        self.calls: list[tuple[float, int, list[str]]] = []
        self._lock = threading.Lock()
        super().__init__(self._handler())

    def statuses(self) -> list[int]:
        with self._lock:
            return [status for _, status, _ in self.calls]

    def _decide(self, insert_ids: list[str]) -> tuple[int, dict] | None:
        """The answer the proxy gives itself for this insertAll, or None to forward it."""
        with self._lock:
            if self.throttle > 0:
                self.throttle -= 1
                return 403, bigquery_error(403, "rateLimitExceeded", RATE_LIMIT, domain="usageLimits")
        if self.invalid_ids.intersection(insert_ids):
            if self.invalid_as_request:
                return 400, bigquery_error(400, "invalid", INVALID)
            return 200, insert_errors_body(insert_ids, self.invalid_ids)
        return None

    def _record(self, status: int, insert_ids: list[str]) -> None:
        with self._lock:
            self.calls.append((time.time(), status, insert_ids))  # wall clock: compared with ingest_time

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet: pytest shows failures, not every request
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                is_insert = self.command == "POST" and urlsplit(self.path).path.endswith("/insertAll")
                insert_ids = []
                if is_insert:
                    insert_ids = [row.get("insertId") for row in json.loads(body or b"{}").get("rows", [])]
                    answer = proxy._decide(insert_ids)
                    if answer is not None:
                        status, payload = answer
                        proxy._record(status, insert_ids)
                        return self._send(status, {"Content-Type": "application/json"}, json.dumps(payload).encode())
                status, headers, data = self._forward(body)
                if is_insert:
                    proxy._record(status, insert_ids)
                self._send(status, headers, data)

            def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=proxy.timeout)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
                    return response.status, kept, data
                finally:
                    upstream.close()

            def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

        return Handler
