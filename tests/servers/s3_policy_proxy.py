"""An S3 endpoint that enforces least-privilege IAM policies in front of moto (run as its own process by the tests).

    python s3_policy_proxy.py PORT CONFIG.json

moto does not evaluate IAM condition keys; this proxy does, for path-style requests, as AWS would for a caller
holding only these policies. CONFIG: ``{"upstream": "http://127.0.0.1:<moto>", "log": "<denied.jsonl>",
"buckets": {"<bucket>": {"prefix": "<S3_PREFIX>", "write": true|false}}}``:

- ``s3:ListBucket`` only with ``s3:delimiter`` = ``/`` and ``s3:prefix`` like ``<S3_PREFIX>*`` (the seed's policy);
- ``s3:GetObject`` (GET, HEAD) on ``<bucket>/<S3_PREFIX>/*``; with ``write``, ``s3:PutObject`` (PUT, multipart
  uploads) and ``s3:DeleteObject`` (DELETE, and each key of a DeleteObjects request) there too;
- nothing else (HeadBucket, GetBucketLocation, listings without the delimiter, other buckets, other prefixes).

A HEAD or GET of a missing key answers 403, not 404, as AWS does for a caller without an unconditional
``s3:ListBucket``. Every denied call is appended to the log (one JSON object a line) and answered 403 AccessDenied.
"""

from __future__ import annotations

import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import requests

CONFIG: dict = {}
DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message>'
          b"</Error>")


def decision(method: str, bucket: str, key: str, query: dict[str, list[str]], body: bytes) -> str | None:
    """Return why the call is denied, or None when the policies allow it."""
    policy = CONFIG["buckets"].get(bucket)
    if policy is None:
        return f"no policy grants anything on bucket {bucket!r}"
    prefix, write = policy["prefix"], policy.get("write", False)
    objects = prefix.rstrip("/") + "/"
    if not key:
        if method == "GET" and not ({"location", "versioning", "acl", "policy", "uploads"} & set(query)):
            delimiter, list_prefix = query.get("delimiter", [None])[0], query.get("prefix", [""])[0]
            if delimiter != "/":
                return f"s3:ListBucket needs s3:delimiter = '/', got {delimiter!r}"
            if not list_prefix.startswith(prefix):
                return f"s3:ListBucket needs s3:prefix like '{prefix}*', got {list_prefix!r}"
            return None
        if method == "POST" and "delete" in query:
            if not write:
                return "s3:DeleteObject is not granted"
            keys = [unquote(k) for k in re.findall(rb"<Key>(.*?)</Key>", body)]
            outside = [k for k in (k.decode() if isinstance(k, bytes) else k for k in keys) if not k.startswith(objects)]
            return f"s3:DeleteObject outside {objects}*: {outside[:3]}" if outside else None
        return f"{method} on the bucket itself ({sorted(query) or 'HeadBucket'}) is not granted"
    if not key.startswith(objects):
        return f"no access to {key!r} outside {objects}*"
    if method in ("GET", "HEAD"):
        return None
    if method in ("PUT", "POST", "DELETE"):
        return None if write else f"s3:{'DeleteObject' if method == 'DELETE' else 'PutObject'} is not granted"
    return f"{method} is not granted"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/-/ready":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        parts = url.path.lstrip("/").split("/", 1)
        bucket, key = unquote(parts[0]), unquote(parts[1]) if len(parts) > 1 else ""
        query = parse_qs(url.query, keep_blank_values=True)
        body = self._body()
        if CONFIG.get("access_log"):  # who signed each call: the access key id of its SigV4 credential
            akid = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
            with open(CONFIG["access_log"], "a") as log:
                log.write(json.dumps({"method": self.command, "key": key, "akid": akid.group(1) if akid else None}) + "\n")
        why = decision(self.command, bucket, key, query, body)
        if why is None:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "transfer-encoding")}
            upstream = requests.request(self.command, CONFIG["upstream"] + self.path, data=body or None, headers=headers,
                                        timeout=60, allow_redirects=False)
            status, content = upstream.status_code, upstream.content
            if key and self.command in ("GET", "HEAD") and status == 404:
                status, content = 403, DENIED  # AWS: 403 for a missing key without an unconditional ListBucket
            out_headers = {k: v for k, v in upstream.headers.items()
                           if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")}
        else:
            with open(CONFIG["log"], "a") as log:
                log.write(json.dumps({"method": self.command, "bucket": bucket, "key": key, "query": query,
                                      "reason": why}) + "\n")
            status, content, out_headers = 403, DENIED, {"Content-Type": "application/xml"}
        self.send_response(status)
        for name, value in out_headers.items():
            self.send_header(name, value)
        # A HEAD answers with the object's length, as S3 does (readers size ranged GETs by it), and no body.
        length = upstream.headers.get("Content-Length", "0") if why is None and self.command == "HEAD" else len(content)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815 - http.server's naming

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    with open(sys.argv[2]) as config:
        CONFIG.update(json.load(config))
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.serve_forever()
