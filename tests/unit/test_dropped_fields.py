"""Caller fields a translation leaves out are recorded (as JSON paths) for ``x-llm-edge-dropped-fields``.

A chat caller's request is translated only for the other dialect's providers, so each codec's parse records
what the other dialect has no place for; a Responses request is translated for either (``dropped_by``).
The bodies are shaped as the providers' API references show them.
"""

from __future__ import annotations

import dataclasses

import orjson

from app.cache.keys import cache_key, cache_scope
from app.formats import anthropic, openai, responses
from app.http.middleware import DROPPED_SHOWN, dropped_fields_value
from app.providers.routing import Provider, Target

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def openai_body(**fields) -> dict:
    """A Chat Completions body (https://platform.openai.com/docs/api-reference/chat/create): a named
    system message, a named user message with a high-detail and an auto-detail image, a strict tool."""
    body = {
        "model": "claude-3-5-haiku-latest",
        "messages": [
            {"role": "system", "content": "Be brief.", "name": "house_rules"},
            {"role": "user", "name": "alice", "content": [
                {"type": "text", "text": "What is in these images?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "auto"}},
            ]},
        ],
        "tools": [{"type": "function", "function": {**WEATHER, "strict": True}},
                  {"type": "function", "function": {**WEATHER, "name": "lax", "strict": False}}],
    }
    body.update(fields)
    return body


def test_an_openai_request_records_what_an_anthropic_provider_has_no_place_for():
    """``name`` on messages, ``image_url.detail`` (not ``auto``), ``function.strict: true`` and the bookkeeping
    fields ``store``, ``metadata``, ``service_tier``, ``prompt_cache_key``, ``safety_identifier``
    (https://platform.openai.com/docs/api-reference/chat/create)."""
    req = openai.parse_request(openai_body(
        store=True, metadata={"session": "s-1"}, service_tier="auto", prompt_cache_key="tenant-7",
        safety_identifier="hashed-user-1"))
    assert req.dropped == (
        "messages[0].name", "messages[1].name", "messages[1].content[1].image_url.detail",
        "tools[0].function.strict", "store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier")


def test_the_anthropic_body_really_leaves_them_out():
    """What is listed is what the translation does not send (the Messages body has no place for it:
    https://docs.anthropic.com/en/api/messages)."""
    req = openai.parse_request(openai_body(store=True, metadata={"session": "s-1"}, prompt_cache_key="tenant-7"))
    sent = anthropic.build_request(req, "claude-3-5-haiku-latest", default_max_tokens=4096)
    text = orjson.dumps(sent).decode()
    for word in ("alice", "house_rules", '"detail"', '"strict"', "store", "tenant-7", "s-1"):
        assert word not in text
    assert [m.get("name") for m in sent["messages"]] == [None]


def test_defaults_that_change_nothing_are_not_listed():
    """``detail: auto``, ``strict: false``, ``store`` null and an empty ``metadata`` are what Anthropic does anyway."""
    body = openai_body(store=None, metadata={})
    body["messages"] = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "auto"}}]}]
    body["tools"] = [{"type": "function", "function": {**WEATHER, "strict": False}}]
    assert openai.parse_request(body).dropped == ()
    assert openai.parse_request({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).dropped == ()


def test_an_anthropic_request_records_what_an_openai_provider_has_no_place_for():
    """``citations`` on an assistant text block of the history (a ``char_location`` citation as the Messages
    reference shows it), ``metadata`` keys other than ``user_id``, ``service_tier``
    (https://docs.anthropic.com/en/api/messages)."""
    citation = {"type": "char_location", "cited_text": "The grass is green.", "document_index": 0,
                "document_title": "Facts", "start_char_index": 0, "end_char_index": 19}
    req = anthropic.parse_request({
        "model": "gpt-4o-mini", "max_tokens": 256, "service_tier": "standard_only",
        "metadata": {"user_id": "u-1", "trace": "t-9"},
        "messages": [
            {"role": "user", "content": "What colour is the grass?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Green.", "citations": [citation]},
                                              {"type": "text", "text": "Anything else?", "citations": []}]},
            {"role": "user", "content": "Thanks."},
        ],
    })
    assert req.dropped == ("messages[1].content[0].citations", "metadata.trace", "service_tier")
    assert req.user == "u-1"  # carried as OpenAI's user, so not listed
    sent = openai.build_request(req, "gpt-4o-mini", default_max_tokens=4096)
    text = orjson.dumps(sent).decode()
    assert "citations" not in text and "t-9" not in text and "service_tier" not in text


def test_a_metadata_key_unfit_for_a_header_is_named_by_its_object():
    req = anthropic.parse_request({"model": "gpt-4o-mini", "max_tokens": 16, "metadata": {"a\r\nb": "x", "ok": 1},
                                   "messages": [{"role": "user", "content": "hi"}]})
    assert req.dropped == ("metadata.ok", "metadata")
    assert anthropic.parse_request({"model": "gpt-4o-mini", "max_tokens": 16, "metadata": {"user_id": "u"},
                                    "messages": [{"role": "user", "content": "hi"}]}).dropped == ()


