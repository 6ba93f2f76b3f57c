"""A Prometheus-compatible endpoint that misbehaves on purpose (run as its own process by the tests).

    python misbehaving_prometheus.py PORT MODE

Every POST /api/v1/query is answered according to MODE (HTTP 200 in every case but ``ok``'s own); GET /-/ready
answers 200. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VECTOR_OK = {"status": "success", "data": {"resultType": "vector", "result": []}}
ANSWERS: dict[str, tuple[str, bytes]] = {
    "ok": ("application/json", json.dumps(VECTOR_OK).encode()),
    "not_json": ("application/json", b"upstream connect error or disconnect/reset before headers"),
    "html_login": ("text/html; charset=utf-8",
                   b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form action=/oauth2/start>"
                   b"<button>Sign in with SSO</button></form></body></html>"),
    "truncated": ("application/json", json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"node": "n1"}, "value": [1, "1"]}]}}).encode()[:57]),
    "non_numeric": ("application/json", json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"node": "n1", "provider_id": "aws:///us-east-1a/i-1"}, "value": [1793581200, "twelve"]}]}}).encode()),
    "matrix": ("application/json", json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"node": "n1"}, "values": [[1793581200, "1"]]}]}}).encode()),
    "status_error": ("application/json", json.dumps({"status": "error", "errorType": "internal",
                                                     "error": "storage unavailable"}).encode()),
}


class Handler(BaseHTTPRequestHandler):
    mode = "ok"

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(200, "text/plain", b"Prometheus Server is Ready.\n")

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type, body = ANSWERS[self.mode]
        self._answer(200, content_type, body)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    Handler.mode = sys.argv[2]
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
