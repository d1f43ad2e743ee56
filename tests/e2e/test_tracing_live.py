"""Spans from a real 2-worker gateway, received by a test OTLP collector over HTTP and over gRPC."""

from __future__ import annotations

import json
import re
import socket
import time
import uuid

import anthropic
import openai
import pytest
import urllib3

from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY, Fault, provider_env
from tests.support.otlp import OTLPCollector
from tests.support.processes import GatewayProcess, free_port, wait_until

pytestmark = pytest.mark.timeout(120)

PROMPT = "the launch code is swordfish"
CLIENT_KEY = "client-key-that-must-not-leak"
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100", "ENABLE_TRACING": "true"}
http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=20))


@pytest.fixture(scope="module")
def collector():
    c = OTLPCollector().start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def http_gw(emulator, collector):
    # RETRY_ATTEMPTS=1: one failed attempt, one span, then the fallback's.
    gw = GatewayProcess({**provider_env(emulator), **FAST_EXPORT, "OTLP_ENDPOINT": collector.http_endpoint,
                         "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "RETRY_ATTEMPTS": "1"}).start()
    yield gw
    gw.stop()


def new_traceparent() -> tuple[str, str, str]:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return f"00-{trace_id}-{parent}-01", trace_id, parent


def by_kind(spans, kind):
    return [s for s in spans if s.kind == kind]


def assert_nothing_secret(spans) -> None:
    for span in spans:
        for secret in (PROMPT, "swordfish", OPENAI_KEY, ANTHROPIC_KEY, CLIENT_KEY):
            assert secret.encode() not in span.raw, (span.name, secret)


def test_spans_continue_the_callers_trace_and_carry_genai_attributes(http_gw, collector, upstream):
    traceparent, trace_id, parent = new_traceparent()
    client = openai.OpenAI(base_url=http_gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=64, temperature=0.2, messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"traceparent": traceparent})
    completion = raw.parse()
    spans = collector.wait_for_trace(trace_id, 3)
    (server,) = by_kind(spans, "server")
    (attempt,) = by_kind(spans, "client")
    (lookup,) = by_kind(spans, "internal")
    assert lookup.name == "cache lookup" and lookup.parent_span_id == server.span_id
    assert lookup.attributes["llm_edge.cache"] == "miss"
    assert server.parent_span_id == parent  # continued from the caller
    assert attempt.parent_span_id == server.span_id
    assert server.name == "POST /v1/chat/completions" and attempt.name == "chat gpt-4o-mini"
    assert server.attributes["llm_edge.request_id"] == raw.headers["x-request-id"]
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["llm_edge.cost_cents"] > 0
    a = attempt.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini" and a["gen_ai.response.model"] == completion.model
    assert a["gen_ai.request.max_tokens"] == 64 and a["gen_ai.request.temperature"] == pytest.approx(0.2)
    assert a["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["server.address"] == "127.0.0.1"
    assert server.resource["service.name"] == "llm-edge-agent"
    # Upstream got the attempt span's context, not the caller's header.
    sent = upstream.last("/v1/chat/completions").headers["traceparent"]
    assert sent == f"00-{trace_id}-{attempt.span_id}-01"
    assert_nothing_secret(spans)

    # The same question again on the same connection (same worker): answered by L1, no attempt span.
    traceparent, trace_id, _ = new_traceparent()
    calls = upstream.count("/v1/chat/completions")
    again = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=64, temperature=0.2, messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"traceparent": traceparent})
    assert again.headers["x-llm-edge-cache"] == "hit-l1" and upstream.count("/v1/chat/completions") == calls
    spans = collector.wait_for_trace(trace_id, 2)
    assert sorted(s.kind for s in spans) == ["internal", "server"]
    (lookup,) = by_kind(spans, "internal")
    assert lookup.attributes["llm_edge.cache"] == "hit-l1"
    assert by_kind(spans, "server")[0].attributes["llm_edge.cache"] == "hit-l1"
    assert_nothing_secret(spans)


