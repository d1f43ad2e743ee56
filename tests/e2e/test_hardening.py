"""Input defects through real gunicorn: huge integers and bad model names are the caller's 400, in its shape.

Huge integers were a 500 ``internal_error`` (``TypeError: Integer exceeds 64-bit range`` at
``orjson.dumps``) in all four dialect pairs, streamed or not. Model names with NUL/CR/LF/DEL/emoji
were a 500 HTML page from gunicorn (the name went into ``x-llm-edge-model``); a 100 KB or 2 MB name
became a response header of that size. Bounds per the providers' references:
https://platform.openai.com/docs/api-reference/chat/create and https://docs.anthropic.com/en/api/messages.
"""

from __future__ import annotations

import json

import pytest
import urllib3

from tests.conftest import provider_env
from tests.support.processes import GatewayProcess

pytestmark = pytest.mark.timeout(120)

CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"
HTTP = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30))


@pytest.fixture(scope="module")
def gw(emulator):
    gateway = GatewayProcess({**provider_env(emulator), "ENABLE_TRACING": "false"}).start()
    yield gateway
    gateway.stop()


def post(gw, path: str, body: dict) -> urllib3.BaseHTTPResponse:
    return HTTP.request("POST", gw.url + path, body=json.dumps(body).encode(),
                        headers={"content-type": "application/json"})


def assert_400(resp, path: str, param: str) -> None:
    assert resp.status == 400, (resp.status, resp.data[:300])
    assert resp.headers["content-type"].startswith("application/json")
    body = json.loads(resp.data)
    if path == MESSAGES:
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    else:
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param
    assert f"'{param}'" in body["error"]["message"]
    assert all(len(v) < 300 for v in resp.headers.values())


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-3-5-haiku-latest"])  # both dialect pairs per endpoint
@pytest.mark.parametrize(("path", "field", "value"), [
    (CHAT, "max_tokens", 1e21), (CHAT, "max_tokens", 1180591620717411303424),
    (CHAT, "max_completion_tokens", 1180591620717411303424), (CHAT, "seed", 1e30),
    (MESSAGES, "max_tokens", 1e21), (MESSAGES, "max_tokens", 1180591620717411303424), (MESSAGES, "top_k", 1e21),
])
def test_huge_integers_are_400_naming_the_field(gw, path, field, value, model, stream):
    body = {"model": model, "max_tokens": 10, "stream": stream, "messages": [{"role": "user", "content": "hi"}],
            field: value}
    assert_400(post(gw, path, body), path, field)


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
@pytest.mark.parametrize("name", ["gpt-4o\x00", "gpt-4o\r\nx-injected: 1", "gpt-4o\n", "gpt-4o\x7f",
                                  "gpt-4o-😀", "openai/" + "m" * 100_000, "gpt-" + "m" * 2_000_000])
def test_bad_model_names_are_400_json_with_small_headers(gw, path, name):
    body = {"model": name, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    resp = post(gw, path, body)
    assert_400(resp, path, "model")
    assert "x-injected" not in resp.headers and "x-llm-edge-model" not in resp.headers


def test_a_pasted_key_as_model_is_not_echoed(gw):
    key = "sk-edge-acme-client-key-81c3f0e29ab74d65"
    resp = post(gw, CHAT, {"model": key, "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status == 404 and key not in resp.data.decode() and "[redacted]" in resp.data.decode()
