"""POST /v1/embeddings and GET /v1/models/{id} through the official OpenAI SDK, against a 2-worker gateway
with a real redis-server (L2) and the emulator as OpenAI.

Shapes: https://platform.openai.com/docs/api-reference/embeddings/create and
https://platform.openai.com/docs/api-reference/models/retrieve. The SDK sends ``encoding_format: base64``
when the caller names none, and decodes the answer's base64 (little-endian float32) into floats itself;
asked for ``float`` or ``base64`` by name, it hands back what the API answered.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import time
import uuid
from collections.abc import Iterator

import openai
import orjson
import pytest
import urllib3
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import OPENAI_KEY, provider_env
from tests.support.processes import GatewayProcess, RedisServer

pytestmark = pytest.mark.timeout(90)

http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))


@pytest.fixture(scope="module")
def gw(emulator) -> Iterator[GatewayProcess]:
    server = RedisServer().start()
    gateway = GatewayProcess({**provider_env(emulator), "ENABLE_L2_CACHE": "true", "REDIS_URL": server.url,
                              "REQUEST_TIMEOUT": "10"}).start()
    yield gateway
    gateway.stop()
    server.close()


@pytest.fixture
def client(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="any-client-key", max_retries=0, timeout=10)


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


def metric(gw: GatewayProcess, name: str, **labels: str) -> float:
    text = http.request("GET", gw.metrics_url).data.decode()
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def post(gw: GatewayProcess, body: dict, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    return http.request("POST", gw.url + "/v1/embeddings", body=orjson.dumps(body),
                        headers={"content-type": "application/json", **(headers or {})})


def test_sdk_default_sends_base64_and_gets_the_same_floats_as_float(client, upstream):
    text = unique("the quick brown fox")
    default = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=text)
    assert upstream.last("/v1/embeddings").body["encoding_format"] == "base64"  # what the SDK sends unasked
    decoded = default.parse()
    floats = client.embeddings.create(model="text-embedding-3-small", input=text, encoding_format="float")
    assert upstream.last("/v1/embeddings").body["encoding_format"] == "float"
    assert len(floats.data[0].embedding) == 1536
    assert decoded.data[0].embedding == floats.data[0].embedding  # base64 float32, decoded by the SDK
    assert math.isclose(sum(v * v for v in floats.data[0].embedding), 1.0, rel_tol=1e-4)
    assert floats.usage.prompt_tokens == 5 and floats.usage.total_tokens == 5
    assert default.headers["x-llm-edge-provider"] == "openai"
    assert default.headers["x-llm-edge-model"] == "text-embedding-3-small"
    sent = upstream.last("/v1/embeddings")
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}" and "any-client-key" not in str(sent.headers)


def test_base64_asked_by_name_comes_back_as_the_providers_string(client, upstream):
    text = unique("base64 by name")
    answer = client.embeddings.create(model="text-embedding-3-small", input=[text, "second input"],
                                      encoding_format="base64", dimensions=64)
    assert [d.index for d in answer.data] == [0, 1]
    blob = answer.data[0].embedding
    assert isinstance(blob, str)
    values = struct.unpack("<64f", base64.b64decode(blob))
    assert math.isclose(sum(v * v for v in values), 1.0, rel_tol=1e-4)
    assert upstream.last("/v1/embeddings").body["dimensions"] == 64


def test_dimensions_and_token_inputs_are_relayed_unchanged(client, upstream):
    answer = client.embeddings.create(model="text-embedding-3-large", input=[[1, 2, 3], [4, 5]], dimensions=256,
                                      encoding_format="float", user="user-123")
    assert [len(d.embedding) for d in answer.data] == [256, 256]
    assert answer.usage.prompt_tokens == 5
    assert upstream.last("/v1/embeddings").body == {
        "model": "text-embedding-3-large", "input": [[1, 2, 3], [4, 5]], "dimensions": 256,
        "encoding_format": "float", "user": "user-123"}


def test_a_repeat_is_a_cache_hit_with_the_same_bytes_and_no_upstream_call(gw, upstream):
    body = {"model": "text-embedding-3-small", "input": [unique("cache me"), "and me"], "dimensions": 32}
    hits = metric(gw, "llm_edge_cache_hits_total")
    saved = metric(gw, "llm_edge_cache_savings_total_cents", model="text-embedding-3-small")
    miss = post(gw, body)
    assert miss.status == 200 and miss.headers["x-llm-edge-cache"] == "miss"
    cost = metric(gw, "llm_edge_cost_total_cents", provider="openai", model="text-embedding-3-small")
    assert cost > 0  # priced from PRICING_FILE
    for _ in range(3):  # either worker: its L1, or the other's fill through Redis
        hit = post(gw, body)
        assert hit.status == 200 and hit.headers["x-llm-edge-cache"] in ("hit-l1", "hit-l2")
        assert hit.headers["x-llm-edge-provider"] == "cache" and hit.data == miss.data
    assert upstream.count("/v1/embeddings") == 1
    assert metric(gw, "llm_edge_cache_hits_total") == hits + 3
    assert metric(gw, "llm_edge_cache_savings_total_cents", model="text-embedding-3-small") > saved
    # Another format or size is another answer, so another entry.
    other = post(gw, {**body, "encoding_format": "base64"})
    assert other.headers["x-llm-edge-cache"] == "miss"
    spelled = post(gw, {**body, "encoding_format": "float"})  # absent means float: the same entry
    assert spelled.headers["x-llm-edge-cache"] in ("hit-l1", "hit-l2")
    assert upstream.count("/v1/embeddings") == 2


def test_no_store_neither_looks_up_nor_stores(gw, upstream):
    body = {"model": "text-embedding-3-small", "input": unique("never kept")}
    for _ in range(2):
        answer = post(gw, body, {"cache-control": "no-store"})
        assert answer.status == 200 and answer.headers["x-llm-edge-cache"] == "bypass"
    assert upstream.count("/v1/embeddings") == 2


def test_a_claude_only_model_is_refused_naming_it(client, upstream):
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="claude-3-5-haiku-latest", input="hello")
    error = caught.value.body
    assert error["param"] == "model" and error["code"] == "model_not_supported"
    assert "claude-3-5-haiku-latest" in error["message"]
    assert upstream.count() == 0


@pytest.mark.parametrize("body,param", [
    ({"model": "text-embedding-3-small"}, "input"),
    ({"model": "text-embedding-3-small", "input": ""}, "input"),
    ({"model": "text-embedding-3-small", "input": []}, "input"),
    ({"model": "text-embedding-3-small", "input": ["ok", ""]}, "input[1]"),
    ({"model": "text-embedding-3-small", "input": ["ok", 3]}, "input[1]"),
    ({"model": "text-embedding-3-small", "input": [[1, 2], []]}, "input[1]"),
    ({"model": "text-embedding-3-small", "input": {"text": "x"}}, "input"),
    ({"model": "text-embedding-3-small", "input": ["x"] * 2049}, "input"),
    ({"model": "text-embedding-3-small", "input": "x", "dimensions": 0}, "dimensions"),
    ({"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"model": "text-embedding-3-small", "input": "x", "user": 7}, "user"),
    ({"input": "x"}, "model"),
])
def test_bad_input_is_a_400_naming_the_field(gw, upstream, body, param):
    answer = post(gw, body)
    assert answer.status == 400
    assert orjson.loads(answer.data)["error"]["param"] == param
    assert upstream.count() == 0


def test_what_only_the_provider_checks_comes_back_as_its_400(client, upstream):
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=8)
    assert "does not support specifying dimensions" in caught.value.body["message"]


def test_models_retrieve_answers_configured_and_prefix_routed_names(client):
    model = client.models.retrieve("text-embedding-3-small")
    assert (model.id, model.object, model.owned_by) == ("text-embedding-3-small", "model", "openai")
    assert client.models.retrieve("gpt-4o-2024-08-06").owned_by == "openai"  # by prefix
    assert client.models.retrieve("claude-3-5-haiku-latest").owned_by == "anthropic"
    assert client.models.retrieve("openai/gpt-4o").id == "openai/gpt-4o"  # an id with a slash
    assert client.models.retrieve("fast").owned_by == "anthropic"  # an alias
    listed = {m.id for m in client.models.list()}
    assert {"text-embedding-3-small", "fast"} <= listed


def test_models_retrieve_of_an_unknown_model_is_404_model_not_found(client, gw):
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.body["code"] == "model_not_found" and caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nobody/some-model")
    assert metric(gw, "llm_edge_requests_total", endpoint="/v1/models/{id}", status="404") >= 2


ACME, GLOBEX, THRIFTY = ("sk-edge-acme-embeddings-key-000001", "sk-edge-globex-embeddings-key-00002",
                         "sk-edge-thrifty-embeddings-key-0003")


@pytest.fixture(scope="module")
def tenants(emulator, tmp_path_factory) -> Iterator[GatewayProcess]:
    """Client keys, one client with a budget smaller than one embeddings answer costs."""
    d = tmp_path_factory.mktemp("embeddings-clients")
    clients = [{"id": name, "tier": "pro", "key_sha256": hashlib.sha256(key.encode()).hexdigest()}
               for name, key in (("acme", ACME), ("globex", GLOBEX), ("thrifty", THRIFTY))]
    clients[2]["budget_cents_per_day"] = 0.000001  # 5 tokens of text-embedding-3-small cost 0.00001 cents
    (d / "clients.yaml").write_text(yaml.safe_dump({"clients": clients}))
    server = RedisServer().start()
    gateway = GatewayProcess({**provider_env(emulator), "REDIS_URL": server.url,
                              "CLIENTS_FILE": str(d / "clients.yaml")}).start()
    yield gateway
    gateway.stop()
    server.close()


def test_the_cache_is_scoped_per_client(tenants, upstream):
    body = {"model": "text-embedding-3-small", "input": unique("tenant scoped")}
    first = post(tenants, body, {"authorization": f"Bearer {ACME}"})
    assert first.status == 200 and first.headers["x-llm-edge-cache"] == "miss"
    other = post(tenants, body, {"authorization": f"Bearer {GLOBEX}"})
    assert other.status == 200 and other.headers["x-llm-edge-cache"] == "miss"  # never acme's entry
    again = post(tenants, body, {"authorization": f"Bearer {ACME}"})
    assert again.headers["x-llm-edge-cache"] in ("hit-l1", "hit-l2")
    assert upstream.count("/v1/embeddings") == 2
    assert post(tenants, body).status == 401  # no key, no answer (not even a cached one)


def test_a_spent_budget_refuses_embeddings_before_any_provider_call(tenants, upstream):
    headers = {"authorization": f"Bearer {THRIFTY}"}
    assert post(tenants, {"model": "text-embedding-3-small", "input": unique("spend")}, headers).status == 200
    deadline = time.monotonic() + 10  # the spend reaches every worker through Redis
    while time.monotonic() < deadline:
        refused = post(tenants, {"model": "text-embedding-3-small", "input": unique("more")}, headers)
        if refused.status == 429:
            break
        time.sleep(0.2)
    assert refused.status == 429 and orjson.loads(refused.data)["error"]["code"] == "insufficient_quota"
    calls = upstream.count("/v1/embeddings")
    assert post(tenants, {"model": "text-embedding-3-small", "input": unique("refused")}, headers).status == 429
    assert upstream.count("/v1/embeddings") == calls
