"""The emulator speaking OpenAI Embeddings: deterministic vectors, dimensions, base64, usage, and the checks the
real API makes (https://platform.openai.com/docs/api-reference/embeddings/create).

Why: the gateway's embeddings tests trust this wire format; vectors that differ per call would make every cache
test pass or fail by chance, and a fake that accepts what OpenAI refuses would hide a gateway that relays badly.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import pytest

from tests.integration.emulator_support import OA, call, cleared, serving

pytestmark = pytest.mark.timeout(30)

emu_server = pytest.fixture(scope="module")(serving)
emu = pytest.fixture(cleared)


def embed(emu: Any, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    status, _, raw = call(emu, "POST", "/v1/embeddings", body, OA if headers is None else headers)
    return status, json.loads(raw)


def test_the_answer_has_the_reference_shape_and_counts_tokens(emu: Any) -> None:
    # The reference's own example request.
    status, answer = embed(emu, {"input": "The food was delicious and the waiter...",
                                 "model": "text-embedding-ada-002", "encoding_format": "float"})
    assert status == 200
    assert answer["object"] == "list" and answer["model"] == "text-embedding-ada-002"
    assert answer["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    (item,) = answer["data"]
    assert item["object"] == "embedding" and item["index"] == 0 and len(item["embedding"]) == 1536
    assert math.isclose(sum(v * v for v in item["embedding"]), 1.0, rel_tol=1e-5)


def test_vectors_depend_on_input_and_model_only(emu: Any) -> None:
    def vector(text: str, model: str = "text-embedding-3-small") -> list[float]:
        return embed(emu, {"model": model, "input": text})[1]["data"][0]["embedding"]

    assert vector("same words") == vector("same words")
    assert vector("same words") != vector("other words")
    assert vector("same words")[:8] != vector("same words", "text-embedding-3-large")[:8]


def test_dimensions_shorten_the_full_vector_and_base64_carries_the_same_floats(emu: Any) -> None:
    full = embed(emu, {"model": "text-embedding-3-small", "input": "abc"})[1]["data"][0]["embedding"]
    short = embed(emu, {"model": "text-embedding-3-small", "input": "abc", "dimensions": 8})[1]["data"][0]["embedding"]
    norm = math.sqrt(sum(v * v for v in full[:8]))
    assert all(math.isclose(s, f / norm, rel_tol=1e-5) for s, f in zip(short, full[:8], strict=True))
    packed = embed(emu, {"model": "text-embedding-3-small", "input": "abc", "dimensions": 8,
                         "encoding_format": "base64"})[1]["data"][0]["embedding"]
    assert list(struct.unpack("<8f", base64.b64decode(packed))) == short


def test_batches_of_strings_and_token_arrays_keep_their_order(emu: Any) -> None:
    status, answer = embed(emu, {"model": "text-embedding-3-small", "input": [[1, 2, 3], [7]]})
    assert status == 200 and [d["index"] for d in answer["data"]] == [0, 1]
    assert answer["usage"]["prompt_tokens"] == 4
    single = embed(emu, {"model": "text-embedding-3-small", "input": [1, 2, 3]})[1]
    assert len(single["data"]) == 1 and single["data"][0]["embedding"] == answer["data"][0]["embedding"]


@pytest.mark.parametrize("body,status,param", [
    ({"model": "text-embedding-3-small", "input": ""}, 400, "input"),
    ({"model": "text-embedding-3-small", "input": []}, 400, "input"),
    ({"model": "text-embedding-3-small", "input": ["a", ""]}, 400, "input"),
    ({"model": "text-embedding-3-small", "input": ["a"] * 2049}, 400, "input"),
    ({"model": "text-embedding-3-small", "input": [[100_277]]}, 400, "input"),
    ({"model": "text-embedding-3-small", "input": "x " * 8193}, 400, "input"),
    ({"model": "text-embedding-3-small"}, 400, "input"),
    ({"input": "x"}, 400, "model"),
    ({"model": "text-embedding-ada-002", "input": "x", "dimensions": 8}, 400, "dimensions"),
    ({"model": "text-embedding-3-small", "input": "x", "dimensions": 1537}, 400, "dimensions"),
    ({"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
    ({"model": "text-embedding-3-small", "input": "x", "stream": True}, 400, "stream"),
    ({"model": "gpt-4o-mini", "input": "x"}, 404, None),
])
def test_what_the_real_api_refuses(emu: Any, body: dict[str, Any], status: int, param: str | None) -> None:
    got, answer = embed(emu, body)
    assert got == status
    assert answer["error"]["param"] == param and answer["error"]["message"]


def test_a_wrong_key_is_401(emu: Any) -> None:
    status, answer = embed(emu, {"model": "text-embedding-3-small", "input": "x"},
                           {"Authorization": "Bearer wrong", "Content-Type": "application/json"})
    assert status == 401 and answer["error"]["code"] == "invalid_api_key"
