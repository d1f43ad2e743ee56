"""POST /v1/messages/count_tokens against real gunicorn and the emulator, through the official Anthropic SDK.

The endpoint as Anthropic documents it ("Count tokens in a Message",
https://platform.claude.com/docs/en/api/python/messages/count_tokens; the SDK's
``client.messages.count_tokens``): the body of a Messages request without
``max_tokens``, the answer ``{"input_tokens": N}``. Claude models are relayed
(exact), other models estimated (``x-llm-edge-token-count: estimate``), and
every error under ``/v1/messages/`` is in Anthropic's shape.
"""

from __future__ import annotations

import hashlib
import json

import anthropic
import pytest
import urllib3
import yaml

from tests.conftest import ANTHROPIC_KEY, UNCACHED, Fault
from tests.support.metrics import scrape

pytestmark = pytest.mark.timeout(90)

PATH = "/v1/messages/count_tokens"
CLAUDE = "claude-3-5-haiku-latest"
WEATHER_TOOL = {"name": "get_weather", "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                 "required": ["city"]}}
http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=15))


@pytest.fixture
def client(gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="any-client-key", max_retries=0, timeout=10)


def post(gw, body=None, raw=None, path=PATH, headers=None, method="POST"):
    data = raw if raw is not None else json.dumps(body).encode()
    return http.request(method, gw.url + path, body=data,
                        headers={"content-type": "application/json", **(headers or {})})


def anthropic_error(resp) -> dict:
    body = json.loads(resp.data)
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"}, body
    return body["error"]


def count_calls(upstream) -> list:
    return [r for r in upstream.requests if r.path == PATH]


# --- Claude: relayed, exact -------------------------------------------------------------------------------------


def test_claude_count_is_relayed_with_the_providers_key_and_answer(client, upstream):
    messages = [{"role": "user", "content": "how warm is it in Paris today"}]
    raw = client.messages.with_raw_response.count_tokens(
        model=CLAUDE, system="Be brief.", messages=messages, tools=[WEATHER_TOOL],
        extra_headers={"anthropic-version": "2023-06-01"})  # the caller's version is the one that goes
    assert raw.parse().input_tokens == 9  # the emulator counts words: 2 of system, 7 of the message
    assert raw.headers["x-llm-edge-token-count"] == "exact"
    assert (raw.headers["x-llm-edge-provider"], raw.headers["x-llm-edge-model"]) == ("anthropic", CLAUDE)
    (sent,) = count_calls(upstream)
    assert sent.body == {"model": CLAUDE, "system": "Be brief.", "messages": messages, "tools": [WEATHER_TOOL]}
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY  # the gateway's key, never the client's
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["x-request-id"] == raw.headers["x-request-id"]


def test_the_body_goes_byte_for_byte_and_beta_headers_pass(gateway, upstream):
    # Odd spacing, key order, escapes, a field the gateway's codec does not know: all relayed as they came.
    raw = (b'{ "messages" : [{"role":"user","content":[{"type":"text","text":"caf\\u00e9 ol\\u00e9",'
           b'"cache_control":{"type":"ephemeral"}}]}],\n "model": "claude-3-5-haiku-latest",'
           b' "context_management": {"edits": []}, "thinking": {"type": "enabled", "budget_tokens": 2048} }')
    resp = post(gateway, raw=raw, path=PATH + "?beta=true",
                headers={"anthropic-version": "2023-06-01", "anthropic-beta": "token-counting-2024-11-01,x-y",
                         "x-api-key": "client-key", "anthropic-workspace-id": "wrkspc_client"})
    assert resp.status == 200, resp.data
    assert json.loads(resp.data) == {"input_tokens": 2}
    (sent,) = count_calls(upstream)
    assert sent.raw == raw and sent.query == "beta=true"
    assert sent.headers["anthropic-beta"] == "token-counting-2024-11-01,x-y"
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY and "anthropic-workspace-id" not in sent.headers


def test_an_alias_rewrites_only_the_model(client, upstream):
    messages = [{"role": "user", "content": "one two three"}]
    raw = client.messages.with_raw_response.count_tokens(model="fast", messages=messages)
    assert raw.parse().input_tokens == 3
    assert raw.headers["x-llm-edge-model"] == CLAUDE and raw.headers["x-llm-edge-token-count"] == "exact"
    (sent,) = count_calls(upstream)
    assert sent.body == {"model": CLAUDE, "messages": messages}


def test_the_beta_sdk_call_works(client, upstream):
    count = client.beta.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "hi there"}],
                                              betas=["context-management-2025-06-27"])
    assert count.input_tokens == 2
    (sent,) = count_calls(upstream)
    assert "context-management-2025-06-27" in sent.headers["anthropic-beta"]


