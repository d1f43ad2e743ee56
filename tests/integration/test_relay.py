"""Same dialect = relay (in-process app, emulator upstream over real HTTP).

The caller's body goes upstream as it came (only ``model`` rewritten by an alias, plus
``stream_options.include_usage`` for OpenAI streams), the provider's bytes come back as they came,
and the observer still counts tokens, fills the cache and passes errors. Provider payloads:
tests/support/provider_payloads.py (shapes from the providers' API references, cited there).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from falcon.testing import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.factory import create_gateway
from app.observability import metrics
from tests.conftest import UNCACHED, Fault, provider_env
from tests.support import provider_payloads as pp

pytestmark = pytest.mark.timeout(120)

CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"
MODELS_YAML = """
models:
  aliased-gpt:
    provider: openai
    model: gpt-4o-mini
  aliased-claude:
    provider: anthropic
    model: claude-sonnet-4-5
  gpt-then-claude:
    provider: openai
    model: gpt-4o
    fallbacks: [claude-3-5-haiku-latest]
"""


def gateway(upstream, tmp: Path, **env: str) -> TestClient:
    models = tmp / "models.yaml"
    models.write_text(MODELS_YAML)
    gw = create_gateway(environ={**provider_env(upstream), "ENABLE_TRACING": "false", "REQUEST_TIMEOUT": "10",
                                 "RETRY_ATTEMPTS": "1", "ENABLE_L2_CACHE": "false", "MODELS_FILE": str(models),
                                 **env})
    return TestClient(gw.app)


@pytest.fixture(scope="module")
def uncached(emulator, tmp_path_factory) -> TestClient:
    return gateway(emulator, tmp_path_factory.mktemp("relay"), **UNCACHED)


@pytest.fixture
def cached(upstream, tmp_path) -> TestClient:
    return gateway(upstream, tmp_path)


# --- Property: the upstream receives the caller's body ------------------------------------------------------

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=8),
                      st.floats(allow_nan=False, allow_infinity=False, width=32))
json_values = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)
# Names the gateway does not know (and that no validation bound applies to).
unknown_names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12).map(lambda s: "x_" + s)
extra_fields = st.dictionaries(unknown_names, json_values, max_size=4)


def block(kind: str, extra: dict) -> dict:
    return {"type": kind, **extra}


openai_parts = st.lists(st.one_of(
    st.builds(lambda t, e: {"type": "text", "text": t, **e}, st.text(max_size=10), extra_fields),
    st.builds(block, st.sampled_from(["input_audio", "file", "x_new_part"]), extra_fields),
), min_size=1, max_size=3)
openai_messages = st.lists(st.one_of(
    st.builds(lambda c, e: {"role": "user", "content": c, **e}, st.one_of(st.text(max_size=10), openai_parts),
              extra_fields),
    st.builds(lambda c: {"role": "developer", "content": c}, st.text(max_size=10)),
    st.builds(lambda e: {"role": "assistant", "content": None, "refusal": "no", "annotations": [], **e},
              extra_fields),
), min_size=1, max_size=4)

anthropic_blocks = st.lists(st.one_of(
    st.builds(lambda t: {"type": "text", "text": t, "cache_control": {"type": "ephemeral"}}, st.text(max_size=10)),
    st.just({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"},
             "citations": {"enabled": True}, "title": "A doc"}),
    st.builds(block, st.sampled_from(["search_result", "x_new_block", "container_upload"]), extra_fields),
), min_size=1, max_size=3)
assistant_blocks = st.lists(st.one_of(
    st.just({"type": "thinking", "thinking": "hm", "signature": pp.SIGNATURE}),
    st.just({"type": "redacted_thinking", "data": pp.REDACTED}),
    st.just({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}}),
    st.just({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}),
    st.builds(block, st.just("x_other"), extra_fields),
), min_size=1, max_size=3)
anthropic_messages = st.lists(st.tuples(anthropic_blocks, assistant_blocks), min_size=1, max_size=2).map(
    lambda turns: [m for user, assistant in turns for m in ({"role": "user", "content": user},
                                                           {"role": "assistant", "content": assistant})][:-1])


def relay_once(client: TestClient, emulator, path: str, body: dict, stream: bool, script: bytes) -> tuple:
    """Post ``body`` (streamed if ``stream``) as exact bytes against a scripted answer: (bytes sent,
    the gateway's response, the request the provider received)."""
    emulator.reset()
    emulator.push_faults(Fault(script=script))
    if stream:
        body["stream"] = True
    raw = orjson.dumps(body)
    r = client.simulate_post(path, body=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    return raw, r, emulator.requests[-1]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=openai_messages, extra=extra_fields, alias=st.booleans(), stream=st.booleans())
def test_openai_body_reaches_the_provider_unchanged_but_the_model(uncached, emulator, messages, extra, alias,
                                                                    stream):
    body = {"model": "aliased-gpt" if alias else "gpt-4o-mini", "messages": messages, **extra}
    raw, _, sent = relay_once(uncached, emulator, CHAT, body, stream,
                              pp.openai_stream(True) if stream else pp.OPENAI_JSON)
    if not alias and not stream:
        assert sent.raw == raw  # the caller's bytes, untouched
    expected = {**body, "model": "gpt-4o-mini"}
    if stream:
        expected["stream_options"] = {"include_usage": True}  # the one documented addition
    assert orjson.loads(sent.raw) == expected


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=anthropic_messages, extra=extra_fields, alias=st.booleans(), stream=st.booleans())
def test_anthropic_body_reaches_the_provider_unchanged_but_the_model(uncached, emulator, messages, extra, alias,
                                                                      stream):
    body = {"model": "aliased-claude" if alias else "claude-sonnet-4-5", "max_tokens": 64, "messages": messages,
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
            "thinking": {"type": "enabled", "budget_tokens": 2048}, **extra}
    answer = orjson.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                           "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                           "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}})
    raw, r, sent = relay_once(uncached, emulator, MESSAGES, body, stream, pp.ANTHROPIC_STREAM if stream else answer)
    assert orjson.loads(sent.raw) == {**body, "model": "claude-sonnet-4-5"}
    if not alias:
        assert sent.raw == raw
    if stream:
        assert r.content == pp.ANTHROPIC_STREAM


