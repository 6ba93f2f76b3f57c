"""Instant queries against a Prometheus-compatible API through prometheus-api-client, with retries.

The ``PrometheusConnect`` object owns the URL, session, headers, auth and TLS settings (built from a
connection by the Airflow hook or :func:`client_from_connection`); this module only adds what billing
exports need on top: the full response envelope (stats, warnings), bounded retries of transient
errors, and errors that name the cluster, window and metric but never a credential.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import time
import zlib
from dataclasses import dataclass
from typing import Any

import requests

from podledger.connections import ConnectionInfo
from podledger.exceptions import PrometheusQueryError, QueryTooLarge

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
# Size limits: Prometheus query.max-samples (422 execution), Mimir/Cortex/AMP query limits (422),
# query timeouts (503 timeout; AMP answers 422 "query timed out"). Splitting the query is the fix.
TOO_LARGE_PATTERNS = ("too many samples", "max-samples", "exceeded the maximum", "exceeds the limit",
                      "max number of", "timed out", "maximum resolution", "query length")


@dataclass
class QueryResult:
    """The ``data.result`` vector of a query plus its stats, timing and size (decoded, and on the wire)."""

    series: list[dict[str, Any]]
    stats: dict[str, Any] | None
    seconds: float
    bytes_received: int
    wire_bytes: int = 0  # as transferred (Prometheus gzips answers when asked, as requests does)


class SigV4Auth(requests.auth.AuthBase):
    """Sign each request with AWS Signature Version 4 (Amazon Managed Prometheus: service ``aps``)."""

    def __init__(self, credentials: Any, region: str, service: str = "aps") -> None:
        self.credentials = credentials
        self.region = region
        self.service = service

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        from botocore.auth import SigV4Auth as BotocoreSigV4
        from botocore.awsrequest import AWSRequest

        body = request.body or b""
        body = body.encode() if isinstance(body, str) else body
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type",)}
        aws_request = AWSRequest(method=request.method, url=request.url, data=body, headers=headers)
        BotocoreSigV4(self.credentials, self.service, self.region).add_auth(aws_request)
        request.headers.update(dict(aws_request.headers.items()))
        return request


@dataclass(frozen=True)
class PrometheusClient:
    """podledger's Prometheus client: a prometheus-api-client ``PrometheusConnect`` (URL, headers, auth; its own
    methods for ad hoc use) and the one ``requests`` session every podledger request goes through, with no
    transport retries under podledger's own retry loop. ``conn_id`` names the connection in errors."""

    conn_id: str
    api: Any  # prometheus_api_client.PrometheusConnect (the library has no type information)
    session: requests.Session

    @property
    def url(self) -> str:
        return str(self.api.url)

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.api.headers or {})

    def request(self, method: str, url: str, *, timeout: float, **kwargs: Any) -> requests.Response:
        """One HTTP request with the connection's headers, auth and TLS settings (no retries: callers decide)."""
        return self.session.request(method, url, headers=self.headers, auth=self.api.auth, verify=self.session.verify,
                                    timeout=timeout, **kwargs)


def client_from_connection(conn: ConnectionInfo, timeout: float = 120.0, credentials: Any = None) -> PrometheusClient:
    """Build podledger's client from a connection: URL, token/bearer/basic/SigV4 auth, tenant, TLS.

    SigV4 (extra ``sigv4: {region, service}``) signs with ``credentials`` (the Airflow hook passes the AWS
    connection's), else botocore's default chain (environment, profile, instance role).
    """
    from prometheus_api_client import PrometheusConnect

    extra = conn.extra
    headers: dict[str, str] = dict(extra.get("headers") or {})
    if extra.get("token"):
        headers["token"] = str(extra["token"])
    if extra.get("bearer_token"):
        headers["Authorization"] = f"Bearer {extra['bearer_token']}"
    if extra.get("x_scope_orgid"):
        headers["X-Scope-OrgID"] = str(extra["x_scope_orgid"])
    auth: Any = (conn.login, conn.password or "") if conn.login else None
    sigv4 = extra.get("sigv4")
    if sigv4:
        if credentials is None:
            import botocore.session

            credentials = botocore.session.get_session().get_credentials()
        if credentials is None:
            raise PrometheusQueryError(f"connection {conn.conn_id!r}: SigV4 needs AWS credentials (an AWS connection, "
                                       "environment variables or an instance role)")
        region = sigv4.get("region") or extra.get("region_name")
        if not region:
            raise PrometheusQueryError(f"connection {conn.conn_id!r}: set sigv4.region (e.g. us-east-1) in the extras")
        auth = SigV4Auth(credentials, region, sigv4.get("service", "aps"))
    import requests
    from urllib3.util.retry import Retry

    verify = extra.get("verify", True)
    session = requests.Session()  # podledger's own: its requests go through podledger's single retry policy
    if isinstance(verify, str) and verify.lower() not in {"true", "false"}:
        session.verify = verify  # a CA bundle path
    else:
        session.verify = not (verify is False or str(verify).lower() == "false")
    api = PrometheusConnect(
        url=conn.base_url(),
        headers=headers or None,
        auth=auth,
        session=session,
        # No transport retries under podledger's own loop (_post): retries would stack (3 x 4 attempts).
        retry=Retry(total=0, connect=0, read=0, status=0, redirect=False, raise_on_status=False),
        timeout=int(timeout),
        method="POST",
    )
    # The connection id is named in errors (the URL and the secrets are not enough / too much).
    return PrometheusClient(conn.conn_id, api, session)


