"""What the gateway reads of an Embeddings request and answer (app/formats/embeddings.py).

Payloads are the shapes of OpenAI's API reference, https://platform.openai.com/docs/api-reference/embeddings/create
(request: ``input`` a string, an array of strings, an array of token ids or an array of token arrays; ``model``,
``dimensions``, ``encoding_format``, ``user``) and its embedding object, .../embeddings/object.
"""

from __future__ import annotations

import pytest

from app.errors import InvalidRequest, UpstreamError
from app.formats.canonical import Usage
from app.formats.embeddings import MAX_INPUTS, check_request, input_text, key_fields, read_usage

# The reference's example request and answer (the vector cut to three values).
REFERENCE_REQUEST = {"input": "The food was delicious and the waiter...", "model": "text-embedding-ada-002",
                     "encoding_format": "float"}
REFERENCE_ANSWER = (b'{"object": "list", "data": [{"object": "embedding", "embedding": [0.0023064255, -0.009327292, '
                    b'-0.0028842222], "index": 0}], "model": "text-embedding-ada-002", '
                    b'"usage": {"prompt_tokens": 8, "total_tokens": 8}}')


@pytest.mark.parametrize("value", [
    "The food was delicious and the waiter...",
    ["The food was delicious", "and the waiter..."],
    [791, 3691, 574, 18406],
    [[791, 3691], [574, 18406, 323]],
])
def test_the_four_input_shapes_pass(value):
    assert check_request({**REFERENCE_REQUEST, "input": value}) == "text-embedding-ada-002"


def test_every_optional_field_of_the_reference_passes():
    body = {"model": "text-embedding-3-small", "input": "x", "dimensions": 256, "encoding_format": "base64",
            "user": "user-1234"}
    assert check_request(body) == "text-embedding-3-small"


def test_fields_the_gateway_does_not_know_are_the_providers_to_judge():
    assert check_request({**REFERENCE_REQUEST, "input_type": "search_query"}) == "text-embedding-ada-002"


def test_a_single_token_array_may_be_longer_than_a_batch():
    check_request({**REFERENCE_REQUEST, "input": list(range(MAX_INPUTS + 10))})


@pytest.mark.parametrize("change,param", [
    ({"input": None}, "input"),
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": {"text": "x"}}, "input"),
    ({"input": 5.5}, "input"),
    ({"input": [True]}, "input[0]"),
    ({"input": ["a", ""]}, "input[1]"),
    ({"input": ["a", ["b"]]}, "input[1]"),
    ({"input": [[1], "b"]}, "input[1]"),
    ({"input": [[1], []]}, "input[1]"),
    ({"input": [[1, -2]]}, "input[0][1]"),
    ({"input": [1, "2"]}, "input[1]"),
    ({"input": [1, 2**40]}, "input[1]"),
    ({"input": ["x"] * (MAX_INPUTS + 1)}, "input"),
    ({"dimensions": 0}, "dimensions"),
    ({"dimensions": "256"}, "dimensions"),
    ({"dimensions": True}, "dimensions"),
    ({"encoding_format": "int8"}, "encoding_format"),
    ({"encoding_format": 1}, "encoding_format"),
    ({"user": 42}, "user"),
    ({"model": ""}, "model"),
    ({"model": None}, "model"),
])
def test_a_bad_field_is_a_400_naming_it(change, param):
    with pytest.raises(InvalidRequest) as caught:
        check_request({**REFERENCE_REQUEST, **change})
    assert caught.value.status == 400 and caught.value.param == param


def test_absent_encoding_format_keys_as_float_and_keeps_the_rest():
    body = {"model": "m", "input": "x", "dimensions": 8}
    assert key_fields(body) == {**body, "encoding_format": "float"}
    assert key_fields({**body, "encoding_format": "float"}) == key_fields(body)
    assert key_fields({**body, "encoding_format": "base64"}) != key_fields(body)
    assert key_fields(body) is not body and "encoding_format" not in body


def test_the_reference_answer_counts_its_prompt_tokens():
    assert read_usage(REFERENCE_ANSWER, "openai") == Usage(input_tokens=8)


def test_an_answer_without_usage_counts_nothing():
    assert read_usage(b'{"object": "list", "data": []}', "local") == Usage()


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"object": "list"}', b'{"data": {}}'])
def test_an_answer_without_a_data_list_is_a_bad_response(raw):
    with pytest.raises(UpstreamError) as caught:
        read_usage(raw, "openai")
    assert caught.value.status == 502 and "openai" in caught.value.message


def test_a_big_answer_is_read_from_its_tail_and_says_the_same():
    vectors = ",".join(f'{{"object": "embedding", "index": {i}, "embedding": [{", ".join(["0.0123"] * 1536)}]}}'
                       for i in range(20))
    raw = f'{{"object": "list", "data": [{vectors}], "model": "m", "usage": {{"prompt_tokens": 77, ' \
          f'"total_tokens": 77}}}}'.encode()
    assert read_usage(raw, "openai") == Usage(input_tokens=77)
    # Fields after usage (another server's order) are read too; a "usage" inside a vector's object is not taken.
    later = raw[:-1] + b', "created": 1}'
    assert read_usage(later, "openai") == Usage(input_tokens=77)
    inner = b'{"object": "list", "data": [{"embedding": [0.1], "usage": {"prompt_tokens": 3}}]}'
    assert read_usage(inner, "openai") == Usage()


def test_a_tail_that_is_not_an_object_falls_back_to_the_whole_answer():
    with pytest.raises(UpstreamError):
        read_usage(b'{"data": [1, 2], "usage": {"prompt_tokens": 4}', "openai")  # cut short
    assert read_usage(b'{"data": [], "usage": 5}', "openai") == Usage()


def test_the_inputs_as_text_for_the_access_line():
    assert input_text("The food was delicious") == "The food was delicious"
    assert input_text(["one", "two"]) == "one\ntwo"
    assert input_text([791, 3691, 574]) == "<3 tokens>"
    assert input_text([[791, 3691], [574]]) == "<2 tokens>\n<1 tokens>"
