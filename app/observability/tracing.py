"""OpenTelemetry spans: the request, its cache lookup, and each upstream attempt.

Set up once per worker, after fork (``create_gateway``), because the batch
processor's thread and the gRPC channel do not survive a fork. With
``ENABLE_TRACING=false`` nothing is imported or built and every hook is a
``None`` check. Spans carry the OpenTelemetry GenAI semantic-convention
attributes (provider, request and response model, token usage, finish
reasons) and never a prompt, a completion or a key.

Exporting happens on the SDK's background thread from a bounded queue, so a
slow or unreachable collector costs requests nothing: spans beyond the queue
are dropped, and the operator gets one warning per outage instead of one per
batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from app import __version__
from app.context import RequestContext
from app.formats.openai import _STOP_TO_FINISH as OPENAI_FINISH_REASONS

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import Span, Tracer

    from app.config.settings import Settings
    from app.formats.canonical import ChatRequest, ChatResponse
    from app.providers.routing import Target

log = logging.getLogger("llm_edge.tracing")

_NO_SPAN = nullcontext(None)


class _OneWarningExporter:
    """Wraps the OTLP exporter: one warning when the collector stops answering, one line when it is back.

    The SDK exporters log every failed batch (and retry with backoff); their
    loggers are quietened in ``_quiet_sdk_loggers`` and this wrapper speaks
    for them instead.
    """

    def __init__(self, inner: SpanExporter, endpoint: str, protocol: str, quiet: bool = False) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.protocol = protocol
        # The default endpoint, not one the operator chose: the master has said once, for every worker, that
        # spans go there and may be dropped; each worker's outage and recovery lines are debug lines then.
        self.level = logging.DEBUG if quiet else logging.WARNING
        self.down = False
        self.closing = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self.closing and self.down:
            return SpanExportResult.FAILURE  # do not hold a worker's exit on a dead collector
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # an exporter bug must not kill the batch thread
            log.debug("span export raised %s", type(exc).__name__)
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            if self.down:
                self.down = False
                log.log(min(self.level, logging.INFO), "tracing: the collector at %s answers again", self.endpoint)
        elif not self.down:
            self.down = True
            log.log(self.level, "tracing: cannot export spans to %s (%s); spans are dropped until it answers, "
                    "requests are not affected", self.endpoint, self.protocol)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _quiet_sdk_loggers() -> None:
    """The exporters log each failed batch and the processor each dropped span: the wrapper says it once."""
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
    logging.getLogger("opentelemetry.sdk._shared_internal").setLevel(logging.CRITICAL)


def _exporter(settings: Settings) -> tuple[Any, str]:
    """The OTLP exporter for OTEL_EXPORTER_OTLP_PROTOCOL, and the URL it sends to."""
    endpoint, timeout = settings.otlp_endpoint, settings.otel_export_timeout
    if settings.otlp_protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPExporter

        url = endpoint if urlsplit(endpoint).path not in ("", "/") else endpoint.rstrip("/") + "/v1/traces"
        return HTTPExporter(endpoint=url, timeout=timeout), url
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GRPCExporter

    return GRPCExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"), timeout=timeout), endpoint


class Tracing:
    """The worker's tracer, or nothing: every method is cheap when tracing is off."""

    def __init__(self, tracer: Tracer | None = None, provider: TracerProvider | None = None,
                 exporter: _OneWarningExporter | None = None) -> None:
        self.tracer = tracer
        self.provider = provider
        self.exporter = exporter
        self._servers: dict[str, tuple[str, int | None]] = {}
        self._shutdown_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    @classmethod
    def from_settings(cls, settings: Settings, default_endpoint: bool = False) -> Tracing:
        """Spans exported over OTLP when tracing is on; ``default_endpoint``: OTLP_ENDPOINT was not set."""
        if not settings.enable_tracing:
            return cls()
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        _quiet_sdk_loggers()
        attributes: dict[str, Any] = {"service.version": __version__, "service.name": settings.otel_service_name}
        inner, url = _exporter(settings)
        exporter = _OneWarningExporter(inner, url, settings.otlp_protocol, quiet=default_endpoint)
        provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(  # a bounded queue: when full, spans are dropped
            exporter, max_queue_size=settings.otel_queue_size,  # type: ignore[arg-type]
            max_export_batch_size=settings.otel_batch_size, schedule_delay_millis=settings.otel_schedule_delay_ms))
        tracing = cls(provider.get_tracer("llm_edge", __version__), provider, exporter)
        import atexit

        atexit.register(tracing.shutdown)
        return tracing

    def shutdown(self) -> None:
        """Flush what is queued, unless the collector is down: a worker's exit never waits for it."""
        with self._shutdown_lock:
            if self.provider is None:
                return
            provider, self.provider = self.provider, None
        assert self.exporter is not None
        self.exporter.closing = True
        if self.exporter.down:
            self.exporter.shutdown()  # interrupts a retry backoff in progress
        provider.shutdown()

    # --- the request -----------------------------------------------------------------

    def start_request(self, ctx: RequestContext, method: str, route: str, path: str) -> None:
        """The server span, continuing the caller's ``traceparent`` when it sent one.

        ``route`` is the matched endpoint (bounded, it names the span); ``path`` is what was asked for.
        """
        if self.tracer is None:
            return
        from opentelemetry.trace import SpanKind

        parent = None
        if ctx.traceparent:
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            parent = TraceContextTextMapPropagator().extract({"traceparent": ctx.traceparent})
        attributes = {"http.request.method": method, "url.path": path, "llm_edge.request_id": ctx.request_id}
        if route != "other":
            attributes["http.route"] = route
        name = f"{method} {route}" if route != "other" else method
        ctx.span = self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)

    @staticmethod
    def end_request(ctx: RequestContext) -> None:
        """Close the server span with what the access line knows."""
        span: Span | None = ctx.span
        if span is None:
            return
        ctx.span = None
        attributes: dict[str, Any] = {
            "http.response.status_code": ctx.status,
            "llm_edge.client_id": ctx.client_id,
            "llm_edge.cache": ctx.cache,
            "llm_edge.attempts": ctx.attempts,
            "llm_edge.cost_cents": ctx.cost_cents,
        }
        if ctx.requested_model:
            attributes["gen_ai.request.model"] = ctx.requested_model
        if ctx.provider:
            attributes["gen_ai.provider.name"] = ctx.provider
        if ctx.error_type:
            attributes["error.type"] = ctx.error_type
        span.set_attributes(attributes)
        if ctx.status >= 500:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, ctx.error_type or str(ctx.status)))
        span.end()

    # --- stages ----------------------------------------------------------------------

    def cache_lookup(self, ctx: RequestContext) -> Any:
        """``with tracing.cache_lookup(ctx) as span:``; ``span`` is None when tracing is off."""
        if ctx.span is None or self.tracer is None:
            return _NO_SPAN
        return self._child(ctx, "cache lookup")

    @contextmanager
    def _child(self, ctx: RequestContext, name: str) -> Iterator[Span]:
        from opentelemetry.trace import Status, StatusCode, set_span_in_context

        assert self.tracer is not None
        span = self.tracer.start_span(name, context=set_span_in_context(ctx.span))
        try:
            yield span
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            span.end()

    def start_attempt(self, ctx: RequestContext, target: Target, req: ChatRequest,
                      headers: dict[str, str]) -> Span | None:
        """A client span for one upstream attempt; its context goes upstream as ``traceparent``."""
        if ctx.span is None or self.tracer is None:
            if ctx.traceparent:
                headers["traceparent"] = ctx.traceparent  # not tracing: stay transparent
            return None
        from opentelemetry.trace import SpanKind, set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        provider = target.provider
        address, port = self._server(provider.base_url)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider.name,
            "gen_ai.system": provider.name,
            "gen_ai.request.model": target.model,
            "server.address": address,
            "llm_edge.attempt": ctx.attempts,
            "llm_edge.stream": req.stream,
        }
        if port is not None:
            attributes["server.port"] = port
        if req.max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = req.max_tokens
        if req.temperature is not None:
            attributes["gen_ai.request.temperature"] = req.temperature
        if req.top_p is not None:
            attributes["gen_ai.request.top_p"] = req.top_p
        if req.stop:
            attributes["gen_ai.request.stop_sequences"] = list(req.stop)
        span = self.tracer.start_span(f"chat {target.model}", context=set_span_in_context(ctx.span),
                                      kind=SpanKind.CLIENT, attributes=attributes)
        TraceContextTextMapPropagator().inject(headers, context=set_span_in_context(span))
        return span

    @staticmethod
    def end_attempt(span: Span | None, target: Target, resp: ChatResponse | None = None,
                    error: str | None = None) -> None:
        """Close an attempt span with the response's model, usage and finish reason, or the error kind."""
        if span is None:
            return
        if resp is not None:
            attributes: dict[str, Any] = {
                "gen_ai.response.model": resp.model,
                "gen_ai.usage.input_tokens": resp.usage.input_tokens,
                "gen_ai.usage.output_tokens": resp.usage.output_tokens,
            }
            if resp.id:
                attributes["gen_ai.response.id"] = resp.id
            if resp.stop_reason:  # in the provider's own words, as the conventions ask
                reason = resp.stop_reason
                if target.provider.type == "openai":
                    reason = OPENAI_FINISH_REASONS.get(reason, reason)
                attributes["gen_ai.response.finish_reasons"] = [reason]
            if resp.usage.cached_input_tokens:
                attributes["gen_ai.usage.cache_read.input_tokens"] = resp.usage.cached_input_tokens
            span.set_attributes(attributes)
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def _server(self, base_url: str) -> tuple[str, int | None]:
        found = self._servers.get(base_url)
        if found is None:
            parts = urlsplit(base_url)
            found = (parts.hostname or "", parts.port or {"http": 80, "https": 443}.get(parts.scheme))
            self._servers[base_url] = found
        return found