def test_an_embeddings_attempt_is_an_embeddings_span(http_gw, collector, upstream):
    traceparent, trace_id, _ = new_traceparent()
    client = openai.OpenAI(base_url=http_gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
    answer = client.embeddings.create(model="text-embedding-3-small", input=[PROMPT, f"second {uuid.uuid4().hex}"],
                                      extra_headers={"traceparent": traceparent})
    spans = collector.wait_for_trace(trace_id, 3)
    (server,) = by_kind(spans, "server")
    (attempt,) = by_kind(spans, "client")
    assert server.name == "POST /v1/embeddings" and attempt.name == "embeddings text-embedding-3-small"
    assert attempt.attributes["gen_ai.operation.name"] == "embeddings"
    assert attempt.attributes["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert server.attributes["llm_edge.cost_cents"] > 0
    assert upstream.last("/v1/embeddings").headers["traceparent"] == f"00-{trace_id}-{attempt.span_id}-01"
    assert_nothing_secret(spans)


def test_a_stream_and_a_fallback_give_one_span_per_attempt(http_gw, collector, upstream):
    traceparent, trace_id, _ = new_traceparent()
    upstream.push_faults(Fault(status=500), path="/v1/messages")  # "fast" is Anthropic first, then gpt-4o-mini
    client = anthropic.Anthropic(base_url=http_gw.url, api_key=CLIENT_KEY, max_retries=0, timeout=10)
    with client.messages.stream(model="fast", max_tokens=50, messages=[{"role": "user", "content": PROMPT}],
                                extra_headers={"traceparent": traceparent}) as stream:
        final = stream.get_final_message()
    spans = collector.wait_for_trace(trace_id, 4)
    (server,) = by_kind(spans, "server")
    failed, answered = sorted(by_kind(spans, "client"), key=lambda s: s.attributes["llm_edge.attempt"])
    assert failed.attributes["gen_ai.provider.name"] == "anthropic"
    assert failed.attributes["error.type"] == "http_5xx" and failed.status_code == 2  # STATUS_CODE_ERROR
    assert answered.attributes["gen_ai.provider.name"] == "openai" and answered.status_code != 2
    assert answered.attributes["llm_edge.stream"] is True
    assert answered.attributes["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert answered.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert server.attributes["gen_ai.request.model"] == "fast" and server.attributes["llm_edge.attempts"] == 2
    assert {s.parent_span_id for s in (failed, answered)} == {server.span_id}
    sent = [r.headers["traceparent"] for r in upstream.requests]
    assert sent == [f"00-{trace_id}-{failed.span_id}-01", f"00-{trace_id}-{answered.span_id}-01"]
    assert_nothing_secret(spans)


def test_without_traceparent_a_new_trace_starts_and_health_probes_make_none(http_gw, collector, upstream):
    collector.clear()
    assert http.request("GET", http_gw.url + "/health").status == 200
    resp = http.request("POST", http_gw.url + "/v1/chat/completions", headers={"content-type": "application/json"},
                        body=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}))
    request_id = resp.headers["x-request-id"]
    wait_until(lambda: any(s.attributes.get("llm_edge.request_id") == request_id for s in collector.spans),
               timeout=15, what="the request's span")
    server = next(s for s in collector.spans if s.attributes.get("llm_edge.request_id") == request_id)
    assert server.parent_span_id == ""
    assert not [s for s in collector.spans if "health" in s.name]
    sent = upstream.last("/v1/chat/completions").headers["traceparent"]
    flags = re.fullmatch(rf"00-{server.trace_id}-[0-9a-f]{{16}}-([0-9a-f]{{2}})", sent)
    assert flags and int(flags.group(1), 16) & 1  # sampled (the SDK may add the "random" flag, 0x02)


def test_grpc_is_the_default_protocol(emulator, collector, start_gateway, upstream):
    gw = start_gateway({**FAST_EXPORT, "OTLP_ENDPOINT": collector.grpc_endpoint})
    traceparent, trace_id, parent = new_traceparent()
    before = collector.requests["grpc"]
    resp = http.request("POST", gw.url + "/v1/chat/completions",
                        headers={"content-type": "application/json", "traceparent": traceparent},
                        body=json.dumps({"model": "claude-3-5-haiku-latest",
                                         "messages": [{"role": "user", "content": PROMPT}]}))
    assert resp.status == 200
    spans = collector.wait_for_trace(trace_id, 3)
    assert collector.requests["grpc"] > before
    (attempt,) = by_kind(spans, "client")
    assert attempt.attributes["gen_ai.provider.name"] == "anthropic"
    assert attempt.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert by_kind(spans, "server")[0].parent_span_id == parent
    assert_nothing_secret(spans)


def test_disabled_tracing_passes_the_callers_traceparent_through(start_gateway, upstream):
    gw = start_gateway({"ENABLE_TRACING": "false"})
    traceparent, _, _ = new_traceparent()
    resp = http.request("POST", gw.url + "/v1/chat/completions",
                        headers={"content-type": "application/json", "traceparent": traceparent},
                        body=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}))
    assert resp.status == 200
    assert upstream.last("/v1/chat/completions").headers["traceparent"] == traceparent


class Blackhole:
    """A collector that accepts connections and never answers: the worst kind of outage."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", free_port()))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_an_unreachable_collector_costs_requests_nothing_and_warns_once(start_gateway, upstream, protocol):
    hole = Blackhole()
    try:
        gw = start_gateway({**FAST_EXPORT, "OTLP_ENDPOINT": f"http://127.0.0.1:{hole.port}",
                            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol, "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
                            "OTEL_BSP_MAX_QUEUE_SIZE": "64"})

        def warnings() -> list[dict]:
            lines = [json.loads(line) for line in gw.logs().splitlines()]
            return [e for e in lines if e["logger"] == "llm_edge.tracing" and e["level"] == "warning"]

        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
        for _ in range(60):  # enough spans to overflow the 64-span queue of each worker
            resp = http.request("POST", gw.url + "/v1/chat/completions", body=body,
                                headers={"content-type": "application/json", "connection": "close"})
            assert resp.status == 200
        wait_until(lambda: warnings(), timeout=20, what="the collector warning")
        for _ in range(3):  # more export rounds time out (1 s each) while more requests are served
            time.sleep(1.2)
            for _ in range(10):
                assert http.request("POST", gw.url + "/v1/chat/completions", body=body,
                                    headers={"content-type": "application/json"}).status == 200
        seen = warnings()
        assert len(seen) == len({e["pid"] for e in seen}) <= 2  # one per worker, not one per batch
        assert str(hole.port) in seen[0]["msg"]
        assert gw.stop() == 0
        assert "SIGKILL" not in gw.logs()  # no worker had to be killed: exit does not wait for the collector
    finally:
        hole.close()
