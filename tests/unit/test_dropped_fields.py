"""Caller fields a translation leaves out are recorded (as JSON paths) for ``x-llm-edge-dropped-fields``.

A chat caller's request is translated only for the other dialect's providers, so each codec's parse records
what the other dialect has no place for. The bodies are shaped as the providers' API references show them.
"""

from __future__ import annotations

import dataclasses

import orjson

from app.cache.keys import cache_key, cache_scope
from app.formats import anthropic, openai
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
