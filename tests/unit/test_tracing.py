"""Spans in-process with the SDK's in-memory exporter: parentage, traceparent, attributes, outages."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.config.settings import Settings
from app.context import RequestContext
from app.formats.canonical import ChatRequest, ChatResponse, Message, TextBlock, Usage
from app.observability import tracing as tracing_module
from app.observability.tracing import Tracing, _exporter, _OneWarningExporter
from app.providers.routing import Provider, Target

pytestmark = pytest.mark.timeout(30)

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_PARENT = "b7ad6b7169203331"
PROMPT = "the secret plan is 42"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(spans: InMemorySpanExporter) -> Tracing:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return Tracing(provider.get_tracer("test"), provider)


def target(name: str = "openai", base_url: str = "https://api.openai.com/v1") -> Target:
    return Target(Provider(name, "openai", base_url, "sk-xyz-secret-key-000000", "OPENAI_API_KEY", True), "gpt-4o")


def request(stream: bool = False) -> ChatRequest:
    return ChatRequest(model="smart", messages=(Message("user", (TextBlock(PROMPT),)),), max_tokens=50,
                       temperature=0.5, stream=stream)


def answer() -> ChatResponse:
    return ChatResponse(id="chatcmpl-1", model="gpt-4o-2024-08-06", content=(TextBlock("the answer is 42"),),
                        stop_reason="end_turn", usage=Usage(11, 7, 3))


def test_request_and_attempt_spans_continue_the_callers_trace(tracing, spans) -> None:
    ctx = RequestContext("req-1", "/v1/chat/completions", "openai",
                         traceparent=f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01")
    tracing.start_request(ctx, "POST", "/v1/chat/completions", "/v1/chat/completions")
    headers: dict[str, str] = {}
    ctx.attempts = 1
    attempt = tracing.start_attempt(ctx, target(), request(), headers)
    Tracing.end_attempt(attempt, target(), answer())
    ctx.requested_model, ctx.provider, ctx.model, ctx.cost_cents = "smart", "openai", "gpt-4o", 0.01
    Tracing.end_request(ctx)
    assert ctx.span is None

    by_name = {s.name: s for s in spans.get_finished_spans()}
    server, client = by_name["POST /v1/chat/completions"], by_name["chat gpt-4o"]
    assert server.kind is SpanKind.SERVER and client.kind is SpanKind.CLIENT
    assert format(server.context.trace_id, "032x") == CLIENT_TRACE
    assert format(server.parent.span_id, "016x") == CLIENT_PARENT
    assert client.parent.span_id == server.context.span_id
    # What goes upstream is the attempt span's context, not the client's header.
    assert headers["traceparent"] == f"00-{CLIENT_TRACE}-{format(client.context.span_id, '016x')}-01"

    a = client.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert a["gen_ai.response.id"] == "chatcmpl-1"
    assert a["gen_ai.usage.input_tokens"] == 11 and a["gen_ai.usage.output_tokens"] == 7
    assert a["gen_ai.usage.cache_read.input_tokens"] == 3
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("stop",)
    assert a["gen_ai.request.max_tokens"] == 50 and a["gen_ai.request.temperature"] == 0.5
    assert a["server.address"] == "api.openai.com" and a["server.port"] == 443
    s = server.attributes
    assert s["http.response.status_code"] == 200 and s["llm_edge.request_id"] == "req-1"
    assert s["gen_ai.request.model"] == "smart"
    for span in (server, client):
        text = repr(dict(span.attributes)) + span.name
        assert PROMPT not in text and "42" not in text.replace("chatcmpl-1", "")
        assert "sk-xyz" not in text


def test_anthropic_finish_reasons_are_anthropics_own(tracing, spans) -> None:
    ctx = RequestContext("req-2", "/v1/messages", "anthropic")
    tracing.start_request(ctx, "POST", "/v1/messages", "/v1/messages")
    anthropic = Target(Provider("anthropic", "anthropic", "http://127.0.0.1:9999", None, None, False), "claude-x")
    span = tracing.start_attempt(ctx, anthropic, request(), {})
    Tracing.end_attempt(span, anthropic, answer())
    Tracing.end_request(ctx)
    client = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT)
    assert tuple(client.attributes["gen_ai.response.finish_reasons"]) == ("end_turn",)
    assert client.attributes["server.port"] == 9999


def test_a_request_without_traceparent_starts_a_new_trace(tracing, spans) -> None:
    ctx = RequestContext("req-3", "/v1/chat/completions", "openai")
    tracing.start_request(ctx, "POST", "/v1/chat/completions", "/v1/chat/completions")
    Tracing.end_request(ctx)
    (server,) = spans.get_finished_spans()
    assert server.parent is None


def test_unknown_paths_do_not_name_spans(tracing, spans) -> None:
    ctx = RequestContext("req-3b", "other", "openai")
    tracing.start_request(ctx, "GET", "other", "/wp-admin/x1")
    ctx.status = 404
    Tracing.end_request(ctx)
    (server,) = spans.get_finished_spans()
    assert server.name == "GET" and server.attributes["url.path"] == "/wp-admin/x1"
    assert "http.route" not in server.attributes


def test_failed_attempts_and_5xx_requests_are_errors(tracing, spans) -> None:
    ctx = RequestContext("req-4", "/v1/chat/completions", "openai")
    tracing.start_request(ctx, "POST", "/v1/chat/completions", "/v1/chat/completions")
    span = tracing.start_attempt(ctx, target(), request(), {})
    Tracing.end_attempt(span, target(), error="timeout")
    ctx.status, ctx.error_type = 504, "upstream_timeout"
    Tracing.end_request(ctx)
    by_kind = {s.kind: s for s in spans.get_finished_spans()}
    assert by_kind[SpanKind.CLIENT].status.status_code is StatusCode.ERROR
    assert by_kind[SpanKind.CLIENT].attributes["error.type"] == "timeout"
    assert by_kind[SpanKind.SERVER].status.status_code is StatusCode.ERROR
    assert by_kind[SpanKind.SERVER].attributes["error.type"] == "upstream_timeout"


def test_cache_lookup_is_a_child_of_the_request(tracing, spans) -> None:
    ctx = RequestContext("req-5", "/v1/chat/completions", "openai")
    tracing.start_request(ctx, "POST", "/v1/chat/completions", "/v1/chat/completions")
    with tracing.cache_lookup(ctx) as span:
        span.set_attribute("llm_edge.cache.result", "miss")
    Tracing.end_request(ctx)
    by_name = {s.name: s for s in spans.get_finished_spans()}
    lookup = by_name["cache lookup"]
    assert lookup.parent.span_id == by_name["POST /v1/chat/completions"].context.span_id
    assert lookup.attributes["llm_edge.cache.result"] == "miss"


def test_disabled_tracing_builds_nothing_and_forwards_the_callers_traceparent() -> None:
    off = Tracing.from_settings(Settings(enable_tracing=False))
    assert not off.enabled
    incoming = f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"
    ctx = RequestContext("req-6", "/v1/chat/completions", "openai", traceparent=incoming)
    off.start_request(ctx, "POST", "/v1/chat/completions", "/v1/chat/completions")
    assert ctx.span is None
    headers: dict[str, str] = {}
    assert off.start_attempt(ctx, target(), request(), headers) is None
    assert headers == {"traceparent": incoming}
    with off.cache_lookup(ctx) as span:
        assert span is None
    Tracing.end_attempt(None, target())
    Tracing.end_request(ctx)
    off.shutdown()


def test_protocol_picks_the_exporter_and_http_gets_the_traces_path() -> None:
    grpc, url = _exporter(Settings(otlp_endpoint="http://collector:4317"))
    assert type(grpc).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc") and url == "http://collector:4317"
    grpc.shutdown()
    http, url = _exporter(Settings(otlp_endpoint="http://collector:4318", otlp_protocol="http/protobuf"))
    assert type(http).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    assert url == "http://collector:4318/v1/traces"
    http.shutdown()
    _, url = _exporter(Settings(otlp_endpoint="http://c:4318/custom/traces", otlp_protocol="http/protobuf"))
    assert url == "http://c:4318/custom/traces"


class FlakyExporter:
    """Stands in for the collector's side: answers with whatever the test sets."""

    def __init__(self) -> None:
        self.result = SpanExportResult.FAILURE
        self.raise_error = False
        self.batches = 0
        self.shut = False

    def export(self, spans: Sequence[object]) -> SpanExportResult:
        self.batches += 1
        if self.raise_error:
            raise ConnectionError("boom")
        return self.result

    def shutdown(self) -> None:
        self.shut = True


