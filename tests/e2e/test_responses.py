"""The Responses API through the official OpenAI SDK against real gunicorn: relayed to an OpenAI model (the
emulator's /v1/responses), translated for a Claude model; stored responses per client, with and without Redis.

Shapes: https://platform.openai.com/docs/api-reference/responses (create, retrieve, delete, input items,
streaming) and https://platform.openai.com/docs/guides/function-calling (the function_call_output round trip).
"""

from __future__ import annotations

import hashlib

import openai
import pytest
import redis

from tests.conftest import UNCACHED, Fault, provider_env
from tests.support.metrics import settled
from tests.support.processes import GatewayProcess, RedisServer

pytestmark = pytest.mark.timeout(90)

ACME_KEY = "sk-edge-acme-responses-000000000000001"
BETA_KEY = "sk-edge-beta-responses-000000000000002"
MODELS = ["gpt-4o-mini", "claude-3-5-haiku-latest"]
WEATHER_TOOL = {
    "type": "function", "name": "get_weather", "description": "Get current temperature for a given location.",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"],
                   "additionalProperties": False},
    "strict": True,
}


@pytest.fixture(scope="module")
def gw(emulator, tmp_path_factory):
    clients = tmp_path_factory.mktemp("responses") / "clients.yaml"
    clients.write_text("clients:\n" + "".join(
        f"  - id: {name}\n    tier: pro\n    key_sha256: {hashlib.sha256(key.encode()).hexdigest()}\n"
        for name, key in (("acme", ACME_KEY), ("beta", BETA_KEY))))
    redis_server = RedisServer().start()
    gateway = GatewayProcess({**provider_env(emulator), **UNCACHED, "REDIS_URL": redis_server.url,
                              "CLIENTS_FILE": str(clients), "RESPONSES_TTL_SECONDS": "86400"}).start()
    gateway.redis_server = redis_server
    yield gateway
    gateway.stop()
    redis_server.close()


def sdk(gw, key: str = ACME_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


@pytest.mark.parametrize("model", MODELS)
def test_create(gw, upstream, model):
    raw = sdk(gw).responses.with_raw_response.create(model=model, instructions="Be brief.", input="hello there")
    resp = raw.parse()
    assert resp.id.startswith("resp_") and resp.object == "response" and resp.status == "completed"
    assert resp.output_text == "Echo: hello there"
    assert resp.output[0].type == "message" and resp.output[0].content[0].type == "output_text"
    assert resp.usage.input_tokens == 4 and resp.usage.output_tokens == 3 and resp.usage.total_tokens == 7
    assert resp.usage.input_tokens_details.cached_tokens == 0
    assert resp.usage.output_tokens_details.reasoning_tokens == 0
    sent = upstream.requests[-1]
    if model.startswith("gpt"):
        assert sent.path == "/v1/responses" and sent.body["instructions"] == "Be brief."
        assert raw.headers["x-llm-edge-provider"] == "openai"
    else:
        assert sent.path == "/v1/messages" and sent.body["system"] == "Be brief."
        assert sent.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]
        assert raw.headers["x-llm-edge-provider"] == "anthropic"


@pytest.mark.parametrize("model", MODELS)
def test_stream_true(gw, upstream, model):
    events = list(sdk(gw).responses.create(model=model, input="one two three four", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == sorted({e.sequence_number for e in events})
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Echo: one two three four"
    final = events[-1].response
    assert final.output_text == text and final.usage.output_tokens == 5 and final.id.startswith("resp_")


@pytest.mark.parametrize("model", MODELS)
def test_stream_helper(gw, upstream, model):
    with sdk(gw).responses.stream(model=model, input="stream helper test") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Echo: stream helper test" == final.output_text
    assert final.status == "completed"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_function_call_output_round_trip(gw, upstream, model, stream):
    client = sdk(gw)
    question = {"role": "user", "content": "What is the weather like in Paris today?"}
    if stream:
        with client.responses.stream(model=model, input=[question], tools=[WEATHER_TOOL]) as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(model=model, input=[question], tools=[WEATHER_TOOL])
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and call.call_id and call.arguments == '{"location":"test"}'
    history = [question, *(item.model_dump(exclude_none=True) for item in first.output)]
    second = client.responses.create(model=model, tools=[WEATHER_TOOL], input=[
        *history, {"type": "function_call_output", "call_id": call.call_id, "output": "14 degrees"}])
    assert second.output_text == "Tool said: 14 degrees"


@pytest.mark.parametrize("model", MODELS)
def test_previous_response_id_continues_the_conversation(gw, upstream, model):
    client = sdk(gw)
    first = client.responses.create(model=model, input="What is the weather like in Paris?", tools=[WEATHER_TOOL])
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(model=model, previous_response_id=first.id, tools=[WEATHER_TOOL], input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "14 degrees"}])
    assert second.output_text == "Tool said: 14 degrees"
    third = client.responses.create(model=model, previous_response_id=second.id, input="thanks")
    assert third.output_text == "Echo: thanks" and third.previous_response_id == second.id
    sent = upstream.requests[-1].body
    if model.startswith("gpt"):
        assert sent["previous_response_id"] == second.id  # relayed: the provider holds the conversation
    else:
        # The stored conversation, then this input: question, call, its output, answer, "thanks".
        blocks = [(m["role"], m["content"][0]["type"], m["content"][0].get("text")) for m in sent["messages"]]
        assert blocks == [("user", "text", "What is the weather like in Paris?"), ("assistant", "tool_use", None),
                          ("user", "tool_result", None), ("assistant", "text", "Tool said: 14 degrees"),
                          ("user", "text", "thanks")]
        assert sent["messages"][1]["content"][0]["id"] == call.call_id


