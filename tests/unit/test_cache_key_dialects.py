"""Cache keys from real request bodies: the same question in OpenAI or Anthropic form, with its JSON
keys in any order, gets one key; a change of meaning in the body gets another."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.cache.keys import cache_key, cache_scope
from app.formats import anthropic as anthropic_codec
from app.formats import openai as openai_codec
from app.providers.routing import Provider, Target

TARGET = Target(Provider("anthropic", "anthropic", "http://y", "k", "ANTHROPIC_API_KEY", True), "claude-x")
SCOPE = cache_scope("anonymous", None)

words = st.text(st.characters(codec="utf-8", categories=("L", "N", "Zs")), min_size=1, max_size=16)
schemas = st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(
    st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.sampled_from([{"type": "string"}, {"type": "integer"}]),
    max_size=3)})
tools = st.lists(st.fixed_dictionaries({"name": st.from_regex(r"[a-z_]{1,10}", fullmatch=True),
                                        "description": words, "schema": schemas}),
                 max_size=2, unique_by=lambda t: t["name"])
conversations = st.fixed_dictionaries({
    "system": st.none() | words,
    "turns": st.lists(st.tuples(words, st.none() | words), min_size=1, max_size=3),  # (user, assistant reply)
    "tool_round": st.none() | st.tuples(st.from_regex(r"call_[a-z0-9]{4,8}", fullmatch=True), words),
    "tools": tools,
    "choice": st.sampled_from([None, "auto", "required", "none"]),
    "max_tokens": st.integers(1, 4096),
    "temperature": st.none() | st.sampled_from([0, 0.2, 0.7, 1]),
    "top_p": st.none() | st.sampled_from([0.1, 0.5, 1]),
    "stop": st.lists(st.from_regex(r"[A-Z]{1,5}", fullmatch=True), max_size=2, unique=True),
})


def _body(c: dict[str, Any], head: list[dict[str, Any]], tool_round: list[dict[str, Any]]) -> dict[str, Any]:
    """What both dialects share: the turns, then the dialect's tool round, the sampling parameters."""
    messages = list(head)
    for user, reply in c["turns"]:
        messages.append({"role": "user", "content": user})
        if reply:
            messages.append({"role": "assistant", "content": reply})
    if c["tool_round"] and c["tools"]:
        messages.extend(tool_round)
    if messages[-1]["role"] == "assistant":
        messages.append({"role": "user", "content": "go on"})
    body: dict[str, Any] = {"model": "claude-x", "max_tokens": c["max_tokens"], "messages": messages}
    for name in ("temperature", "top_p"):
        if c[name] is not None:
            body[name] = c[name]
    return body


def openai_body(c: dict[str, Any]) -> dict[str, Any]:
    call_id, result = c["tool_round"] or ("", "")
    tool_round = [
        {"role": "assistant", "content": None, "tool_calls": [{"id": call_id, "type": "function", "function": {
            "name": c["tools"][0]["name"] if c["tools"] else "", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": call_id, "content": result},
    ]
    body = _body(c, [{"role": "system", "content": c["system"]}] if c["system"] else [], tool_round)
    if c["tools"]:
        body["tools"] = [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                                           "parameters": t["schema"]}} for t in c["tools"]]
        if c["choice"]:
            body["tool_choice"] = c["choice"]
    if c["stop"]:
        body["stop"] = c["stop"]
    return body


def anthropic_body(c: dict[str, Any]) -> dict[str, Any]:
    call_id, result = c["tool_round"] or ("", "")
    tool_round = [
        {"role": "assistant", "content": [{"type": "tool_use", "id": call_id,
                                           "name": c["tools"][0]["name"] if c["tools"] else "", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": result}]},
    ]
    body = _body(c, [], tool_round)
    if c["system"]:
        body["system"] = c["system"]
    if c["tools"]:
        body["tools"] = [{"name": t["name"], "description": t["description"], "input_schema": t["schema"]}
                         for t in c["tools"]]
        if c["choice"]:
            body["tool_choice"] = {"type": {"required": "any"}.get(c["choice"], c["choice"])}
    if c["stop"]:
        body["stop_sequences"] = c["stop"]
    return body


def shuffled(value: Any, rnd: random.Random) -> Any:
    """The same JSON with every object's keys in a random order."""
    if isinstance(value, dict):
        keys = list(value)
        rnd.shuffle(keys)
        return {k: shuffled(value[k], rnd) for k in keys}
    if isinstance(value, list):
        return [shuffled(v, rnd) for v in value]
    return value


def key_of(codec, body: dict[str, Any]) -> str:
    return cache_key(codec.parse_request(body), TARGET, SCOPE)


@settings(max_examples=150)
@given(conversations, st.randoms(use_true_random=False), st.booleans())
def test_either_dialect_in_any_key_order_gives_one_key(conversation, rnd, stream):
    expected = key_of(openai_codec, openai_body(conversation))
    assert key_of(openai_codec, shuffled({**openai_body(conversation), "stream": stream}, rnd)) == expected
    assert key_of(anthropic_codec, shuffled(anthropic_body(conversation), rnd)) == expected
    assert key_of(anthropic_codec, {**anthropic_body(conversation), "stream": stream,
                                    "metadata": {"user_id": "u-1"}}) == expected


MEANINGFUL = {
    "max_tokens": lambda c: {**c, "max_tokens": c["max_tokens"] % 4096 + 1},
    "temperature": lambda c: {**c, "temperature": 0.3 if c["temperature"] != 0.3 else 0.4},
    "top_p": lambda c: {**c, "top_p": 0.25 if c["top_p"] != 0.25 else 0.35},
    "stop": lambda c: {**c, "stop": [*c["stop"], "ZZZZZZ"]},
    "system": lambda c: {**c, "system": (c["system"] or "") + " and be kind"},
    "user text": lambda c: {**c, "turns": [*c["turns"][:-1], (c["turns"][-1][0] + "?", c["turns"][-1][1])]},
    "another turn": lambda c: {**c, "turns": [*c["turns"], ("more", None)]},
    "tools": lambda c: {**c, "tools": [*c["tools"], {"name": "zz_extra", "description": "x",
                                                     "schema": {"type": "object", "properties": {}}}]},
}


@settings(max_examples=100)
@given(conversations, st.sampled_from(sorted(MEANINGFUL)), st.sampled_from(["openai", "anthropic"]))
def test_a_change_of_meaning_in_the_body_changes_the_key(conversation, change, dialect):
    codec, render = ((openai_codec, openai_body) if dialect == "openai" else (anthropic_codec, anthropic_body))
    changed = MEANINGFUL[change](conversation)
    assert key_of(codec, render(changed)) != key_of(codec, render(conversation))
