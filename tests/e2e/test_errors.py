"""Bad input and failing providers: the right status, in the caller's error shape."""

from __future__ import annotations

import json

import pytest
import urllib3

from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY, Fault

pytestmark = pytest.mark.timeout(60)

http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=15))
OPENAI_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_BODY = {"model": "claude-3-5-haiku-latest", "max_tokens": 50,
                  "messages": [{"role": "user", "content": "hi"}]}


def post(gateway, path, body=None, raw=None, headers=None):
    data = raw if raw is not None else json.dumps(body).encode()
    return http.request("POST", gateway.url + path, body=data,
                        headers={"content-type": "application/json", **(headers or {})})


def openai_error(resp) -> dict:
    body = json.loads(resp.data)
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def anthropic_error(resp) -> dict:
    body = json.loads(resp.data)
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    return body["error"]


def test_missing_field_names_it_in_each_dialect(gateway):
    resp = post(gateway, "/v1/chat/completions", {"model": "gpt-4o-mini"})
    assert resp.status == 400
    err = openai_error(resp)
    assert err["param"] == "messages" and "messages" in err["message"]
    resp = post(gateway, "/v1/messages", {"model": "claude-3-5-haiku-latest", "messages": []})
    assert resp.status == 400
    assert "max_tokens" in anthropic_error(resp)["message"] or "messages" in anthropic_error(resp)["message"]


def test_invalid_json_and_wrong_types(gateway):
    resp = post(gateway, "/v1/chat/completions", raw=b"{not json")
    assert resp.status == 400 and openai_error(resp)["param"] == "body"
    resp = post(gateway, "/v1/messages", raw=b"[1, 2]")
    assert resp.status == 400 and anthropic_error(resp)["type"] == "invalid_request_error"
    resp = post(gateway, "/v1/chat/completions", {**OPENAI_BODY, "temperature": "hot"})
    assert resp.status == 400 and openai_error(resp)["param"] == "temperature"


def test_untranslatable_field_is_a_400_not_silence(gateway, upstream):
    resp = post(gateway, "/v1/chat/completions", {**OPENAI_BODY, "model": "claude-3-5-haiku-latest",
                                                  "logit_bias": {"50256": -100}})
    assert resp.status == 400 and openai_error(resp)["param"] == "logit_bias"
    resp = post(gateway, "/v1/messages", {**ANTHROPIC_BODY, "model": "gpt-4o-mini", "top_k": 5})
    assert resp.status == 400 and "top_k" in anthropic_error(resp)["message"]
    assert upstream.count() == 0


def test_unknown_model_is_404_model_not_found(gateway):
    resp = post(gateway, "/v1/chat/completions", {**OPENAI_BODY, "model": "llama-unknown"})
    assert resp.status == 404 and openai_error(resp)["code"] == "model_not_found"
    resp = post(gateway, "/v1/messages", {**ANTHROPIC_BODY, "model": "llama-unknown"})
    assert resp.status == 404 and anthropic_error(resp)["type"] == "not_found_error"


def test_unknown_path_and_wrong_method(gateway):
    resp = http.request("GET", gateway.url + "/v2/nothing")
    assert resp.status == 404 and openai_error(resp)
    resp = http.request("GET", gateway.url + "/v1/chat/completions")
    assert resp.status == 405 and openai_error(resp)
    resp = http.request("DELETE", gateway.url + "/v1/messages")
    assert resp.status == 405 and anthropic_error(resp)


def test_body_too_large_and_not_json(gateway):
    big = {**OPENAI_BODY, "messages": [{"role": "user", "content": "x" * 70000}]}
    resp = post(gateway, "/v1/chat/completions", big)
    assert resp.status == 413 and "MAX_REQUEST_BYTES" in openai_error(resp)["message"]
    resp = http.request("POST", gateway.url + "/v1/messages", body=b"hello",
                        headers={"content-type": "text/plain"})
    assert resp.status == 415 and anthropic_error(resp)


def test_upstream_5xx_is_502(gateway, upstream):
    upstream.set_default_fault(Fault(status=500))
    resp = post(gateway, "/v1/chat/completions", OPENAI_BODY)
    assert resp.status == 502 and openai_error(resp)["type"] == "server_error"
    resp = post(gateway, "/v1/messages", ANTHROPIC_BODY)
    assert resp.status == 502 and anthropic_error(resp)["type"] == "api_error"


