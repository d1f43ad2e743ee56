"""The OpenAI Embeddings API: what it checks, and deterministic vectors derived from the input.

Reference: https://platform.openai.com/docs/api-reference/embeddings/create. Each input's vector
is the model's full-size vector (from a hash of model and input, unit length), shortened to
``dimensions`` and made unit length again, as the API does for text-embedding-3 models. The
values are float32 (what the API computes); ``encoding_format: base64`` sends their little-endian
bytes, which the official SDK decodes to the same floats. Tokens are counted as words of a string
input (or token ids given), which is what ``usage`` reports.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any

from .openai import invalid, missing
from .validation import tname
from .wire import ApiError

# model -> (full dimensions, whether ``dimensions`` may shorten it)
MODELS: dict[str, tuple[int, bool]] = {
    "text-embedding-3-small": (1536, True),
    "text-embedding-3-large": (3072, True),
    "text-embedding-ada-002": (1536, False),
}
PARAMS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})
MAX_INPUTS = 2048
MAX_TOKENS = 8192  # per input
VOCABULARY = 100_277  # cl100k_base, the embedding models' tokenizer
_INVALID_INPUT = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."


def _inputs(value: Any) -> list[str | list[int]]:
    """The request's inputs, one per vector, in order; the API's 400 for a shape it refuses."""
    if isinstance(value, str):
        if not value:
            raise invalid(_INVALID_INPUT, "input")
        return [value]
    if not isinstance(value, list) or not value:
        raise invalid(_INVALID_INPUT, "input")
    if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return [value]
    if len(value) > MAX_INPUTS:
        raise invalid(f"Invalid 'input': array too long. Expected an array with maximum length {MAX_INPUTS}, but "
                      f"got an array with length {len(value)} instead.", "input", "array_above_max_length")
    if all(isinstance(item, str) and item for item in value):
        return list(value)
    if all(isinstance(item, list) and item and all(isinstance(t, int) and not isinstance(t, bool) for t in item)
           for item in value):
        return list(value)
    raise invalid(_INVALID_INPUT, "input")


def _tokens(item: str | list[int]) -> int:
    if isinstance(item, str):
        return max(1, len(item.split()))
    for token in item:
        if not 0 <= token < VOCABULARY:
            raise invalid(f"Invalid token id {token} in 'input': expected a value from 0 to {VOCABULARY - 1}.",
                          "input")
    return len(item)


def _dimensions(body: dict[str, Any], model: str) -> int:
    full, shortens = MODELS[model]
    dims = body.get("dimensions")
    if dims is None:
        return full
    if not shortens:
        raise invalid("This model does not support specifying dimensions.", "dimensions")
    if not isinstance(dims, int) or isinstance(dims, bool):
        raise invalid(f"Invalid type for 'dimensions': expected an integer, but got {tname(dims)} instead.",
                      "dimensions", "invalid_type")
    if not 1 <= dims <= full:
        raise invalid(f"Invalid 'dimensions': expected a value from 1 to {full}, but got {dims} instead.",
                      "dimensions", "invalid_value")
    return dims


def vector(model: str, item: str | list[int], dims: int) -> list[float]:
    """The input's unit vector of ``dims`` float32 values: the full vector's head, normalized again."""
    seed = hashlib.blake2b(repr((model, item)).encode(), digest_size=32).digest()
    values: list[float] = []
    counter = 0
    while len(values) < dims:
        block = hashlib.blake2b(counter.to_bytes(4, "big"), key=seed).digest()
        values.extend(n / 2**31 - 1.0 for n in struct.unpack(">16I", block))
        counter += 1
    head = values[:dims]
    norm = math.sqrt(sum(v * v for v in head)) or 1.0
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(v / norm for v in head))))


def create(body: dict[str, Any], stream: bool) -> dict[str, Any]:
    """POST /v1/embeddings: the list of embeddings, or the API's error."""
    if not isinstance(body, dict):
        raise invalid("We could not parse the JSON body of your request.")
    unknown = sorted(set(body) - PARAMS)
    if unknown:
        raise invalid(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0], "unknown_parameter")
    model = body.get("model")
    if model is None:
        raise missing("model")
    if "input" not in body:
        raise missing("input")
    if model not in MODELS:
        raise ApiError(f"The model `{model}` does not exist or you do not have access to it.", 404,
                       "invalid_request_error", None, "model_not_found")
    items = _inputs(body["input"])
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise invalid(f"Invalid value: '{fmt}'. Supported values are: 'float' and 'base64'.", "encoding_format",
                      "invalid_value")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise invalid(f"Invalid type for 'user': expected a string, but got {tname(body['user'])} instead.",
                      "user", "invalid_type")
    dims = _dimensions(body, model)
    data, total = [], 0
    for i, item in enumerate(items):
        tokens = _tokens(item)
        if tokens > MAX_TOKENS:
            raise invalid(f"This model's maximum context length is {MAX_TOKENS} tokens, however you requested "
                          f"{tokens} tokens in input[{i}]. Please reduce your prompt.", "input")
        total += tokens
        values = vector(model, item, dims)
        embedding: Any = values if fmt == "float" else base64.b64encode(
            struct.pack(f"<{dims}f", *values)).decode()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": total, "total_tokens": total}}