def test_a_claude_conversation_continues_on_an_openai_model(gw, upstream):
    client = sdk(gw)
    first = client.responses.create(model="claude-3-5-haiku-latest", input="first question")
    second = client.responses.create(model="gpt-4o-mini", previous_response_id=first.id, input="second question")
    assert second.output_text == "Echo: second question"
    sent = upstream.requests[-1]
    assert sent.path == "/v1/responses" and "previous_response_id" not in sent.body
    assert [item.get("role") for item in sent.body["input"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize("model", MODELS)
def test_retrieve_input_items_and_delete(gw, upstream, model):
    client = sdk(gw)
    created = client.responses.create(model=model, input="keep me", metadata={"k": "v"})
    got = client.responses.retrieve(created.id)
    assert got.id == created.id and got.output_text == "Echo: keep me"
    items = client.responses.input_items.list(created.id)
    assert [i.type for i in items.data] == ["message"] and items.data[0].content[0].text == "keep me"
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


@pytest.mark.parametrize("model", MODELS)
def test_a_client_never_sees_another_clients_response(gw, upstream, model):
    created = sdk(gw).responses.create(model=model, input="private")
    other = sdk(gw, BETA_KEY)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(created.id)
    with pytest.raises(openai.BadRequestError) as info:
        other.responses.create(model=model, previous_response_id=created.id, input="hi")
    assert info.value.body["code"] == "previous_response_not_found"
    assert sdk(gw).responses.retrieve(created.id).output_text == "Echo: private"  # still there for its owner


def test_what_a_translation_cannot_carry_is_a_400(gw, upstream):
    with pytest.raises(openai.BadRequestError) as info:
        sdk(gw).responses.create(model="claude-3-5-haiku-latest", input="hi", tools=[{"type": "web_search_preview"}])
    assert info.value.body["param"] == "tools[0].type"
    with pytest.raises(openai.BadRequestError) as info:
        sdk(gw).responses.create(model="claude-3-5-haiku-latest", input="hi",
                                 text={"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}})
    assert info.value.body["param"] == "text.format"
    with pytest.raises(openai.BadRequestError) as info:
        sdk(gw).responses.create(model="claude-3-5-haiku-latest", input="hi", reasoning={"effort": "high"},
                                 temperature=0.2)
    assert info.value.body["param"] == "temperature" and "'reasoning.effort'" in info.value.body["message"]
    assert upstream.count("/v1/messages") == 0


def test_the_providers_own_400_comes_back_in_openai_shape(gw, upstream):
    with pytest.raises(openai.BadRequestError) as info:
        sdk(gw).responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=3)
    assert info.value.body["type"] == "invalid_request_error"
    assert "max_output_tokens" in info.value.body["message"]


@pytest.fixture(scope="module")
def gw_without_redis(emulator):
    gateway = GatewayProcess({**provider_env(emulator), **UNCACHED}).start()  # REDIS_URL points at nothing
    yield gateway
    gateway.stop()


def test_without_redis_a_translated_previous_response_id_is_a_clear_400(gw_without_redis, upstream):
    client = sdk(gw_without_redis, "any-key")
    first = client.responses.create(model="claude-3-5-haiku-latest", input="hello")
    assert first.output_text == "Echo: hello" and first.store is False  # nothing could keep it
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="claude-3-5-haiku-latest", previous_response_id=first.id, input="again")
    assert info.value.body["param"] == "previous_response_id" and "Redis" in info.value.body["message"]
    relayed = client.responses.create(model="gpt-4o-mini", input="hello")
    again = client.responses.create(model="gpt-4o-mini", previous_response_id=relayed.id, input="again")
    assert again.output_text == "Echo: again"  # the provider holds that conversation itself
    with pytest.raises(openai.InternalServerError) as info:
        client.responses.retrieve(first.id)
    assert info.value.status_code == 503 and info.value.body["code"] == "response_store_unavailable"


def test_stored_responses_live_responses_ttl_seconds_under_the_clients_key(gw, upstream):
    translated = sdk(gw).responses.create(model="claude-3-5-haiku-latest", input="how long")
    relayed = sdk(gw).responses.create(model="gpt-4o-mini", input="how long")
    r = redis.Redis.from_url(gw.redis_server.url)
    for rid in (translated.id, relayed.id):
        assert 86000 < r.ttl(f"llm-edge:responses:acme:{rid}") <= 86400
        assert not r.exists(f"llm-edge:responses:beta:{rid}")
    assert b'"kind":"relayed","provider":"openai"' in r.get(f"llm-edge:responses:acme:{relayed.id}")
    unstored = sdk(gw).responses.create(model="claude-3-5-haiku-latest", input="forget me", store=False)
    assert unstored.store is False and not r.exists(f"llm-edge:responses:acme:{unstored.id}")
    with pytest.raises(openai.NotFoundError):
        sdk(gw).responses.retrieve(unstored.id)


def test_a_stream_that_fails_midway_ends_with_response_failed_or_the_providers_error(gw, upstream):
    upstream.push_faults(Fault(error_after=4), path="/v1/messages")
    events = list(sdk(gw).responses.create(model="claude-3-5-haiku-latest", input="one two three four five",
                                           stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.failed"
    assert events[-1].response.status == "failed" and events[-1].response.error.message
    assert "response.completed" not in [e.type for e in events]
    upstream.push_faults(Fault(error_after=4), path="/v1/responses")
    events = list(sdk(gw).responses.create(model="gpt-4o-mini", input="one two three four five", stream=True))
    assert [e.type for e in events][:2] == ["response.created", "response.in_progress"]
    assert events[-1].type == "error" and events[-1].code == "server_error"  # the provider's own event


def test_repeats_are_cache_hits_but_continuations_bypass_the_cache(start_gateway, upstream, redis_server):
    gw = start_gateway({"REDIS_URL": redis_server.url})  # caches on
    client = sdk(gw, "any-key")
    for model, path in (("claude-3-5-haiku-latest", "/v1/messages"), ("gpt-4o-mini", "/v1/responses")):
        first = client.responses.with_raw_response.create(model=model, input="cache me")
        second = client.responses.with_raw_response.create(model=model, input="cache me")
        assert first.headers["x-llm-edge-cache"] == "miss" and second.headers["x-llm-edge-cache"] == "hit-l1"
        assert second.parse().output_text == "Echo: cache me" and upstream.count(path) == 1
        prev = first.parse().id
        for _ in range(2):
            cont = client.responses.with_raw_response.create(model=model, input="more", previous_response_id=prev)
            assert cont.headers["x-llm-edge-cache"] == "bypass"
        assert upstream.count(path) == 3


@pytest.mark.parametrize("stream", [False, True])
def test_fields_a_claude_translation_drops_are_named_in_a_header(gw, upstream, stream):
    """A tool's ``strict`` and ``service_tier`` (https://platform.openai.com/docs/api-reference/responses/create)
    have no place in a Messages body: the answer says so in ``x-llm-edge-dropped-fields``, a stream with its
    headers, before the first event."""
    ask = {"model": "claude-3-5-haiku-latest", "input": "Weather in Paris?", "tools": [WEATHER_TOOL],
           "service_tier": "auto"}
    if stream:
        with sdk(gw).responses.with_streaming_response.create(stream=True, **ask) as response:
            assert response.headers["x-llm-edge-dropped-fields"] == "service_tier, tools[0].strict"
            assert [e.type for e in response.parse()][-1] == "response.completed"
    else:
        raw = sdk(gw).responses.with_raw_response.create(**ask)
        assert raw.headers["x-llm-edge-dropped-fields"] == "service_tier, tools[0].strict"
        assert raw.parse().output[0].type == "function_call"  # the emulator calls the tool
    sent = upstream.requests[-1]
    assert sent.path == "/v1/messages" and "strict" not in sent.body["tools"][0] and "service_tier" not in sent.body


def test_no_dropped_fields_header_when_relayed_and_chat_completions_keeps_strict(start_gateway, upstream, tmp_path):
    """Relayed to a Responses API provider nothing is left out; a provider with Chat Completions only gets
    ``strict`` (so only ``service_tier`` is named); a translation that leaves nothing out names nothing."""
    models = tmp_path / "models.yaml"
    models.write_text(f"providers:\n  vllm:\n    type: openai\n    base_url: {upstream.openai_base_url}\n"
                      "    api_key_env: OPENAI_API_KEY\n")
    client = sdk(start_gateway({**UNCACHED, "MODELS_FILE": str(models)}), "any-key")
    for model, tier, named in (("gpt-4o-mini", "auto", None), ("vllm/gpt-4o-mini", "auto", "service_tier"),
                               ("vllm/gpt-4o-mini", None, None), ("claude-3-5-haiku-latest", None, None)):
        tools = [{**WEATHER_TOOL, "strict": model != "claude-3-5-haiku-latest"}]
        raw = client.responses.with_raw_response.create(model=model, input="which way", tools=tools,
                                                        tool_choice="none", **({"service_tier": tier} if tier else {}))
        assert raw.parse().output_text == "Echo: which way"
        assert raw.headers.get("x-llm-edge-dropped-fields") == named, model
        sent = upstream.requests[-1].body
        if model == "vllm/gpt-4o-mini":
            assert sent["tools"][0]["function"]["strict"] is True and "service_tier" not in sent
        elif model == "gpt-4o-mini":
            assert sent["tools"][0]["strict"] is True and sent["service_tier"] == "auto"


def test_a_cache_hit_of_a_translation_names_the_fields_it_leaves_out(start_gateway, upstream, redis_server):
    """The entry answers the same translation (the dropped fields are not in the key), JSON or streamed."""
    client = sdk(start_gateway({"REDIS_URL": redis_server.url}), "any-key")
    ask = {"model": "claude-3-5-haiku-latest", "input": "cache what is dropped", "prompt_cache_key": "tenant-7"}
    first = client.responses.with_raw_response.create(**ask)
    second = client.responses.with_raw_response.create(**ask)
    assert first.headers["x-llm-edge-cache"] == "miss" and second.headers["x-llm-edge-cache"] == "hit-l1"
    for raw in (first, second):
        assert raw.headers["x-llm-edge-dropped-fields"] == "prompt_cache_key"
    with client.responses.with_streaming_response.create(stream=True, **ask) as response:
        assert response.headers["x-llm-edge-cache"] == "hit-l1"
        assert response.headers["x-llm-edge-dropped-fields"] == "prompt_cache_key"
        assert [e.type for e in response.parse()][-1] == "response.completed"
    plain = client.responses.with_raw_response.create(model=ask["model"], input=ask["input"])
    assert plain.headers["x-llm-edge-cache"] == "hit-l1" and "x-llm-edge-dropped-fields" not in plain.headers
    assert upstream.count("/v1/messages") == 1


@pytest.mark.parametrize("alias,failing,answered_by", [("smart", "/v1/responses", "anthropic"),
                                                       ("fast", "/v1/messages", "openai")])
def test_a_fallback_crosses_between_relay_and_translation(start_gateway, upstream, alias, failing, answered_by):
    gw = start_gateway(UNCACHED)
    upstream.set_default_fault(Fault(status=500), path=failing)
    for stream in (False, True):
        if stream:
            with sdk(gw, "any-key").responses.stream(model=alias, input="fall back") as s:
                resp = s.get_final_response()
        else:
            raw = sdk(gw, "any-key").responses.with_raw_response.create(model=alias, input="fall back")
            assert raw.headers["x-llm-edge-provider"] == answered_by
            resp = raw.parse()
        assert resp.output_text == "Echo: fall back" and resp.id.startswith("resp_")
    assert upstream.count(failing) >= 2


@pytest.mark.parametrize("stream", [False, True])
def test_claude_thinking_comes_back_as_a_reasoning_item_and_goes_back_signed(gw, upstream, stream):
    """The emulator checks the thinking block's signature and that a tool loop hands it back
    (https://docs.claude.com/en/docs/build-with-claude/extended-thinking): with reasoning.effort, the
    reasoning item of the first answer must reach Claude again, via previous_response_id or as input."""
    client = sdk(gw)
    ask = {"model": "claude-sonnet-4-5", "tools": [WEATHER_TOOL], "reasoning": {"effort": "low"}}
    if stream:
        with client.responses.stream(input="Weather in Paris?", **ask) as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(input="Weather in Paris?", **ask)
    assert upstream.requests[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    reasoning, call = first.output
    assert reasoning.type == "reasoning" and reasoning.content[0].text == "Let me think about which tool answers this."
    assert reasoning.encrypted_content and call.type == "function_call"
    answer = {"type": "function_call_output", "call_id": call.call_id, "output": "14 degrees"}
    chained = client.responses.create(previous_response_id=first.id, input=[answer], **ask)
    assert chained.output[-1].content[0].text == "Tool said: 14 degrees"
    manual = client.responses.create(input=[{"role": "user", "content": "Weather in Paris?"},
                                            *(i.model_dump(exclude_none=True) for i in first.output), answer], **ask)
    assert manual.output[-1].content[0].text == "Tool said: 14 degrees"
    sent = upstream.requests[-1].body["messages"]
    assert sent[1]["content"][0]["type"] == "thinking" and sent[1]["content"][0]["signature"]


def test_extra_openai_providers_relay_only_with_responses_true(start_gateway, upstream, tmp_path):
    """A vLLM-like provider (type openai, no Responses API) gets Chat Completions; one declared with
    ``responses: true`` gets the body at <base_url>/responses."""
    models = tmp_path / "models.yaml"
    provider = f"    type: openai\n    base_url: {upstream.openai_base_url}\n    api_key_env: OPENAI_API_KEY\n"
    models.write_text(f"providers:\n  vllm:\n{provider}  proxy:\n{provider}    responses: true\n")
    gw = start_gateway({**UNCACHED, "MODELS_FILE": str(models)})
    client = sdk(gw, "any-key")
    for model, path, named in (("vllm/gpt-4o-mini", "/v1/chat/completions", "vllm/gpt-4o-mini"),
                               ("proxy/gpt-4o-mini", "/v1/responses", "gpt-4o-mini-2025-04-14")):
        resp = client.responses.create(model=model, input="which way", max_output_tokens=50, tools=[WEATHER_TOOL],
                                       tool_choice="none")
        assert resp.output_text == "Echo: which way" and resp.model == named  # relayed: the provider's name
        sent = upstream.requests[-1]
        assert sent.path == path and sent.body["model"] == "gpt-4o-mini"
        if path == "/v1/chat/completions":
            assert sent.body["messages"] == [{"role": "user", "content": "which way"}]
            assert sent.body["max_tokens"] == 50 and sent.body["tools"][0]["function"]["name"] == "get_weather"
        else:
            assert sent.body["input"] == "which way" and sent.body["max_output_tokens"] == 50


@pytest.mark.parametrize("model,provider", [("gpt-4o-mini", "openai"), ("claude-3-5-haiku-latest", "anthropic")])
def test_usage_is_accounted_relayed_or_translated_json_or_streamed(gw, upstream, model, provider):
    before = settled(gw.metrics_url)
    plain = sdk(gw).responses.create(model=model, input="count these four")
    with sdk(gw).responses.stream(model=model, input="and these five words") as s:
        streamed = s.get_final_response()
    after = settled(gw.metrics_url)
    for kind, counted in (("prompt", plain.usage.input_tokens + streamed.usage.input_tokens),
                          ("completion", plain.usage.output_tokens + streamed.usage.output_tokens)):
        delta = (after.total("llm_edge_tokens_total", provider=provider, model=model, type=kind)
                 - before.total("llm_edge_tokens_total", provider=provider, model=model, type=kind))
        assert counted > 0 and delta == counted
    requests = (after.total("llm_edge_requests_total", endpoint="/v1/responses", provider=provider, status="200")
                - before.total("llm_edge_requests_total", endpoint="/v1/responses", provider=provider, status="200"))
    assert requests == 2


def test_background_is_relayed_and_polled_but_refused_by_a_translation(gw, upstream):
    queued = sdk(gw).responses.create(model="gpt-4o-mini", input="later", background=True)
    assert queued.status == "queued" and upstream.requests[-1].body["background"] is True
    assert sdk(gw).responses.retrieve(queued.id).id == queued.id  # relayed to the provider that holds it
    with pytest.raises(openai.BadRequestError) as info:
        sdk(gw).responses.create(model="claude-3-5-haiku-latest", input="later", background=True)
    assert info.value.body["param"] == "background"