def test_one_warning_per_outage_and_one_line_when_it_is_back(caplog) -> None:
    inner = FlakyExporter()
    wrapper = _OneWarningExporter(inner, "http://jaeger:4317", "grpc")  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="llm_edge.tracing"):
        for _ in range(5):
            assert wrapper.export([]) is SpanExportResult.FAILURE
        inner.raise_error = True
        assert wrapper.export([]) is SpanExportResult.FAILURE
        inner.raise_error = False
        inner.result = SpanExportResult.SUCCESS
        wrapper.export([])
        wrapper.export([])
        inner.result = SpanExportResult.FAILURE
        wrapper.export([])
    levels = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "llm_edge.tracing"]
    assert [lvl for lvl, _ in levels] == ["WARNING", "INFO", "WARNING"]
    assert "http://jaeger:4317" in levels[0][1]


def test_shutdown_does_not_wait_for_a_dead_collector() -> None:
    inner = FlakyExporter()
    wrapper = _OneWarningExporter(inner, "http://jaeger:4317", "grpc")  # type: ignore[arg-type]
    wrapper.export([])
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(wrapper))  # type: ignore[arg-type]
    tracing = Tracing(provider.get_tracer("t"), provider, wrapper)
    tracing.shutdown()
    assert inner.shut
    batches = inner.batches
    assert wrapper.export([]) is SpanExportResult.FAILURE and inner.batches == batches  # not even tried
    tracing.shutdown()  # twice is harmless


