"""Retries and fallbacks against the fault-injecting emulator, through a 2-worker gateway and the official SDKs.

Breakers are switched off in this module's gateway so that faults in one test
cannot open a breaker for the next; tests/e2e/test_breakers.py covers them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import openai
import pytest
import urllib3

from tests.conftest import UNCACHED, Fault, provider_env
from tests.support.metrics import scrape
from tests.support.processes import GatewayProcess

pytestmark = pytest.mark.timeout(60)

OPENAI_PATH, ANTHROPIC_PATH = "/v1/chat/completions", "/v1/messages"
HI = [{"role": "user", "content": "hello there"}]
LONG_TEXT = " ".join(f"word{i}" for i in range(30))
http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=15))


SETTINGS = {"RETRY_BACKOFF_BASE": "0.01", "RETRY_BACKOFF_MAX": "0.05", "RETRY_AFTER_MAX": "2",
            "STREAM_FIRST_BYTE_TIMEOUT": "0.5", "STREAM_IDLE_TIMEOUT": "1", "REQUEST_TIMEOUT": "8",
            "BREAKER_FAILURE_THRESHOLD": "0", "BREAKER_FAILURE_RATE": "0"}


@pytest.fixture(scope="module")
def gateway(emulator) -> Iterator[GatewayProcess]:
    gw = GatewayProcess({**provider_env(emulator), **UNCACHED, **SETTINGS}).start()
    yield gw
    gw.stop()


@pytest.fixture
def oai(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0, timeout=15)


@pytest.fixture
def ant(gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="k", max_retries=0, timeout=15)


def sse_events(gateway, path: str, body: dict) -> list[str]:
    """The raw ``data:`` payloads of a streamed answer, read to the end with a plain HTTP client."""
    resp = http.request("POST", gateway.url + path, body=json.dumps({**body, "stream": True}).encode(),
                        headers={"content-type": "application/json"}, preload_content=False)
    assert resp.status == 200, resp.data
    text = resp.read().decode()
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


def test_fails_twice_then_succeeds(gateway, upstream, oai):
    retries = scrape(gateway.metrics_url).total("llm_edge_retries_total", provider="openai")
    upstream.push_faults(Fault(status=500), Fault(status=503), path=OPENAI_PATH)
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert completion.choices[0].message.content == "Echo: hello there"
    assert upstream.count(OPENAI_PATH) == 3
    assert [r.status for r in upstream.requests] == [500, 503, 200]
    assert scrape(gateway.metrics_url).total("llm_edge_retries_total", provider="openai") == retries + 2


def test_connection_errors_are_retried_and_post_is_resent(gateway, upstream, ant):
    upstream.push_faults(Fault(cut_after=5), path=ANTHROPIC_PATH)  # the body cut mid-answer
    message = ant.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, messages=HI)
    assert message.content[0].text == "Echo: hello there"
    assert [r.method for r in upstream.requests] == ["POST", "POST"]


def test_a_stream_that_breaks_before_its_first_event_is_retried_silently(gateway, upstream, oai):
    upstream.push_faults(Fault(cut_after=0), Fault(status=502), path=OPENAI_PATH)
    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", stream=True,
                                              messages=[{"role": "user", "content": "one two three"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: one two three"
    assert upstream.count(OPENAI_PATH) == 3


def test_429_with_retry_after_is_waited_out(gateway, upstream, oai):
    upstream.push_faults(Fault(status=429, retry_after=1), path=OPENAI_PATH)
    started = time.monotonic()
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert completion.choices[0].message.content == "Echo: hello there"
    assert time.monotonic() - started >= 0.95  # it did wait as the provider asked
    assert upstream.count(OPENAI_PATH) == 2


def test_429_with_retry_after_over_the_cap_goes_back_to_the_caller(gateway, upstream, oai):
    upstream.push_faults(Fault(status=429, retry_after=30), path=OPENAI_PATH)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert time.monotonic() - started < 1.5  # no 30 s sleep, and no blind retry either
    assert info.value.response.headers["retry-after"] == "30"
    assert upstream.count(OPENAI_PATH) == 1


def test_retries_stop_at_the_configured_attempts(gateway, upstream, oai):
    upstream.set_default_fault(Fault(status=500), path=OPENAI_PATH)
    with pytest.raises(openai.InternalServerError) as info:  # our 502
        oai.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert info.value.status_code == 502
    assert upstream.count(OPENAI_PATH) == 3


def test_a_caller_mistake_is_not_retried(gateway, upstream, oai):
    upstream.push_faults(Fault(status=400), path=OPENAI_PATH)
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert upstream.count(OPENAI_PATH) == 1


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_fallback_to_the_other_provider_answers_with_its_headers(gateway, upstream, oai, ant, dialect):
    """config/models.yaml: alias ``fast`` is claude-3-5-haiku-latest with fallback gpt-4o-mini."""
    before = scrape(gateway.metrics_url).total("llm_edge_fallbacks_total", from_provider="anthropic",
                                                 to_provider="openai")
    upstream.set_default_fault(Fault(status=500), path=ANTHROPIC_PATH)
    if dialect == "openai":
        raw = oai.chat.completions.with_raw_response.create(model="fast", messages=HI)
        assert raw.parse().choices[0].message.content == "Echo: hello there"
    else:
        raw = ant.messages.with_raw_response.create(model="fast", max_tokens=50, messages=HI)
        assert raw.parse().content[0].text == "Echo: hello there"
    assert raw.headers["x-llm-edge-provider"] == "openai"
    assert raw.headers["x-llm-edge-model"] == "gpt-4o-mini"
    assert upstream.count(ANTHROPIC_PATH) == 3 and upstream.count(OPENAI_PATH) == 1  # retried, then fell back
    after = scrape(gateway.metrics_url).total("llm_edge_fallbacks_total", from_provider="anthropic",
                                                to_provider="openai")
    assert after == before + 1


def test_slow_first_byte_falls_back_or_times_out(gateway, upstream, oai):
    upstream.push_faults(Fault(delay=4), path=ANTHROPIC_PATH)
    started = time.monotonic()
    raw = oai.chat.completions.with_raw_response.create(model="fast", messages=HI, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "Echo: hello there" and raw.headers["x-llm-edge-provider"] == "openai"
    assert time.monotonic() - started < 3  # STREAM_FIRST_BYTE_TIMEOUT=0.5, not the provider's 4 s

    upstream.push_faults(Fault(delay=4), path=ANTHROPIC_PATH)  # no fallback: the caller gets the 504
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        list(oai.chat.completions.create(model="claude-3-5-haiku-latest", messages=HI, stream=True))
    assert info.value.status_code == 504 and "STREAM_FIRST_BYTE_TIMEOUT" in info.value.message
    assert time.monotonic() - started < 3
    assert upstream.count(ANTHROPIC_PATH) == 2  # timeouts are not retried by default


@pytest.mark.parametrize("path,model", [(OPENAI_PATH, "gpt-4o-mini"), (ANTHROPIC_PATH, "claude-3-5-haiku-latest")])
def test_a_stream_cut_by_the_provider_ends_with_an_error_event(gateway, upstream, path, model):
    upstream.push_faults(Fault(cut_after=4), path=path)
    body = {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": LONG_TEXT}]}
    events = sse_events(gateway, OPENAI_PATH, body)
    assert len(events) >= 3 and "Echo:" in "".join(events[:-1])  # the client got the start
    error = json.loads(events[-1])
    assert error["error"]["code"] == "upstream_error" and "mid-answer" in error["error"]["message"]
    assert upstream.count(path) == 1  # committed: never retried after bytes went to the client

    upstream.push_faults(Fault(cut_after=4), path=path)
    resp = http.request("POST", gateway.url + ANTHROPIC_PATH, body=json.dumps({**body, "stream": True}).encode(),
                        headers={"content-type": "application/json"})
    lines = resp.data.decode().splitlines()
    assert "event: error" in lines and "message_stop" not in resp.data.decode()


def test_a_provider_gone_quiet_mid_stream_ends_with_an_error_event(gateway, upstream):
    upstream.push_faults(Fault(drip=3), path=OPENAI_PATH)
    started = time.monotonic()
    events = sse_events(gateway, OPENAI_PATH, {"model": "gpt-4o-mini",
                                               "messages": [{"role": "user", "content": LONG_TEXT}]})
    assert time.monotonic() - started < 2.5  # STREAM_IDLE_TIMEOUT=1, not the provider's 3 s gaps
    assert "STREAM_IDLE_TIMEOUT" in json.loads(events[-1])["error"]["message"]