def test_the_header_value_is_bounded():
    paths = tuple(f"messages[{i}].name" for i in range(DROPPED_SHOWN + 5))
    value = dropped_fields_value(paths)
    assert value.endswith(f"messages[{DROPPED_SHOWN - 1}].name, ...")
    assert value.count("name") == DROPPED_SHOWN
    assert dropped_fields_value(paths[:2]) == "messages[0].name, messages[1].name"


def test_what_was_dropped_is_not_part_of_the_cache_key():
    """The provider gets the same body either way, so the same answer serves both."""
    target = Target(Provider("anthropic", "anthropic", "http://y", "k", "ANTHROPIC_API_KEY", True), "claude")
    req = openai.parse_request(openai_body())
    assert req.dropped
    scope = cache_scope("anonymous", None)
    assert cache_key(req, target, scope) == cache_key(dataclasses.replace(req, dropped=()), target, scope)


def responses_body(**fields) -> dict:
    """A Responses body (https://platform.openai.com/docs/api-reference/responses/create): a user message with a
    high-detail and an auto-detail image, a tool's output with a low-detail image, a strict and a lax tool."""
    body = {
        "model": "claude-3-5-haiku-latest",
        "input": [
            {"role": "user", "content": [
                {"type": "input_text", "text": "What is in these images?"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "high"},
                {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "auto"},
            ]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": [
                {"type": "input_image", "image_url": "https://example.com/map.png", "detail": "low"}]},
        ],
        "tools": [{"type": "function", **WEATHER, "strict": True},
                  {"type": "function", **WEATHER, "name": "lax", "strict": False}],
    }
    body.update(fields)
    return body


def test_a_responses_request_records_what_each_translation_leaves_out():
    """Every translation: ``service_tier``, ``prompt_cache_key``, and ``safety_identifier`` beside a ``user``;
    an Anthropic one also an image's ``detail`` (not ``auto``) and a tool's ``strict: true``. What the gateway
    acts on itself (``store``, ``metadata``) is not listed."""
    req = responses.parse_request(responses_body(
        store=True, metadata={"session": "s-1"}, service_tier="auto", prompt_cache_key="tenant-7",
        user="u-1", safety_identifier="hashed-user-1"))
    both = ("service_tier", "prompt_cache_key", "safety_identifier")
    assert req.dropped_by("openai") == both
    assert req.dropped_by("anthropic") == (*both, "input[0].content[1].detail", "input[2].output[0].detail",
                                           "tools[0].strict")
    assert req.user == "u-1"


def test_each_translation_of_a_responses_request_really_leaves_them_out():
    """Listed is what the body sent does not carry; Chat Completions carries the details and ``strict``."""
    body = responses_body(service_tier="auto", prompt_cache_key="tenant-7", user="u-1",
                          safety_identifier="hashed-user-1")
    req = responses.parse_request(body)
    claude = orjson.dumps(anthropic.build_request(req, "claude-3-5-haiku-latest", default_max_tokens=4096)).decode()
    for word in ('"detail"', '"strict"', "service_tier", "tenant-7", "hashed-user-1"):
        assert word not in claude
    body["input"][2]["output"] = "sunny"  # a Chat Completions tool result holds text only (an image is a 400)
    chat = openai.build_request(responses.parse_request(body), "llama", default_max_tokens=4096)
    text = orjson.dumps(chat).decode()
    for word in ("service_tier", "tenant-7", "hashed-user-1"):
        assert word not in text
    assert '"detail":"high"' in text and chat["tools"][0]["function"]["strict"] is True and chat["user"] == "u-1"


def test_a_responses_safety_identifier_alone_stands_for_user_and_defaults_are_not_listed():
    body = responses_body(safety_identifier="hashed-user-1")
    body["input"] = [{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "auto"}]}]
    body["tools"] = [{"type": "function", **WEATHER, "strict": False}]
    req = responses.parse_request(body)
    assert req.user == "hashed-user-1" and req.dropped_by("anthropic") == ()
    assert responses.parse_request({"model": "m", "input": "hi"}).dropped_by("anthropic") == ()


def test_what_a_responses_translation_drops_is_not_part_of_the_cache_key():
    target = Target(Provider("anthropic", "anthropic", "http://y", "k", "ANTHROPIC_API_KEY", True), "claude")
    req = responses.parse_request(responses_body(service_tier="auto"))
    assert req.dropped and req.dropped_for_anthropic
    scope = cache_scope("anonymous", None)
    assert cache_key(req, target, scope) == cache_key(
        dataclasses.replace(req, dropped=(), dropped_for_anthropic=()), target, scope)
