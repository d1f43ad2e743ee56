"""Fuzz both chat endpoints and /v1/embeddings in-process (Falcon app, emulator upstream): no generated body
is ever a 5xx.

Bodies are built around the real schemas: valid-ish structures whose fields get wrong types, huge and
fractional numbers, odd strings (controls, emoji, very long), missing fields and nested junk.
1,000 bodies per chat endpoint per run (2,000 in all), and 500 for /v1/embeddings.
"""

from __future__ import annotations

import json

import pytest
from falcon.testing import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.factory import create_gateway
from tests.conftest import provider_env

pytestmark = pytest.mark.timeout(300)

EXAMPLES = 1000

odd_text = st.one_of(st.text(max_size=30), st.sampled_from(["", "\x00", "\r\n", "\x7f", "😀", "x" * 5000, "sk-abc"]))
huge = st.one_of(st.integers(min_value=-(2**80), max_value=2**80), st.sampled_from([1e21, -1e21, 1e308, 2**64, 0.5]),
                 st.floats(allow_nan=False, allow_infinity=False))
scalar = st.one_of(st.none(), st.booleans(), huge, odd_text)
junk = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                    max_leaves=8)
number_or_junk = st.one_of(huge, junk)
model = st.one_of(st.sampled_from(["gpt-4o-mini", "claude-3-5-haiku-latest", "fast", "openai/gpt-4o",
                                   "unknown-model"]), odd_text, junk)
part = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "image", "tool_use", "tool_result", "x"])},
                          optional={"text": odd_text, "image_url": junk, "source": junk, "id": odd_text,
                                    "name": odd_text, "input": junk, "tool_use_id": odd_text, "content": junk}),
    junk)
message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", "developer", "bad"])},
                          optional={"content": st.one_of(odd_text, st.lists(part, max_size=3), junk),
                                    "tool_calls": junk, "tool_call_id": odd_text, "name": odd_text}),
    junk)
tool = st.one_of(st.fixed_dictionaries({}, optional={"type": st.just("function"), "name": odd_text,
                                                     "input_schema": junk, "function": junk}), junk)
FIELDS = {
    "max_tokens": number_or_junk, "max_completion_tokens": number_or_junk, "n": number_or_junk,
    "temperature": number_or_junk, "top_p": number_or_junk, "top_k": number_or_junk, "seed": number_or_junk,
    "logprobs": junk, "top_logprobs": number_or_junk, "frequency_penalty": number_or_junk,
    "presence_penalty": number_or_junk, "logit_bias": junk, "stop": junk, "stop_sequences": junk,
    "stream": st.one_of(st.booleans(), junk), "stream_options": junk, "system": st.one_of(odd_text, junk),
    "tools": st.one_of(st.lists(tool, max_size=2), junk), "tool_choice": junk, "metadata": junk,
    "thinking": st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["enabled", "disabled"]),
                                                 "budget_tokens": number_or_junk}), junk),
    "response_format": junk, "user": junk, "parallel_tool_calls": junk,
}
FIELDS["model"] = model
FIELDS["messages"] = st.one_of(st.lists(message, min_size=1, max_size=3), junk)
valid_message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                       "content": st.text(min_size=1, max_size=20)})
# Mostly a valid body with one to three fields mutated, so the junk gets past the first check it meets.
mutations = st.lists(st.sampled_from(sorted(FIELDS)).flatmap(lambda k: st.tuples(st.just(k), FIELDS[k])),
                     min_size=1, max_size=3)
valid = st.fixed_dictionaries({"model": st.sampled_from(["gpt-4o-mini", "claude-3-5-haiku-latest"]),
                               "messages": st.lists(valid_message, min_size=1, max_size=2).map(
                                   lambda ms: [*ms[:-1], {**ms[-1], "role": "user"}]),
                               "max_tokens": st.integers(1, 50), "stream": st.booleans()})
body = st.one_of(
    st.tuples(valid, mutations).map(lambda vm: {**vm[0], **dict(vm[1])}),
    st.fixed_dictionaries({"model": model, "messages": FIELDS["messages"]},
                          optional={k: v for k, v in FIELDS.items() if k not in ("model", "messages")}),
    junk)


@pytest.fixture(scope="module")
def client(emulator) -> TestClient:
    gw = create_gateway(environ={**provider_env(emulator), "ENABLE_L2_CACHE": "false", "ENABLE_TRACING": "false",
                                 "REQUEST_TIMEOUT": "5", "RETRY_ATTEMPTS": "1"})
    return TestClient(gw.app)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_no_generated_body_is_a_server_error(client, path):
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body)
    def run(data):
        raw = json.dumps(data).encode()
        resp = client.simulate_post(path, body=raw, headers={"content-type": "application/json"})
        assert resp.status_code < 500, (resp.status_code, resp.text[:300], raw[:300])
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            assert "internal_error" not in resp.text, (resp.text[:300], raw[:300])

    run()


token = st.one_of(st.integers(min_value=-5, max_value=200_000), huge)
EMBEDDING_FIELDS = {
    "model": st.one_of(st.sampled_from(["text-embedding-3-small", "text-embedding-ada-002", "claude-3-5-haiku-latest",
                                        "gpt-4o-mini", "unknown-model"]), odd_text, junk),
    "input": st.one_of(odd_text, st.lists(odd_text, max_size=3), st.lists(token, max_size=3),
                       st.lists(st.lists(token, max_size=3), max_size=3), junk),
    "dimensions": number_or_junk, "encoding_format": st.one_of(st.sampled_from(["float", "base64", "int8"]), junk),
    "user": junk, "extra": junk,
}
embedding_mutations = st.lists(st.sampled_from(sorted(EMBEDDING_FIELDS)).flatmap(
    lambda k: st.tuples(st.just(k), EMBEDDING_FIELDS[k])), min_size=1, max_size=3)
embedding_body = st.one_of(
    st.tuples(st.fixed_dictionaries({"model": st.just("text-embedding-3-small"), "input": st.text(min_size=1)}),
              embedding_mutations).map(lambda vm: {**vm[0], **dict(vm[1])}),
    junk)


def test_no_generated_embeddings_body_is_a_server_error(client):
    @settings(max_examples=EXAMPLES // 2, deadline=None, derandomize=False, database=None,
              suppress_health_check=list(HealthCheck))
    @given(embedding_body)
    def run(data):
        raw = json.dumps(data).encode()
        resp = client.simulate_post("/v1/embeddings", body=raw, headers={"content-type": "application/json"})
        assert resp.status_code < 500, (resp.status_code, resp.text[:300], raw[:300])

    run()
