"""The caller's headers forwarded to providers: which go where, and the one value check (chat and count_tokens)."""

from __future__ import annotations

import pytest

from app.errors import InvalidRequest
from app.http.caller_headers import anthropic_headers, checked, forwarded_headers


@pytest.mark.parametrize("value", ["2023-06-01", "interleaved-thinking-2025-05-14,files-api-2025-04-14",
                                   " spaced ", "~" * 1024])
def test_printable_ascii_up_to_1024_characters_is_forwarded(value):
    assert checked("anthropic-beta", value) == value


@pytest.mark.parametrize("value", ["", "x" * 1025, "caf\u00e9", "tab\there", "del\x7f", "nul\x00"])
def test_anything_else_is_a_400_naming_the_header(value):
    with pytest.raises(InvalidRequest) as caught:
        checked("anthropic-version", value)
    assert caught.value.param == "anthropic-version" and "anthropic-version" in caught.value.message


def test_each_wire_format_gets_its_own_headers_and_openais_only_when_allowed():
    env = {"HTTP_ANTHROPIC_BETA": "b", "HTTP_ANTHROPIC_VERSION": "2023-06-01", "HTTP_OPENAI_ORGANIZATION": "org",
           "HTTP_OPENAI_PROJECT": "proj", "HTTP_AUTHORIZATION": "Bearer k"}
    assert forwarded_headers(env, False) == {"anthropic": {"anthropic-beta": "b", "anthropic-version": "2023-06-01"}}
    assert forwarded_headers(env, True)["openai"] == {"openai-organization": "org", "openai-project": "proj"}
    assert forwarded_headers({"HTTP_AUTHORIZATION": "Bearer k"}, False) is None
    assert anthropic_headers(env) == {"anthropic-beta": "b", "anthropic-version": "2023-06-01"}
    assert anthropic_headers({"HTTP_ANTHROPIC_BETA": ""}) == {}  # an empty header says nothing


def test_a_bad_value_is_refused_whichever_header_and_wire_it_is_for():
    for env, allowed in (({"HTTP_ANTHROPIC_BETA": "x" * 2000}, False), ({"HTTP_OPENAI_PROJECT": "\u00e9"}, True)):
        with pytest.raises(InvalidRequest):
            forwarded_headers(env, allowed)
    assert forwarded_headers({"HTTP_OPENAI_PROJECT": "\u00e9"}, False) is None  # not forwarded: not checked