def test_enabled_tracing_quiets_the_sdk_loggers() -> None:
    tracing = Tracing.from_settings(Settings(otlp_endpoint="http://127.0.0.1:9", otlp_protocol="http/protobuf"))
    try:
        assert tracing.enabled
        assert logging.getLogger("opentelemetry.exporter.otlp.proto.http").getEffectiveLevel() == logging.CRITICAL
        assert tracing_module.log.name == "llm_edge.tracing"
    finally:
        tracing.shutdown()


def test_exporter_queue_settings_are_validated_before_any_worker_starts() -> None:
    from app.config.settings import ConfigError

    s = Settings.from_env({"OTEL_BSP_MAX_QUEUE_SIZE": "64"})
    assert (s.otel_queue_size, s.otel_batch_size) == (64, 64)  # the batch default shrinks to fit
    s = Settings.from_env({"OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10",
                           "OTEL_BSP_SCHEDULE_DELAY": "250", "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5"})
    assert (s.otel_queue_size, s.otel_batch_size, s.otel_schedule_delay_ms, s.otel_export_timeout) == \
        (100, 10, 250, 2.5)
    with pytest.raises(ConfigError, match=r"OTEL_BSP_MAX_EXPORT_BATCH_SIZE \(20\) must not exceed"):
        Settings.from_env({"OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "20"})
    with pytest.raises(ConfigError, match="OTEL_BSP_MAX_QUEUE_SIZE must be an integer"):
        Settings.from_env({"OTEL_BSP_MAX_QUEUE_SIZE": "lots"})
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_TIMEOUT"):
        Settings.from_env({"OTEL_EXPORTER_OTLP_TIMEOUT": "0"})
