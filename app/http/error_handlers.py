"""The one place errors become HTTP answers, in the dialect of the path.

Gateway errors render themselves (``GatewayError.body_for``); Falcon's own
routing errors (404, 405) and anything unexpected are mapped onto the same
tree first, so every error body has one of the two documented shapes.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon
import orjson

from app.errors import GatewayError, InvalidRequest, MethodNotAllowed, NotFound, UpstreamError
from app.http.middleware import dialect_for

log = logging.getLogger("llm_edge.errors")


def _render(req: falcon.Request, resp: falcon.Response, err: GatewayError) -> None:
    resp.status = err.status
    resp.content_type = "application/json"
    resp.data = orjson.dumps(err.body_for(dialect_for(req.path)))
    resp.stream = None
    if err.retry_after is not None:
        resp.set_header("retry-after", str(max(1, round(err.retry_after))))
    ctx = getattr(req.context, "gw", None)
    if ctx is not None:
        ctx.status, ctx.error_type = err.status, err.code


def handle_gateway_error(req: falcon.Request, resp: falcon.Response, err: GatewayError,
                         params: dict[str, Any]) -> None:
    _render(req, resp, err)


def handle_falcon_error(req: falcon.Request, resp: falcon.Response, err: falcon.HTTPError,
                        params: dict[str, Any]) -> None:
    """Falcon's routing and parsing errors, in our shapes."""
    if isinstance(err, falcon.HTTPMethodNotAllowed):
        allowed = (err.headers or {}).get("Allow", "")
        mapped: GatewayError = MethodNotAllowed(f"Method {req.method} is not allowed on {req.path}")
        if allowed:
            resp.set_header("allow", allowed)
    elif err.status_code == 404:
        mapped = NotFound(f"Unknown path {req.path}")
    elif err.status_code < 500:
        mapped = InvalidRequest(err.description or err.title or "Bad request")
        mapped.status = err.status_code
    else:
        mapped = UpstreamError(err.title or "Server error", status=err.status_code)
    _render(req, resp, mapped)


def handle_unexpected(req: falcon.Request, resp: falcon.Response, err: Exception,
                      params: dict[str, Any]) -> None:
    ctx = getattr(req.context, "gw", None)
    log.exception("unhandled error", extra={"fields": {"request_id": getattr(ctx, "request_id", None)}})
    _render(req, resp, GatewayError("The gateway failed to handle this request", status=500))


def install(app: falcon.App) -> None:
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_falcon_error)
    app.add_error_handler(GatewayError, handle_gateway_error)
