"""A loopback HTTP server on a free port, served from a thread of its own, as a context manager: the base of the
test proxies that stand in front of the BigQuery emulator and answer what only real BigQuery answers
(tests/pipeline/bigquery_fault_proxy.py for insertAll, tests/backfill/bigquery_faults.py for load jobs)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def bigquery_error(code: int, reason: str, message: str, domain: str = "global") -> dict:
    """An error response body as BigQuery's REST API sends it (https://cloud.google.com/bigquery/docs/error-messages:
    the ErrorProto `reason` is what clients, and pipeline.bigquery_errors, read)."""
    return {"error": {"code": code, "message": message, "errors": [{"message": message, "domain": domain,
                                                                    "reason": reason}]}}  # fmt: skip


class LoopbackHTTP:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
