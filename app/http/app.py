"""One request from the WSGI call to its last byte, and the one path every ending goes through.

The way through (``docs/architecture.md`` draws it with the files)::

    GatewayApp.__call__             an Exchange per request, in the environ
      RequestContextMiddleware      begin: the RequestContext, the request span, the in-flight gauge
      AccessMiddleware              client key, request limits, spend budget (app/limits)
      ChatResource.on_post          body -> Pipeline.run -> JSON, or SSE through resp.stream
      RequestContextMiddleware      response headers (Falcon runs this before a streamed body is read)
    the server writes the body, then closes it:
    Exchange.close -> finish        THE ending, exactly once

Every ending comes to ``Exchange.finish``: a whole answer or an error answer
(the server closes the body after its last byte), a stream that ended or
failed (its generator has run to the end by then), a client gone mid-stream
(the generator never marked the stream done: answered 499 here), a client
gone before its answer was in (the resource marked it 499: counted here), and an
exception that escaped Falcon (``GatewayApp.__call__``: 500). ``finish``
closes the body, runs the request's deferred steps (a miss's L2 fill), then
``request_finished``: the access line, the request metrics (duration, status,
the in-flight gauge) and the end of the request span.

Why after the last byte: a client waits for its answer, not for the gateway's
bookkeeping. Every WSGI server closes the response iterable after the last
byte is written (PEP 3333; gunicorn in a ``finally``, also when the client has
hung up), so the access line's duration runs past the last byte, as nginx's
``$request_time`` does, and another replica finds a miss's L2 entry
microseconds to a few milliseconds after the client has the answer.

What stays before the answer, because the next request must see it: the L1
fill, the spend tally and the token rate limits (``Accounting.upstream``, in
the pipeline; for a stream as its last event is handed out).

A request context made outside ``GatewayApp`` (unit tests, scripts) has no
queue: ``app.context.defer`` then runs a step at once, and nothing finishes it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import falcon

from app.context import RequestContext, Step, run_steps
from app.observability import metrics
from app.observability.access import request_finished
from app.resilience.disconnects import CLIENT_GONE, CLIENT_GONE_STATUS

EXCHANGE_ENVIRON = "llm_edge.exchange"  # the request's Exchange, in the WSGI environ

log = logging.getLogger("llm_edge.after_response")


class Exchange:
    """One request's life: its context (once the middleware made it), its deferred steps, its response body.

    It is also the response iterable handed to the server, whose ``close`` (after
    the last byte) is the request's one ending.
    """

    __slots__ = ("body", "ctx", "steps")

    def __init__(self) -> None:
        self.body: Iterable[bytes] = ()
        self.ctx: RequestContext | None = None
        self.steps: list[Step] = []

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()  # a stream's generator ends here when the client left early
        finally:
            self.finish()

    def finish(self) -> None:
        """The one ending: a stream left unfinished, the deferred steps, the access line, metrics and span."""
        ctx, self.ctx = self.ctx, None  # a second call finds nothing left to finish
        if ctx is not None:
            if ctx.streaming:  # the stream's end never went out: the client hung up
                ctx.streaming = False
                ctx.status, ctx.error_type = CLIENT_GONE_STATUS, CLIENT_GONE
            if ctx.status == CLIENT_GONE_STATUS:  # that, or gone before the answer was in (the resource said so)
                metrics.CLIENT_DISCONNECTS.labels(ctx.endpoint).inc()
        if self.steps:  # (a hit has none)
            run_steps(self.steps)
        if ctx is not None:
            try:
                request_finished(ctx)
            except Exception:
                log.exception("finishing the request failed")


class GatewayApp(falcon.App):
    """``falcon.App`` whose every request is an ``Exchange``, finished once when its response is closed."""

    def __call__(self, env: dict[str, Any], start_response: Any) -> Iterable[bytes]:  # type: ignore[override]
        exchange = Exchange()
        env[EXCHANGE_ENVIRON] = exchange
        try:
            exchange.body = super().__call__(env, start_response)
        except BaseException:
            ctx = exchange.ctx
            if ctx is not None:
                ctx.streaming, ctx.status, ctx.error_type = False, 500, "internal_error"
            exchange.finish()
            raise
        return exchange  # a stream may still queue steps (its fill) while it is written
