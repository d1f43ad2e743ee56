"""The cache inside the gateway (in-process app, emulator upstream): what is stored, how hits render,
the request headers, and coalescing through the real pipeline."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from falcon.testing import TestClient

from app.factory import create_gateway
from app.observability import metrics
from tests.conftest import Fault, provider_env

pytestmark = pytest.mark.timeout(30)

CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"


@pytest.fixture
def client(upstream) -> TestClient:
    # RETRY_ATTEMPTS=1: these tests count upstream calls of failures, which retries would repeat.
    gw = create_gateway(environ={**provider_env(upstream), "ENABLE_L2_CACHE": "false", "ENABLE_TRACING": "false",
                                 "REQUEST_TIMEOUT": "10", "RETRY_ATTEMPTS": "1"})
    return TestClient(gw.app)


def ask(text: str, **extra) -> dict:
    return {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": text}], **extra}


def sse_data(text: str) -> list[dict]:
    return [orjson.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def answer_text(result) -> str:
    """The assistant text of an OpenAI JSON answer or SSE stream."""
    if result.headers.get("content-type", "").startswith("text/event-stream"):
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in sse_data(result.text) if c["choices"])
    return result.json["choices"][0]["message"]["content"]


def test_a_translated_answer_serves_both_dialects_as_json_and_as_sse(client, upstream):
    """An Anthropic caller asking an OpenAI model is translated: its entry is the canonical answer, rendered
    for whoever finds its key (here the same caller as JSON and as SSE)."""
    first = client.simulate_post(MESSAGES, json=ask("capital of France"))
    assert first.headers["x-llm-edge-cache"] == "miss" and first.headers["x-llm-edge-provider"] == "openai"
    usage = first.json["usage"]
    again = client.simulate_post(MESSAGES, json=ask("capital of France"))
    assert again.status_code == 200 and again.headers["x-llm-edge-cache"] == "hit-l1"
    assert again.headers["x-llm-edge-provider"] == "cache" and again.headers["x-llm-edge-model"] == "gpt-4o-mini"
    assert again.json["content"][0]["text"] == "Echo: capital of France"
    assert again.json["usage"]["input_tokens"] == usage["input_tokens"]
    named = client.simulate_post(MESSAGES, json=ask("capital of France", stream=True))
    assert named.headers["x-llm-edge-cache"] == "hit-l1" and "event: message_stop" in named.text
    assert upstream.count() == 1


def test_a_relayed_answer_replays_byte_identical_to_its_own_dialect_only(client, upstream):
    """Relayed (OpenAI caller, OpenAI model): keyed by the body, so the other dialect and the other delivery
    (stream or not) are misses; the same request replays the provider's bytes exactly."""
    first = client.simulate_post(CHAT, json=ask("capital of Spain"))
    assert first.headers["x-llm-edge-cache"] == "miss"
    hit = client.simulate_post(CHAT, json=ask("capital of Spain"))
    assert hit.headers["x-llm-edge-cache"] == "hit-l1" and hit.content == first.content
    assert client.simulate_post(MESSAGES, json=ask("capital of Spain")).headers["x-llm-edge-cache"] == "miss"
    body = ask("capital of Spain", stream=True, stream_options={"include_usage": True})
    live = client.simulate_post(CHAT, json=body)
    assert live.headers["x-llm-edge-cache"] == "miss" and live.text.endswith("data: [DONE]\n\n")
    replay = client.simulate_post(CHAT, json=body)
    assert replay.headers["x-llm-edge-cache"] == "hit-l1" and replay.content == live.content
    assert sse_data(replay.text)[-1]["usage"]["prompt_tokens"] == first.json["usage"]["prompt_tokens"]
    assert upstream.count() == 3


