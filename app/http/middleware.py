"""The start of every request: request id, context, span, in-flight gauge; and the response headers.

Auth and rate limits are separate middleware (``app/limits``); this one runs
first so every later step, error and log line has a request id. It hands the
context to the request's ``Exchange`` (``app/http/app.py``), whose ``finish``
is the request's one ending: nothing here ends a request.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

import falcon

from app.config.trusted_proxies import ClientAddress
from app.context import RequestContext
from app.http.app import EXCHANGE_ENVIRON
from app.observability.access import request_started
from app.observability.tracing import Tracing

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def new_request_id() -> str:
    """32 hex digits from the process's PRNG, which Python re-seeds in every forked worker.

    Unique enough to follow a request, and no system call: uuid4 reads os.urandom,
    and under load every call that releases the GIL waits to get it back.
    """
    return f"{random.getrandbits(128):032x}"


def dialect_for(path: str) -> str:
    """Errors on /v1/messages and every path under it (count_tokens, unknown ones) are Anthropic-shaped;
    everywhere else OpenAI-shaped (/v1/responses is its own dialect, with OpenAI's error shape)."""
    path = path.rstrip("/")
    if path == "/v1/responses":
        return "responses"
    return "anthropic" if path == "/v1/messages" or path.startswith("/v1/messages/") else "openai"


class RequestContextMiddleware:
    def __init__(self, tracing: Tracing | None = None, *, client_address: ClientAddress | None = None) -> None:
        self.tracing = tracing if tracing is not None and tracing.enabled else None
        self.client_address = client_address or ClientAddress(())  # trust no proxy unless told

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Headers straight from the WSGI environ: Falcon's get_header builds the key and raises and
        # catches a KeyError for every absent one, and most of these are absent on most requests.
        env = req.env
        incoming = env.get("HTTP_X_REQUEST_ID")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else new_request_id()
        traceparent = env.get("HTTP_TRACEPARENT")
        exchange = env.get(EXCHANGE_ENVIRON)
        path = req.path
        peer = env.get("REMOTE_ADDR", "127.0.0.1")  # what Falcon's req.remote_addr reads
        forwarded_for = env.get("HTTP_X_FORWARDED_FOR")
        ctx = RequestContext(
            request_id=request_id,
            endpoint=path if path in _ENDPOINTS else endpoint_of(path),
            dialect=_DIALECTS.get(path) or dialect_for(path),  # type: ignore[arg-type]
            traceparent=traceparent if traceparent and _TRACEPARENT.match(traceparent) else None,
            # Without X-Forwarded-For the peer is the caller (what ClientAddress answers then).
            client_addr=self.client_address(peer, forwarded_for) if forwarded_for else peer,
            after=exchange.steps if exchange is not None else None,
        )
        req.context.gw = ctx
        if exchange is not None:
            exchange.ctx = ctx  # from here on, the exchange finishes this request
        if self.tracing is not None and not ctx.endpoint.startswith("/health"):  # probes make no traces
            self.tracing.start_request(ctx, req.method, ctx.endpoint, req.path)
        request_started(ctx)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         req_succeeded: bool) -> None:
        ctx: RequestContext | None = getattr(req.context, "gw", None)
        if ctx is None:
            return
        headers = [("x-request-id", ctx.request_id)]  # set by one set_headers call: set_header each, in order
        if ctx.provider:
            headers.append(("x-llm-edge-provider", ctx.provider))
        if ctx.deployment:
            headers.append(("x-llm-edge-deployment", ctx.deployment))
        if ctx.model:
            headers.append(("x-llm-edge-model", ctx.model))
        if ctx.requested_model is not None:
            headers.append(("x-llm-edge-cache", ctx.cache))
        if ctx.dropped:
            headers.append((DROPPED_HEADER, dropped_fields_value(ctx.dropped)))
        if ctx.upstream_headers is not None and ctx.provider != "cache":
            headers += passed_back(ctx.upstream_headers)
        resp.set_headers(headers)
        if resp.stream is None or not ctx.stream:
            ctx.status = int(resp.status_code)  # a stream's status is its generator's to say


DROPPED_HEADER = "x-llm-edge-dropped-fields"
DROPPED_SHOWN = 20  # paths listed at most; a longer list ends in "..."


def dropped_fields_value(paths: tuple[str, ...]) -> str:
    """The header's value: the first ``DROPPED_SHOWN`` paths, comma-separated (a bounded header)."""
    shown = ", ".join(paths[:DROPPED_SHOWN])
    return shown + ", ..." if len(paths) > DROPPED_SHOWN else shown


UPSTREAM_REQUEST_ID = "x-llm-edge-upstream-request-id"
# A provider's rate-limit headers whose names clash with none of the gateway's own (OpenAI's x-ratelimit-*
# do: the gateway's x-ratelimit-*-requests are the caller's limit, and they win).
_PASSED_PREFIXES = ("anthropic-ratelimit-",)
_REQUEST_ID_HEADERS = ("request-id", "x-request-id")


def passed_back(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The provider's response headers a caller gets: its request id (renamed) and its rate-limit state.

    Tested with ``in`` (urllib3's ``HTTPHeaderDict.get`` raises and catches a KeyError for each absent
    name), and the headers only walked when an Anthropic rate-limit header is there.
    """
    out: list[tuple[str, str]] = []
    for name in _REQUEST_ID_HEADERS:
        if name in headers:
            out.append((UPSTREAM_REQUEST_ID, headers[name]))
            break
    if "anthropic-ratelimit-requests-limit" in headers or "anthropic-ratelimit-tokens-limit" in headers:
        out.extend((name.lower(), value) for name, value in headers.items()
                   if name.lower().startswith(_PASSED_PREFIXES))
    return out


# The request metrics' ``endpoint`` label: these paths as they are, a path under one of _TEMPLATES as its
# template (ids are unbounded), anything else "other". "/v1/responses" is kept for its resource.
_ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/messages", "/v1/models", "/health", "/health/live",
                        "/health/ready",
                        "/v1/messages/count_tokens", "/v1/embeddings", "/v1/responses"})
_TEMPLATES = (("/v1/models/", "/v1/models/{id}"), ("/v1/responses/", "/v1/responses/{id}"))
_DIALECTS = {path: dialect_for(path) for path in _ENDPOINTS}  # the routed paths' dialects, worked out once


def endpoint_of(path: str) -> str:
    """The ``endpoint`` label of a path not in _ENDPOINTS: its template, or "other"."""
    for prefix, template in _TEMPLATES:
        if path.startswith(prefix):
            return template
    return "other"
