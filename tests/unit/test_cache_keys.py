"""Cache keys: stable under JSON key order and delivery options, different for any change of meaning."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.cache.keys import KEY_PREFIX, cache_key, cache_scope, key_payload, normalized_payload, request_fingerprint
from app.formats.canonical import (
    ChatRequest,
    ImageBlock,
    Message,
    TextBlock,
    Tool,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
)
from app.providers.routing import Provider, Target

OPENAI = Target(Provider("openai", "openai", "http://x", "k", "OPENAI_API_KEY", True), "gpt-4o-mini")
ANTHROPIC = Target(Provider("anthropic", "anthropic", "http://y", "k", "ANTHROPIC_API_KEY", True), "claude-3-5-haiku")
SCOPE = cache_scope("anonymous", None)

words = st.text(min_size=1, max_size=12)
json_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(-1e6, 1e6, allow_nan=False) | words
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(words, inner, max_size=3), max_leaves=8)
json_objects = st.dictionaries(words, json_values, max_size=4)
text_blocks = st.builds(TextBlock, st.text(max_size=40))
user_blocks = st.one_of(
    text_blocks,
    st.builds(ImageBlock, media_type=st.just("image/png"), data=st.text("abcdef", min_size=1, max_size=20)),
    st.builds(ToolResultBlock, words, st.lists(text_blocks, max_size=2).map(tuple), st.booleans()),
)
assistant_blocks = st.one_of(text_blocks, st.builds(ToolUseBlock, words, words, json_objects))
messages = st.one_of(
    st.builds(Message, st.just("user"), st.lists(user_blocks, min_size=1, max_size=3).map(tuple)),
    st.builds(Message, st.just("assistant"), st.lists(assistant_blocks, min_size=1, max_size=3).map(tuple)),
)
requests = st.builds(
    ChatRequest,
    model=words,
    messages=st.lists(messages, min_size=1, max_size=4).map(tuple),
    system=st.lists(text_blocks, max_size=2).map(tuple),
    max_tokens=st.none() | st.integers(1, 10**5),
    temperature=st.none() | st.floats(0, 2),
    top_p=st.none() | st.floats(0, 1),
    stop=st.lists(words, max_size=3).map(tuple),
    tools=st.lists(st.builds(Tool, words, st.none() | words, json_objects, st.none() | st.booleans()),
                   max_size=2).map(tuple),
    tool_choice=st.none() | st.builds(ToolChoice, st.sampled_from(["auto", "none", "any", "tool"]),
                                      st.none() | words, st.booleans()),
    extra=json_objects,
)


def reorder(value: Any) -> Any:
    """The same data with every mapping's keys in reverse order (as another client might send them)."""
    if isinstance(value, dict):
        return {k: reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, (list, tuple)):
        return type(value)(reorder(v) for v in value)
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{f.name: reorder(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value


def key(req: ChatRequest, target: Target = OPENAI, scope: str = SCOPE) -> str:
    return cache_key(req, target, scope)


@settings(max_examples=200)
@given(requests)
def test_the_key_ignores_key_order(req):
    assert key(reorder(req)) == key(req)


@settings(max_examples=300)
@given(requests, st.sampled_from([None, 1, 1.0, -0.0, 2.0**53, 1e16, 0.5, "1.0]", {"n": 3.0}]))
def test_the_fast_payload_is_byte_for_byte_the_normalized_one(req, value):
    """Direct serialization is only a shortcut: every request must hash the same bytes either way."""
    for r in (req, dataclasses.replace(req, extra={**req.extra, "x": value}),
              dataclasses.replace(req, temperature=value if isinstance(value, float) else req.temperature)):
        assert key_payload(r, OPENAI, SCOPE) == normalized_payload(r, OPENAI, SCOPE)


@settings(max_examples=100)
@given(requests, st.booleans(), st.booleans(), st.none() | words, st.none() | json_objects,
       st.sampled_from(["openai", "anthropic"]), words)
def test_the_key_ignores_delivery_and_caller_details(req, stream, include_usage, user, metadata, source, alias):
    other = dataclasses.replace(req, stream=stream, include_usage=include_usage, user=user, metadata=metadata,
                                source_format=source, model=alias)
    assert key(other) == key(req)


CHANGES = {
    "messages": lambda r: dataclasses.replace(r, messages=(*r.messages, Message("user", (TextBlock("and?"),)))),
    "last message text": lambda r: dataclasses.replace(
        r, messages=(*r.messages[:-1], Message(r.messages[-1].role, (*r.messages[-1].content, TextBlock("!"))))),
    "role": lambda r: dataclasses.replace(r, messages=tuple(
        Message("assistant" if m.role == "user" else "user", tuple(b for b in m.content if isinstance(b, TextBlock))
                or (TextBlock("x"),)) for m in r.messages)),
    "system": lambda r: dataclasses.replace(r, system=(*r.system, TextBlock("be brief"))),
    "max_tokens": lambda r: dataclasses.replace(r, max_tokens=(r.max_tokens or 0) + 1),
    "temperature": lambda r: dataclasses.replace(r, temperature=(r.temperature or 0) + 0.25),
    "top_p": lambda r: dataclasses.replace(r, top_p=0.5 if r.top_p != 0.5 else 0.25),
    "stop": lambda r: dataclasses.replace(r, stop=(*r.stop, "STOP-HERE")),
    "tools": lambda r: dataclasses.replace(r, tools=(*r.tools, Tool("extra_tool", None, {"type": "object"}))),
    "tool_choice": lambda r: dataclasses.replace(
        r, tool_choice=ToolChoice("tool", "x") if r.tool_choice != ToolChoice("tool", "x") else ToolChoice("auto")),
    "extra": lambda r: dataclasses.replace(r, extra={**r.extra, "seed": 1 + int(r.extra.get("seed") == 1)}),
}


@settings(max_examples=60)
@given(requests, st.sampled_from(sorted(CHANGES)))
def test_any_change_of_meaning_changes_the_key(req, change):
    assert key(CHANGES[change](req)) != key(req)


@given(requests)
def test_target_and_scope_are_part_of_the_key(req):
    assert key(req, OPENAI) != key(req, ANTHROPIC)
    assert key(req, OPENAI) != key(req, Target(OPENAI.provider, "gpt-4o"))
    assert key(req, scope=cache_scope("acme", None)) != key(req, scope=cache_scope("globex", None))
    assert key(req, scope=cache_scope("acme", "team")) == key(req, scope=cache_scope("globex", "team"))
    assert key(req, scope=cache_scope("team", None)) != key(req, scope=cache_scope("x", "team"))


def test_integral_floats_equal_integers_and_max_completion_tokens_equals_max_tokens():
    base = ChatRequest(model="m", messages=(Message("user", (TextBlock("hi"),)),), temperature=1, max_tokens=50,
                       tools=(Tool("f", None, {"type": "object", "properties": {"n": {"minimum": 1}}}),))
    same = dataclasses.replace(base, temperature=1.0, extra={"max_completion_tokens": 50},
                               tools=(Tool("f", None, {"properties": {"n": {"minimum": 1.0}}, "type": "object"}),))
    assert key(same) == key(base)
    assert key(dataclasses.replace(base, extra={"max_completion_tokens": 60})) != key(base)
    assert "max_completion_tokens" not in request_fingerprint(same)["extra"]


def test_the_key_is_versioned_and_names_its_scope_safely():
    req = ChatRequest(model="m", messages=(Message("user", (TextBlock("hi"),)),))
    k = key(req, scope=cache_scope("acme corp/{eu}", None))
    assert k.startswith(KEY_PREFIX + "client_acme_corp__eu_:") and len(k.rsplit(":", 1)[1]) == 40
    assert key(req, scope=cache_scope("anonymous", "shared")).startswith(KEY_PREFIX + "ns_shared:")


def test_values_that_are_not_data_are_refused():
    req = ChatRequest(model="m", messages=(Message("user", (TextBlock("hi"),)),), extra={"x": object()})
    with pytest.raises(TypeError):
        key(req)