# --- GPT: estimated -----------------------------------------------------------------------------------------------


def test_gpt_count_is_an_estimate_that_grows_with_the_input(client, upstream):
    def count(**kw):
        raw = client.messages.with_raw_response.count_tokens(model="gpt-4o-mini", **kw)
        assert raw.headers["x-llm-edge-token-count"] == "estimate"
        assert (raw.headers["x-llm-edge-provider"], raw.headers["x-llm-edge-model"]) == ("gateway", "gpt-4o-mini")
        return raw.parse().input_tokens

    short = count(messages=[{"role": "user", "content": "hi"}])
    longer = count(messages=[{"role": "user", "content": "hi " * 400}])
    with_system = count(system="You are a careful assistant. " * 20, messages=[{"role": "user", "content": "hi"}])
    with_tools = count(tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "hi"}])
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K" * 500}}
    with_image = count(messages=[{"role": "user", "content": [image, {"type": "text", "text": "hi"}]}])
    assert 0 < short < 20
    assert 250 < longer < 500  # 1200 characters: about 300 tokens
    assert short < with_system and short < with_tools
    assert 500 < with_image < 2000  # an image's fixed cost, not its 4000 characters of base64
    assert upstream.requests == []  # no provider was asked


def test_an_alias_whose_claude_primary_is_down_falls_back_to_an_estimate(start_gateway, upstream):
    gw = start_gateway({**UNCACHED, "RETRY_ATTEMPTS": "2", "RETRY_BACKOFF_BASE": "0.01"}, workers=1)
    upstream.set_default_fault(Fault(status=503), path=PATH)
    resp = post(gw, {"model": "fast", "messages": [{"role": "user", "content": "hello"}]})
    assert resp.status == 200, resp.data
    assert resp.headers["x-llm-edge-token-count"] == "estimate"
    assert resp.headers["x-llm-edge-model"] == "gpt-4o-mini"
    assert json.loads(resp.data)["input_tokens"] > 0
    assert len(count_calls(upstream)) == 2


# --- Errors, all in Anthropic's shape --------------------------------------------------------------------------


