"""An HTTP proxy on 127.0.0.1 that waits a fixed time before forwarding each request (an object store's round trip).

    python bench/latency_proxy.py PORT UPSTREAM SECONDS

Used by bench/s3_fetch.py in front of moto's S3 server: S3 answers after tens of milliseconds, loopback moto after
almost none, which would hide how many requests a reader keeps in flight.
"""

from __future__ import annotations

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

HOP_BY_HOP = {"transfer-encoding", "connection", "content-encoding", "content-length", "keep-alive"}


def main() -> None:
    port, upstream, delay = int(sys.argv[1]), sys.argv[2].rstrip("/"), float(sys.argv[3])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            time.sleep(delay)
            answer = requests.request(self.command, upstream + self.path, data=body, allow_redirects=False, timeout=60,
                                      headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            content = b"" if self.command == "HEAD" else answer.content
            self.send_header("Content-Length", answer.headers.get("Content-Length", "0") if self.command == "HEAD"
                             else str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward  # noqa: N815 - http.server's names

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's signature
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