def test_a_streamed_miss_is_stored_once_complete(client, upstream):
    body = ask("stream me", stream=True)
    assert client.simulate_post(CHAT, json=body).headers["x-llm-edge-cache"] == "miss"
    again = client.simulate_post(CHAT, json=body)
    assert again.headers["x-llm-edge-cache"] == "hit-l1" and answer_text(again) == "Echo: stream me"
    assert upstream.count() == 1


@pytest.mark.parametrize("fault", [Fault(cut_after=2), Fault(error_after=2), Fault(status=500)],
                         ids=["cut stream", "error event", "upstream 500"])
def test_failures_and_cut_streams_are_never_stored(client, upstream, fault):
    upstream.push_faults(fault)
    body = ask("fragile", stream=fault.status is None)
    failed = client.simulate_post(CHAT, json=body)
    assert failed.status_code == 502 or "error" in failed.text
    retried = client.simulate_post(CHAT, json=body)
    assert retried.headers["x-llm-edge-cache"] == "miss" and answer_text(retried) == "Echo: fragile"
    assert upstream.count() == 2


def test_no_store_no_cache_and_the_ttl_header(client, upstream):
    body = ask("controls")
    for _ in range(2):
        r = client.simulate_post(CHAT, json=body, headers={"cache-control": "no-store"})
        assert r.headers["x-llm-edge-cache"] == "bypass"
    assert client.simulate_post(CHAT, json=body).headers["x-llm-edge-cache"] == "miss"  # no-store kept nothing
    fresh = client.simulate_post(CHAT, json=body, headers={"cache-control": "no-cache"})
    assert fresh.headers["x-llm-edge-cache"] == "bypass" and fresh.headers["x-llm-edge-provider"] == "openai"
    hit = client.simulate_post(CHAT, json=body)
    assert hit.headers["x-llm-edge-cache"] == "hit-l1" and hit.json["id"] == fresh.json["id"]
    assert upstream.count() == 4
    bad = client.simulate_post(CHAT, json=body, headers={"x-llm-edge-cache-ttl": "forever"})
    assert bad.status_code == 400 and "x-llm-edge-cache-ttl" in bad.json["error"]["message"]
    zero = ask("zero ttl")
    client.simulate_post(CHAT, json=zero, headers={"x-llm-edge-cache-ttl": "0"})
    assert client.simulate_post(CHAT, json=zero).headers["x-llm-edge-cache"] == "miss"


def test_a_request_that_changes_the_meaning_is_a_miss(client, upstream):
    client.simulate_post(CHAT, json=ask("same words"))
    for variant in (ask("same words", temperature=0.5), ask("same words", max_tokens=51),
                    ask("same words", model="gpt-4o"), ask("same words", seed=7)):
        assert client.simulate_post(CHAT, json=variant).headers["x-llm-edge-cache"] == "miss"
    for same in (ask("same words", user="someone", metadata={"a": "b"}),):
        assert client.simulate_post(CHAT, json=same).headers["x-llm-edge-cache"] == "hit-l1"
    # Relayed: every field counts, even one the gateway does not know.
    assert client.simulate_post(CHAT, json=ask("same words", x_unknown=1)).headers["x-llm-edge-cache"] == "miss"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_identical_slow_requests_make_one_upstream_call(client, upstream, stream):
    upstream.set_default_fault(Fault(delay=0.4))
    coalesced = metrics.CACHE_COALESCED._value.get()
    body = ask(f"slow and popular {stream}", stream=stream)
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: client.simulate_post(CHAT, json=body), range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    assert {answer_text(a) for a in answers} == {f"Echo: slow and popular {stream}"}
    assert upstream.count() == 1
    assert metrics.CACHE_COALESCED._value.get() == coalesced + 4


def test_followers_of_a_failed_call_try_on_their_own(client, upstream):
    upstream.push_faults(Fault(delay=0.4, status=500))
    body = ask("first one fails")
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: client.simulate_post(CHAT, json=body), range(3)))
    assert sorted(a.status_code for a in answers) == [200, 200, 502]
    assert upstream.count() == 3
