"""POST /v1/embeddings routed like chat, in process (Falcon app, the emulator as OpenAI over real HTTP):
the body relayed unchanged (``model`` rewritten only by an alias), Anthropic-format targets skipped,
retries and fallbacks on a provider's failure, a provider's 4xx passed back, breakers shared with chat.

Request and answer shapes: https://platform.openai.com/docs/api-reference/embeddings/create
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml
from falcon.testing import TestClient

from app.factory import create_gateway
from tests.conftest import OPENAI_KEY, UNCACHED, Fault, provider_env

pytestmark = pytest.mark.timeout(60)

PATH = "/v1/embeddings"


@pytest.fixture(scope="module")
def client(emulator, tmp_path_factory) -> Iterator[TestClient]:
    d = tmp_path_factory.mktemp("embeddings-routing")
    (d / "models.yaml").write_text(yaml.safe_dump({
        "providers": {"backup": {"type": "openai", "base_url": emulator.openai_base_url,
                                 "api_key_env": "BACKUP_KEY"}},
        "models": {
            "embed": {"provider": "openai", "model": "text-embedding-3-small",
                      "fallbacks": ["backup/text-embedding-3-small"]},
            "claude-first": {"provider": "anthropic", "model": "claude-3-5-haiku-latest",
                             "fallbacks": ["text-embedding-3-small"]},
        }}))
    gw = create_gateway(environ={**provider_env(emulator), **UNCACHED, "ENABLE_TRACING": "false",
                                 "MODELS_FILE": str(d / "models.yaml"), "BACKUP_KEY": OPENAI_KEY,
                                 "REQUEST_TIMEOUT": "5", "RETRY_ATTEMPTS": "2", "RETRY_BACKOFF_BASE": "0.01"})
    yield TestClient(gw.app)


def post(client: TestClient, body: bytes | dict):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.simulate_post(PATH, body=raw, headers={"content-type": "application/json"})


def test_the_callers_bytes_go_upstream_as_they_came(client, upstream):
    raw = b'{ "input" : ["one", "two"],\n "model": "text-embedding-3-small", "dimensions": 8, "extra_thing": null }'
    resp = post(client, raw)
    # The emulator, like OpenAI, refuses a parameter it does not know: relayed, not dropped.
    assert resp.status_code == 400 and resp.json["error"]["message"].endswith("extra_thing")
    assert upstream.last(PATH).raw == raw
    good = b'{ "input" : ["one", "two"],\n "model": "text-embedding-3-small", "dimensions": 8 }'
    resp = post(client, good)
    assert resp.status_code == 200 and upstream.last(PATH).raw == good
    assert resp.headers["x-llm-edge-provider"] == "openai"


def test_an_alias_rewrites_only_the_model(client, upstream):
    body = {"model": "embed", "input": "x", "encoding_format": "base64", "user": "u-1"}
    resp = post(client, body)
    assert resp.status_code == 200 and resp.headers["x-llm-edge-model"] == "text-embedding-3-small"
    assert upstream.last(PATH).body == {**body, "model": "text-embedding-3-small"}
    assert isinstance(resp.json["data"][0]["embedding"], str)


def test_a_failing_provider_is_retried_then_fallen_back_from(client, upstream):
    upstream.push_faults(Fault(status=500), Fault(status=503), path=PATH)
    resp = post(client, {"model": "embed", "input": "fall back"})
    assert resp.status_code == 200
    assert resp.headers["x-llm-edge-provider"] == "backup"  # two failed attempts at openai, then the fallback
    assert upstream.count(PATH) == 3


def test_anthropic_format_targets_are_skipped_for_an_openai_format_fallback(client, upstream):
    resp = post(client, {"model": "claude-first", "input": "x"})
    assert resp.status_code == 200 and resp.headers["x-llm-edge-model"] == "text-embedding-3-small"
    assert upstream.count("/v1/messages") == 0 and upstream.count(PATH) == 1


def test_a_providers_400_comes_back_with_its_message_and_is_not_retried(client, upstream):
    resp = post(client, {"model": "embed", "input": "x", "dimensions": 4096})
    assert resp.status_code == 400 and "dimensions" in resp.json["error"]["message"]
    assert upstream.count(PATH) == 1


def test_a_provider_answer_without_vectors_is_a_502_and_tried_elsewhere(client, upstream):
    upstream.push_faults(Fault(script='{"object": "list"}'), Fault(script='{"object": "list"}'),
                         Fault(script='{"object": "list"}'), path=PATH)
    resp = post(client, {"model": "embed", "input": "x"})
    assert resp.status_code == 502 and "without a data list" in resp.json["error"]["message"]


def test_a_claude_model_is_refused_as_such_even_without_an_anthropic_key(emulator, upstream):
    """Not a 503 asking for ANTHROPIC_API_KEY: no key would make Anthropic's API embed."""
    env = {k: v for k, v in provider_env(emulator).items() if not k.startswith("ANTHROPIC")}
    client = TestClient(create_gateway(environ={**env, **UNCACHED, "ENABLE_TRACING": "false"}).app)
    resp = post(client, {"model": "claude-3-5-haiku-latest", "input": "x"})
    assert resp.status_code == 400 and resp.json["error"]["code"] == "model_not_supported"
    assert resp.json["error"]["param"] == "model"
    unknown = post(client, {"model": "no-such-embedder", "input": "x"})
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "model_not_found"
    assert upstream.count() == 0
