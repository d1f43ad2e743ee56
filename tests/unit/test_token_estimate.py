"""The count_tokens estimate for models without a count endpoint, and the dialect of paths under /v1/messages."""

from __future__ import annotations

import pytest

from app.formats import anthropic as anthropic_codec
from app.formats.token_estimate import IMAGE_TOKENS, MESSAGE_TOKENS, REQUEST_TOKENS, estimate_input_tokens
from app.http.middleware import dialect_for


def estimate(**body) -> int:
    return estimate_input_tokens(anthropic_codec.parse_request({"model": "gpt-4o", "max_tokens": 1, **body}))


def user(content) -> list[dict]:
    return [{"role": "user", "content": content}]


def test_text_is_four_bytes_a_token_plus_framing():
    assert estimate(messages=user("abcdefgh")) == 2 + MESSAGE_TOKENS + REQUEST_TOKENS
    assert estimate(messages=user("abcdefghi")) == 3 + MESSAGE_TOKENS + REQUEST_TOKENS  # rounded up
    assert estimate(system="abcd", messages=user("abcd")) == 2 + 2 * MESSAGE_TOKENS + REQUEST_TOKENS


def test_never_zero_and_grows_with_every_part():
    base = estimate(messages=user("x"))
    assert base > 0
    assert estimate(messages=user("x" * 4000)) == base + 999
    assert estimate(messages=[*user("x"), {"role": "assistant", "content": "y"}]) > base
    tool = {"name": "get_weather", "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    assert estimate(messages=user("x"), tools=[tool]) > base + 20
    call = [*user("x"), {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "rainy " * 100}]}]
    assert estimate(messages=call) > base + 150


def test_images_cost_a_fixed_amount_not_their_base64():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 100_000}}
    with_image = estimate(messages=user([image, {"type": "text", "text": "x"}]))
    assert with_image == estimate(messages=user("x")) + IMAGE_TOKENS


def test_non_latin_text_weighs_by_its_bytes():
    assert estimate(messages=user("日本語のテキスト" * 10)) > estimate(messages=user("abcdefgh" * 10)) * 2


@pytest.mark.parametrize("path,dialect", [
    ("/v1/messages", "anthropic"), ("/v1/messages/", "anthropic"), ("/v1/messages/count_tokens", "anthropic"),
    ("/v1/messages/whatever", "anthropic"), ("/v1/messagesx", "openai"), ("/v1/chat/completions", "openai"),
    ("/v1/models", "openai"), ("/nope", "openai"),
])
def test_every_path_under_v1_messages_answers_errors_in_anthropics_shape(path, dialect):
    assert dialect_for(path) == dialect