# --- Streams: byte for byte, observed ------------------------------------------------------------------------

def test_anthropic_stream_is_relayed_byte_for_byte_counted_and_replayed_from_the_cache(cached, upstream):
    """Thinking with its signature, redacted thinking, a server tool and its result, citations, pings and a
    comment: the caller gets exactly the provider's bytes; tokens come from the observer; a repeat is a hit
    with the same bytes."""
    upstream.push_faults(Fault(script=pp.ANTHROPIC_STREAM))
    tokens = metrics.child(metrics.TOKENS, "anthropic", metrics.MODEL_LABELS("claude-sonnet-4-5"), "prompt")
    before = tokens._value.get()
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "messages": [{"role": "user", "content": "Weather in NYC?"}]}
    live = cached.simulate_post(MESSAGES, json=body, headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert live.status_code == 200 and live.headers["x-llm-edge-cache"] == "miss"
    assert live.content == pp.ANTHROPIC_STREAM
    assert tokens._value.get() - before == pp.ANTHROPIC_STREAM_INPUT
    sent = upstream.requests[-1]
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert live.headers["x-llm-edge-upstream-request-id"].startswith("req_")
    replay = cached.simulate_post(MESSAGES, json=body)
    assert replay.headers["x-llm-edge-cache"] == "hit-l1" and replay.content == pp.ANTHROPIC_STREAM
    assert upstream.count() == 1


def test_a_provider_error_event_mid_stream_reaches_the_caller_as_it_came(cached, upstream):
    upstream.push_faults(Fault(script=pp.ANTHROPIC_ERROR_STREAM))
    body = {"model": "claude-sonnet-4-5", "max_tokens": 16, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    r = cached.simulate_post(MESSAGES, json=body)
    assert r.content == pp.ANTHROPIC_ERROR_STREAM  # one error event: the provider's, no second one of ours
    again = cached.simulate_post(MESSAGES, json=body)  # a failed stream is never cached
    assert again.headers["x-llm-edge-cache"] == "miss"


def test_openai_stream_gets_exactly_what_the_provider_would_have_sent(cached, upstream):
    """The gateway asks for usage; a caller that did not gets no usage chunk and no ``"usage":null``."""
    for wants_usage in (False, True):
        upstream.push_faults(Fault(script=pp.openai_stream(True)))
        body = {"model": "gpt-4o-mini", "stream": True, "logprobs": True,
                "messages": [{"role": "user", "content": f"hi {wants_usage}"}]}
        if wants_usage:
            body["stream_options"] = {"include_usage": True}
        r = cached.simulate_post(CHAT, json=body)
        assert r.status_code == 200
        assert r.content == pp.openai_stream(wants_usage)
        assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}
        replay = cached.simulate_post(CHAT, json=body)
        assert replay.headers["x-llm-edge-cache"] == "hit-l1" and replay.content == r.content


def test_openai_json_fields_the_gateway_does_not_know_come_back_byte_identical(cached, upstream):
    upstream.push_faults(Fault(script=pp.OPENAI_JSON))
    cost = metrics.child(metrics.COST_CENTS, "openai", metrics.MODEL_LABELS("gpt-4o-mini"))
    before = cost._value.get()
    body = {"model": "gpt-4o-mini", "logprobs": True, "top_logprobs": 2,
            "messages": [{"role": "developer", "content": "Be kind."}, {"role": "user", "content": "Hello"}]}
    r = cached.simulate_post(CHAT, json=body)
    assert r.content == pp.OPENAI_JSON
    assert upstream.requests[-1].body["messages"][0]["role"] == "developer"  # not rewritten to system
    assert cost._value.get() > before  # priced from the observed usage
    hit = cached.simulate_post(CHAT, json=body)
    assert hit.headers["x-llm-edge-cache"] == "hit-l1" and hit.content == pp.OPENAI_JSON


# --- Validation, fallbacks, headers ---------------------------------------------------------------------------

def test_relay_still_refuses_what_the_gateway_needs_valid(uncached, upstream):
    bad = [({"model": "gpt-4o-mini"}, "messages"), ({"model": "gpt 4o", "messages": []}, "model"),
           ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
           ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2**40},
            "max_tokens")]
    for body, param in bad:
        r = uncached.simulate_post(CHAT, json=body)
        assert r.status_code == 400 and r.json["error"]["param"] == param, (body, r.text)
    assert upstream.count() == 0