def test_upstream_429_comes_back_with_retry_after(gateway, upstream):
    upstream.set_default_fault(Fault(status=429, retry_after=7))
    resp = post(gateway, "/v1/chat/completions", OPENAI_BODY)
    assert resp.status == 429 and resp.headers["retry-after"] == "7"
    assert openai_error(resp)["type"] == "rate_limit_error"


def test_upstream_400_is_passed_back_in_the_callers_shape(gateway, upstream):
    upstream.set_default_fault(Fault(status=400))
    resp = post(gateway, "/v1/messages", {**ANTHROPIC_BODY, "model": "gpt-4o-mini"})
    assert resp.status == 400 and anthropic_error(resp)["type"] == "invalid_request_error"


def test_upstream_auth_failure_is_502_without_keys(gateway, upstream):
    upstream.set_default_fault(Fault(status=401))
    resp = post(gateway, "/v1/chat/completions", {**OPENAI_BODY, "model": "claude-3-5-haiku-latest"},
                headers={"authorization": "Bearer client-secret-key-123"})
    assert resp.status == 502
    text = resp.data.decode()
    assert "ANTHROPIC_API_KEY" in text
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, "client-secret-key-123"):
        assert secret not in text and secret not in str(resp.headers)


def test_garbage_from_provider_is_502(gateway, upstream):
    upstream.set_default_fault(Fault(garbage=True))
    resp = post(gateway, "/v1/chat/completions", OPENAI_BODY)
    assert resp.status == 502 and openai_error(resp)
    resp = post(gateway, "/v1/messages", ANTHROPIC_BODY)
    assert resp.status == 502 and anthropic_error(resp)


def test_slow_provider_hits_the_deadline_with_504(gateway, upstream):
    upstream.set_default_fault(Fault(delay=6))  # the module's gateway has REQUEST_TIMEOUT=3
    resp = post(gateway, "/v1/chat/completions", OPENAI_BODY)
    assert resp.status == 504 and openai_error(resp)["code"] == "upstream_timeout"


@pytest.mark.parametrize("path,body", [("/v1/chat/completions", OPENAI_BODY), ("/v1/messages", ANTHROPIC_BODY)])
@pytest.mark.parametrize("provider_path", ["/v1/chat/completions", "/v1/messages"])
def test_stream_cut_by_provider_ends_with_an_error_event(gateway, upstream, path, body, provider_path):
    model = "gpt-4o-mini" if provider_path == "/v1/chat/completions" else "claude-3-5-haiku-latest"
    upstream.set_default_fault(Fault(cut_after=3))
    resp = post(gateway, path, {**body, "model": model, "stream": True,
                                "messages": [{"role": "user", "content": "a b c d e f g h"}]})
    assert resp.status == 200
    text = resp.data.decode()
    if path == "/v1/messages":
        assert "event: error" in text and "message_stop" not in text
    else:
        assert '"error"' in text and "[DONE]" not in text


def test_request_id_is_kept_or_made(gateway, upstream):
    resp = post(gateway, "/v1/chat/completions", OPENAI_BODY, headers={"x-request-id": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    assert upstream.requests[-1].headers["x-request-id"] == "abc-123"
    resp = post(gateway, "/v1/chat/completions", OPENAI_BODY)
    assert len(resp.headers["x-request-id"]) >= 16


def test_health_needs_no_key_and_calls_no_provider(gateway, upstream):
    for path in ("/health", "/health/live", "/health/ready"):
        resp = http.request("GET", gateway.url + path)
        assert resp.status == 200, path
    body = json.loads(http.request("GET", gateway.url + "/health").data)
    assert body["status"] in ("ok", "degraded") and body["version"] and "checks" in body
    assert upstream.count() == 0


def test_upstream_connections_are_pooled_and_kept_alive(gateway, upstream):
    before = upstream.connections
    for _ in range(20):
        assert post(gateway, "/v1/chat/completions", OPENAI_BODY).status == 200
    # Sequential requests reuse one keep-alive connection per worker (2 workers), not one each.
    assert upstream.connections - before <= 4