def test_unknown_model_is_a_404_in_anthropics_shape(client):
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.count_tokens(model="nope-1", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "not_found_error"
    assert "nope-1" in info.value.body["error"]["message"]


def test_unknown_subpaths_and_wrong_methods_answer_in_anthropics_shape(gateway):
    resp = post(gateway, {}, path="/v1/messages/whatever")
    assert resp.status == 404 and anthropic_error(resp)["type"] == "not_found_error"
    resp = http.request("GET", gateway.url + PATH)
    assert resp.status == 405 and anthropic_error(resp)["type"] == "invalid_request_error"
    assert "POST" in resp.headers["allow"]


@pytest.mark.parametrize("model", [CLAUDE, "gpt-4o-mini"])
@pytest.mark.parametrize("raw,names", [
    (b"{not json", "JSON"),
    (b"[1, 2]", "object"),
    (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
    (b'{"model": "MODEL"}', "messages"),
    (b'{"model": "MODEL", "messages": []}', "messages"),
    (b'{"model": "MODEL", "messages": "hi"}', "messages"),
])
def test_bad_bodies_are_400s_naming_the_field(gateway, upstream, model, raw, names):
    resp = post(gateway, raw=raw.replace(b"MODEL", model.encode()))
    assert resp.status == 400
    err = anthropic_error(resp)
    assert err["type"] == "invalid_request_error" and names in err["message"]
    assert upstream.requests == []


def test_deeper_mistakes_are_400s_from_the_codec_or_the_provider(gateway, upstream):
    bad_role = [{"role": "robot", "content": "hi"}]
    resp = post(gateway, {"model": "gpt-4o-mini", "messages": bad_role})  # estimated: the codec's rules
    assert resp.status == 400 and "messages[0].role" in anthropic_error(resp)["message"]
    resp = post(gateway, {"model": CLAUDE, "messages": bad_role})  # relayed: the provider's 400, passed back
    assert resp.status == 400 and "messages.0.role" in anthropic_error(resp)["message"]
    assert len(count_calls(upstream)) == 1
    resp = post(gateway, {"model": CLAUDE, "messages": [{"role": "user", "content": "hi"}]},
                headers={"anthropic-beta": "x" * 2000})
    assert resp.status == 400 and "anthropic-beta" in anthropic_error(resp)["message"]


# --- Provider failures: retried, breaker shared with chat -----------------------------------------------------


def test_a_failing_provider_is_retried_then_its_breaker_opens_for_chat_too(start_gateway, upstream):
    gw = start_gateway({**UNCACHED, "RETRY_ATTEMPTS": "3", "RETRY_BACKOFF_BASE": "0.01", "RETRY_BACKOFF_MAX": "0.02",
                        "BREAKER_FAILURE_THRESHOLD": "3", "BREAKER_FAILURE_RATE": "0", "BREAKER_COOLDOWN": "30"},
                       workers=1)
    body = {"model": CLAUDE, "messages": [{"role": "user", "content": "hello"}]}
    upstream.push_faults(Fault(status=500), Fault(status=529), path=PATH)
    resp = post(gw, body)  # two failures, then an answer
    assert resp.status == 200 and json.loads(resp.data) == {"input_tokens": 1}
    assert len(count_calls(upstream)) == 3

    upstream.set_default_fault(Fault(status=500), path=PATH)
    resp = post(gw, body)
    assert resp.status == 502 and anthropic_error(resp)["type"] == "api_error"
    assert len(count_calls(upstream)) == 6
    resp = post(gw, body)  # open: answered without reaching the provider
    assert resp.status == 503 and anthropic_error(resp)["type"] == "overloaded_error"
    assert int(resp.headers["retry-after"]) >= 1
    chat = post(gw, {**body, "max_tokens": 10}, path="/v1/messages")  # one breaker per provider
    assert chat.status == 503
    assert len(count_calls(upstream)) == 6 and upstream.count("/v1/messages") == 6

    metrics = scrape(gw.metrics_url)
    for status, n in (("200", 1), ("502", 1), ("503", 1)):
        assert metrics.total("llm_edge_requests_total", endpoint=PATH, provider="anthropic" if status == "200"
                             else "none", status=status) == n
    assert metrics.total("llm_edge_retries_total", provider="anthropic") == 4
    assert metrics.total("llm_edge_provider_errors_total", provider="anthropic", error_type="http_5xx") == 5
    assert metrics.total("llm_edge_circuit_breaker_state", provider="anthropic") == 2


# --- Access: keys and request limits apply; the endpoint and its unknown neighbours in metrics ------------------


def test_client_keys_and_request_limits_apply(start_gateway, upstream, tmp_path):
    key = "sk-edge-count-tokens-client-0001"
    (tmp_path / "clients.yaml").write_text(yaml.safe_dump({"clients": [
        {"id": "counter", "tier": "tiny", "key_sha256": hashlib.sha256(key.encode()).hexdigest()}]}))
    (tmp_path / "limits.yaml").write_text(yaml.safe_dump({"rate_limiting": {
        "global": {"requests_per_second": 1000},
        "per_client": {"tier_tiny": {"requests_per_second": 0.1, "burst": 3}}}}))
    gw = start_gateway({"CLIENTS_FILE": str(tmp_path / "clients.yaml"),
                        "RATE_LIMITS_FILE": str(tmp_path / "limits.yaml")}, workers=1)
    with pytest.raises(anthropic.AuthenticationError) as info:
        anthropic.Anthropic(base_url=gw.url, api_key="sk-edge-wrong", max_retries=0).messages.count_tokens(
            model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["error"]["type"] == "authentication_error"
    resp = post(gw, {}, path="/v1/messages/whatever")  # unknown paths answer 401 until the caller is known
    assert resp.status == 401 and anthropic_error(resp)["type"] == "authentication_error"

    client = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=10)
    statuses = []
    for _ in range(5):
        try:
            client.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
            statuses.append(200)
        except anthropic.RateLimitError as err:
            assert err.body["error"]["type"] == "rate_limit_error"
            assert int(err.response.headers["retry-after"]) >= 1
            statuses.append(429)
    assert statuses == [200, 200, 200, 429, 429]
    assert len(count_calls(upstream)) == 3

    resp = post(gw, {}, path="/v1/messages/whatever", headers={"x-api-key": key})
    metrics = scrape(gw.metrics_url)
    assert metrics.total("llm_edge_requests_total", endpoint=PATH, status="200") == 3
    assert metrics.total("llm_edge_requests_total", endpoint=PATH, status="429") == 2
    assert metrics.total("llm_edge_requests_total", endpoint=PATH, status="401") == 1
    assert metrics.total("llm_edge_requests_total", endpoint="/v1/messages/whatever") == 0  # "other"
    assert metrics.total("llm_edge_tokens_total") == 0 and metrics.total("llm_edge_cost_total_cents") == 0
    lines = [json.loads(line) for line in gw.logs().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("endpoint") == PATH]
    assert len(access) == 6 and {a["status"] for a in access} == {200, 401, 429}
