"""SigV4 (Amazon Managed Prometheus): every query carries a valid ``aps`` signature, verified server-side."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth as BotocoreSigV4
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from podledger.connections import ConnectionInfo
from podledger.promclient import client_from_connection, instant_query

CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-1")
REGION = "eu-west-1"


def verify_sigv4(method: str, url: str, headers: dict[str, str], body: bytes) -> bool:
    """Recompute the signature of a received request and compare it with its Authorization header."""
    match = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                     r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$", headers["Authorization"])
    assert match, headers["Authorization"]
    key, _, region, service, signed, signature = match.groups()
    assert (key, region, service) == (CREDENTIALS.access_key, REGION, "aps")
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: headers[name] for name in headers if name.lower() in signed.split(";")})
    request.context["timestamp"] = headers["X-Amz-Date"]
    signer = BotocoreSigV4(CREDENTIALS, "aps", REGION)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return expected == signature


def test_queries_are_signed_for_aps():
    seen: list[bool] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            url = f"http://{self.headers['Host']}{self.path}"
            headers = dict(self.headers.items())
            seen.append(verify_sigv4("POST", url, headers, body) and headers["X-Amz-Security-Token"] == "session-token-1"
                        and not verify_sigv4("POST", url, headers, body + b"&x=1"))  # a tampered body must not verify
            payload = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()
            self.send_response(200 if seen[-1] else 403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        conn = ConnectionInfo("amp", host="127.0.0.1", port=server.server_address[1], schema="workspaces/ws-1234",
                              extra={"sigv4": {"region": REGION}})
        client = client_from_connection(conn, credentials=CREDENTIALS)
        result = instant_query(client, 'sum(kube_node_info{cluster="a b"})', 1793581200, context="test", retries=0)
        assert result.series == [] and seen == [True]
    finally:
        server.shutdown()
        server.server_close()