AUTH_HINT = ("the endpoint rejected the credentials: check the connection's login/password or its token, bearer_token, "
             "x_scope_orgid or SigV4 settings")


def _who(client: PrometheusClient) -> str:
    return f"connection {client.conn_id!r} ({client.url})"


def _retry_after(response: Any, cap: float = 60.0) -> float:
    try:
        return min(float(response.headers.get("Retry-After", 0) or 0), cap)
    except ValueError:  # an HTTP date: fall back to the backoff
        return 0.0


def _decode(wire: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(wire)
    if encoding == "deflate":
        return zlib.decompress(wire)
    return wire


def _unexpected(where: str, what: str, body: bytes) -> PrometheusQueryError:
    shown = body[:200].decode(errors="replace")
    return PrometheusQueryError(f"{where}: {what}; the answer began with {shown!r}. Is the connection pointing at the "
                                "Prometheus API (not a login page or proxy)? No manifest was written for this window")


def checked_answer(body: bytes, content_type: str, result_type: str, *, where: str) -> dict[str, Any]:
    """Return a Prometheus API answer after checking everything podledger relies on, or raise naming what is wrong.

    Content type JSON, a JSON object with ``status: success``, ``data.resultType`` as asked (``vector`` for an
    instant query, ``matrix`` for a range query; a ``scalar`` never comes from podledger's queries), and every
    sample value a number (Prometheus writes them as strings, ``NaN`` and ``±Inf`` included).
    """
    if "json" not in content_type.lower():
        raise _unexpected(where, f"HTTP 200 with content type {content_type or 'none'!r}, not JSON", body)
    try:
        answer = json.loads(body)
    except json.JSONDecodeError as exc:
        raise _unexpected(where, f"the answer is not valid JSON ({exc.msg} at character {exc.pos})", body) from None
    except ValueError as exc:  # bytes that are not text
        raise _unexpected(where, f"the answer is not valid JSON ({exc})", body) from None
    if not isinstance(answer, dict):
        raise _unexpected(where, "the answer is not a JSON object", body)
    if answer.get("status") != "success":
        detail = f"{answer.get('errorType', '')} {answer.get('error', '')}".strip() or f"status {answer.get('status')!r}"
        raise _unexpected(where, f"the endpoint answered HTTP 200 but not success ({detail})", body)
    data = answer.get("data")
    if not isinstance(data, dict) or data.get("resultType") != result_type or not isinstance(data.get("result"), list):
        got = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise _unexpected(where, f"expected a {result_type} and got {got!r}", body)
    key = "value" if result_type == "vector" else "values"
    for item in data["result"]:
        if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
            raise _unexpected(where, "a result item without its metric labels", body)
        samples: list[Any] = [item.get(key)] if result_type == "vector" else (item.get(key) or [])
        for sample in samples or [None]:
            try:
                float(sample[0]), float(sample[1])
            except (TypeError, ValueError, IndexError, KeyError):
                raise _unexpected(where, f"a sample that is not a number: {str(sample)[:60]!r} in series "
                                         f"{str(item.get('metric'))[:80]}", body) from None
    return answer


def _post(client: PrometheusClient, path: str, data: dict[str, str], *, context: str, timeout: float, retries: int,
          backoff_seconds: float, result_type: str = "vector") -> QueryResult:
    """POST a query; retry 429/5xx with backoff; raise QueryTooLarge for size limits, else an error naming ``context``."""
    url = f"{client.url}{path}"
    # partial_response=false: Thanos must fail rather than answer from a subset of stores (billing needs
    # exact data); Prometheus and VictoriaMetrics ignore the parameter.
    data = {**data, "timeout": f"{int(timeout)}s", "stats": "1", "partial_response": "false"}
    attempt = 0
    while True:
        attempt += 1
        started = time.perf_counter()
        try:
            response = client.request("POST", url, data=data, timeout=timeout + 5, stream=True)
            wire = response.raw.read(decode_content=False)
            body = _decode(wire, response.headers.get("Content-Encoding", ""))
        except requests.RequestException as exc:
            # str(exc) of a connection error carries only host/port, never the auth header.
            error = f"cannot reach {client.url}: {type(exc).__name__}"
            status = None
        else:
            status = response.status_code
            if status == 200:
                answer = checked_answer(body, response.headers.get("Content-Type", ""), result_type,
                                        where=f"{context}, {_who(client)}")
                partial = [w for w in answer.get("warnings") or [] if "partial" in w.lower() or "store" in w.lower()]
                if partial:
                    raise PrometheusQueryError(f"{context}: the endpoint answered with partial data ({partial[0]}); "
                                               "refusing to export an incomplete window")
                payload = answer["data"]
                return QueryResult(payload["result"], payload.get("stats"),
                                   time.perf_counter() - started, len(body), len(wire))
            if status in (401, 403):
                raise PrometheusQueryError(f"{context}, {_who(client)}: HTTP {status}: {AUTH_HINT}")
            try:
                error = json.loads(body).get("error", "")
            except ValueError:
                error = body[:200].decode(errors="replace")
            error = f"HTTP {status}: {error}"
        too_large = status in (400, 422, 503) and any(p in error.lower() for p in TOO_LARGE_PATTERNS)
        if too_large and (status != 503 or attempt > 1):
            raise QueryTooLarge(f"{context}: the endpoint refused the query for its size: {error}")
        transient = status is None or status in RETRYABLE_STATUS
        if not transient or attempt > retries:
            raise PrometheusQueryError(f"{context}, {_who(client)}: query failed after {attempt} attempt(s): {error}")
        # Exponential backoff with jitter (concurrent queries must not retry in lockstep), at least the
        # server's Retry-After (Mimir, AMP and nginx limit_req may send one).
        delay = backoff_seconds * 2 ** (attempt - 1) * random.uniform(0.75, 1.25)
        delay = max(delay, _retry_after(response) if status is not None else 0.0)
        log.warning("%s: %s; retrying in %.1fs (attempt %d/%d)", context, error, delay, attempt, retries + 1)
        time.sleep(delay)


def instant_query(client: PrometheusClient, query: str, at: float, *, context: str, timeout: float = 120.0,
                  retries: int = 4, backoff_seconds: float = 0.5) -> QueryResult:
    """Run an instant query at ``at`` (unix seconds); retry 429/5xx with backoff, raise naming ``context``."""
    return _post(client, "/api/v1/query", {"query": query, "time": f"{at:.3f}"}, context=context, timeout=timeout,
                 retries=retries, backoff_seconds=backoff_seconds)


def range_query(client: PrometheusClient, query: str, start: float, end: float, step: int, *, context: str,
                timeout: float = 120.0, retries: int = 4, backoff_seconds: float = 0.5) -> QueryResult:
    """Run a range query (raw mode); same retries and errors as :func:`instant_query`."""
    data = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}s"}
    return _post(client, "/api/v1/query_range", data, context=context, timeout=timeout, retries=retries,
                 backoff_seconds=backoff_seconds, result_type="matrix")


def check_ready(client: PrometheusClient, path: str = "/-/ready", timeout: float = 10.0) -> None:
    """Fail with a clear message when the endpoint's readiness path does not answer 200."""
    url = f"{client.url.rstrip('/')}{path}"
    try:
        response = client.request("GET", url, timeout=timeout)
    except requests.RequestException as exc:
        raise PrometheusQueryError(f"{_who(client)}: Prometheus is not reachable ({type(exc).__name__}); "
                                   "check the connection's host and port") from None
    if response.status_code in (401, 403):
        raise PrometheusQueryError(f"{_who(client)}: GET {path} answered HTTP {response.status_code}: {AUTH_HINT}")
    if response.status_code != 200:
        raise PrometheusQueryError(f"{_who(client)}: not ready: GET {path} answered HTTP {response.status_code}; "
                                   "wait for it to start or set the connection's readiness_path extra")