def test_a_body_only_a_relay_can_carry_is_the_translated_targets_400(uncached, upstream):
    """A text-source document block relays to Anthropic; to an OpenAI model the codec's 400 names its source
    (only base64 PDFs translate)."""
    doc = {"role": "user", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                                         "data": "d"}}]}
    r = uncached.simulate_post(MESSAGES, json={"model": "gpt-4o-mini", "max_tokens": 8, "messages": [doc]})
    assert r.status_code == 400 and "messages[0].content[0].source.type" in r.json["error"]["message"]
    assert upstream.count() == 0


def test_each_attempt_relays_or_translates_by_its_own_target(uncached, upstream):
    """Primary gpt-4o (relayed) fails; the fallback claude is translated from the same caller body."""
    upstream.push_faults(Fault(status=500), path="/v1/chat/completions")
    r = uncached.simulate_post(CHAT, json={"model": "gpt-then-claude", "x_vendor_flag": None,
                                           "messages": [{"role": "user", "content": "fall back"}]})
    assert r.status_code == 200 and r.headers["x-llm-edge-provider"] == "anthropic"
    assert r.json["choices"][0]["message"]["content"] == "Echo: fall back"
    first, second = upstream.requests[-2:]
    assert first.path == "/v1/chat/completions" and second.path == "/v1/messages"


def test_a_relayed_body_the_fallback_cannot_translate_skips_the_fallback(uncached, upstream):
    """``n: 2`` relays to gpt-4o (its 500 is the answer); the Claude fallback is never called with a body it
    could not express, and the caller is not told about a 400 it did not cause."""
    upstream.reset()
    upstream.push_faults(Fault(status=500), path="/v1/chat/completions")
    r = uncached.simulate_post(CHAT, json={"model": "gpt-then-claude", "n": 2,
                                           "messages": [{"role": "user", "content": "two answers"}]})
    assert r.status_code == 502, r.text
    assert [q.path for q in upstream.requests] == ["/v1/chat/completions"]
    assert upstream.requests[0].body["n"] == 2


def test_an_aliased_relayed_body_goes_upstream_on_its_miss_only_with_its_model_rewritten(cached, upstream):
    """The relayed bytes are made for the attempt (after the cache lookup): the miss sends the caller's body
    with the alias's model, the repeat is a hit that sends nothing."""
    upstream.reset()
    body = {"model": "aliased-gpt", "messages": [{"role": "user", "content": "once"}], "temperature": 0.1}
    for tier in ("miss", "hit-l1"):
        r = cached.simulate_post(CHAT, json=body)
        assert r.status_code == 200 and r.headers["x-llm-edge-cache"] == tier, r.text
    assert upstream.count() == 1
    assert upstream.requests[0].body == {**body, "model": "gpt-4o-mini"}


def test_openai_org_headers_go_upstream_only_when_allowed(upstream, tmp_path):
    headers = {"openai-organization": "org-123", "openai-project": "proj_456", "authorization": "Bearer client"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "org"}]}
    for allowed in (False, True):
        client = gateway(upstream, tmp_path, FORWARD_OPENAI_ORG_HEADERS=str(allowed).lower(), **UNCACHED)
        assert client.simulate_post(CHAT, json=body, headers=headers).status_code == 200
        sent = upstream.requests[-1].headers
        assert ("openai-organization" in sent) is allowed and ("openai-project" in sent) is allowed
        assert sent["authorization"] != "Bearer client"  # the caller's own key never goes on


def test_provider_request_id_and_anthropic_rate_limits_come_back_openais_do_not_clash(cached, upstream):
    limits = {"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "49",
              "anthropic-ratelimit-tokens-reset": "2025-01-01T00:00:00Z"}
    upstream.push_faults(Fault(headers=limits))
    r = cached.simulate_post(MESSAGES, json={"model": "claude-sonnet-4-5", "max_tokens": 8,
                                             "messages": [{"role": "user", "content": "limits"}]})
    assert r.status_code == 200 and r.headers["x-llm-edge-upstream-request-id"].startswith("req_")
    assert {k: r.headers[k] for k in limits} == limits
    upstream.push_faults(Fault(headers={"x-ratelimit-limit-requests": "9999", "x-request-id": "req_openai_1"}))
    r = cached.simulate_post(CHAT, json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "rl"}]})
    assert "req_openai_1" in r.headers["x-llm-edge-upstream-request-id"]  # the emulator sends its own too
    assert r.headers.get("x-ratelimit-limit-requests") != "9999"  # the gateway's own header, or none
    hit = cached.simulate_post(CHAT, json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "rl"}]})
    assert hit.headers["x-llm-edge-cache"] == "hit-l1" and "x-llm-edge-upstream-request-id" not in hit.headers
