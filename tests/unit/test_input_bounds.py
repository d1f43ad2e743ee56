"""Numbers and model names a caller sends are bounded at ingress: a 400 naming the field, never a 500.

Bounds follow the providers' API references:
- OpenAI Chat Completions, https://platform.openai.com/docs/api-reference/chat/create
  (max_tokens / max_completion_tokens integers, n, seed, logprobs boolean, top_logprobs 0-20,
  temperature 0-2, top_p 0-1, frequency/presence_penalty -2..2, logit_bias -100..100);
- Anthropic Messages, https://docs.anthropic.com/en/api/messages
  (max_tokens integer >= 1, temperature 0-1, top_p 0-1, top_k integer >= 0,
  thinking.budget_tokens integer >= 1024).
Integers are capped at 2**31 - 1 (seed at the int64 range): beyond 64 bits ``orjson.dumps`` raised
``TypeError: Integer exceeds 64-bit range`` on the way upstream, a 500 in all four dialect pairs.
"""

from __future__ import annotations

import json

import orjson
import pytest

from app.errors import InvalidRequest
from app.formats import anthropic, openai
from app.formats.common import shown_model

HUGE = [1e21, 1180591620717411303424, 2**63, -(2**64), 2.5]
MESSAGES = [{"role": "user", "content": "hi"}]


def _body(codec, **fields):
    base = {"model": "gpt-4o-mini" if codec is openai else "claude-3-5-haiku-latest", "messages": MESSAGES}
    if codec is anthropic:
        base["max_tokens"] = 16
    base.update(fields)
    return orjson.loads(json.dumps(base))  # as the resource sees it: big integers arrive as floats


def _refused(codec, **fields) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        codec.parse_request(_body(codec, **fields))
    assert info.value.status == 400
    return info.value


OPENAI_INT_FIELDS = ["max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs"]
ANTHROPIC_INT_FIELDS = ["max_tokens", "top_k"]


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("field", OPENAI_INT_FIELDS)
def test_openai_integer_fields_refuse_huge_and_fractional_values(field, value):
    err = _refused(openai, **{field: value})
    assert err.param == field and field in err.message


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("field", ANTHROPIC_INT_FIELDS)
def test_anthropic_integer_fields_refuse_huge_and_fractional_values(field, value):
    err = _refused(anthropic, **{field: value})
    assert err.param == field and field in err.message


@pytest.mark.parametrize("value", [*HUGE, 1023])
def test_anthropic_thinking_budget_is_bounded(value):
    err = _refused(anthropic, thinking={"type": "enabled", "budget_tokens": value})
    assert err.param == "thinking.budget_tokens"


@pytest.mark.parametrize(("codec", "field", "value"), [
    (openai, "temperature", 2.01), (openai, "temperature", 1e308), (openai, "top_p", -0.1),
    (openai, "frequency_penalty", 2.5), (openai, "presence_penalty", -1e21), (openai, "top_logprobs", 21),
    (openai, "logprobs", 1), (anthropic, "temperature", 1.5), (anthropic, "top_p", 1e21),
    (anthropic, "top_k", -1),
])
def test_numbers_out_of_the_documented_range_are_400(codec, field, value):
    assert _refused(codec, **{field: value}).param == field


def test_logit_bias_values_are_bounded():
    assert _refused(openai, logit_bias={"50256": 1e21}).param == "logit_bias.50256"


@pytest.mark.parametrize("codec", [openai, anthropic])
def test_documented_values_still_pass(codec):
    extra = {"seed": -(2**63), "top_logprobs": 20, "logprobs": True, "frequency_penalty": -2,
             "logit_bias": {"1": 100}} if codec is openai else {
        "top_k": 0, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    req = codec.parse_request(_body(codec, max_tokens=2**31 - 1, temperature=1, top_p=1.0, **extra))
    assert req.max_tokens == 2**31 - 1


@pytest.mark.parametrize("codec", [openai, anthropic])
@pytest.mark.parametrize("name", ["gpt\x00x", "gpt-4o\r\nx-evil: 1", "gpt\n", "gpt\x7f", "gpt-😀",
                                  "gpt 4o", "", "g" * 257, "g" * 100_000])
def test_model_names_must_be_short_printable_ascii(codec, name):
    err = _refused(codec, model=name)
    assert (err.param == "model" and name[:20] not in err.message) or not name.strip()


@pytest.mark.parametrize("codec", [openai, anthropic])
@pytest.mark.parametrize("name", ["gpt-4o-mini", "claude-3-5-sonnet-20241022", "local/llama3.1:8b-instruct-q4_K_M",
                                  "ft:gpt-4o-mini-2024-07-18:acme::9pLmKxYz", "m" * 256])
def test_real_model_names_pass(codec, name):
    assert codec.parse_request(_body(codec, model=name)).model == name


@pytest.mark.parametrize("key", ["sk-edge-thrifty-client-key-0000001", "SK-PROJ-abcdefghijklmnop",
                                 "a3f9c2e17b5d4e8f9a0b1c2d3e4f5a6b", "edgeKey9Xq2LmNpQrStUvWx"])
def test_a_pasted_key_is_never_shown_verbatim(key):
    assert key not in shown_model(key) and "[redacted]" in shown_model(key)
    assert shown_model("claude-3-5-sonnet-20241022") == "claude-3-5-sonnet-20241022"
    assert len(shown_model("x" * 256)) == 64
