"""The deterministic answer, provider-neutral: echoed text, stop sequences, max_tokens, tool calls.

Each API module finds the prompt, the tool to call and the limits in its own request format and
renders the :class:`Answer` in its own response format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# A deterministic value by JSON-schema type, for a tool call's required arguments.
_FILL = {"string": "test", "number": 1, "integer": 1, "boolean": True, "array": [], "object": {}, "null": None}


def words(text: str) -> int:
    return len(text.split())


def text_of(content: Any) -> str:
    """The text of a message's content, in either API: the string, or its text parts joined with a space."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _fill_value(schema: Any) -> Any:
    stype = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(stype, list):
        stype = next((t for t in stype if t != "null"), "null")
    return _FILL.get(stype, "test")


def fill_arguments(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    return {name: _fill_value(props.get(name, {})) for name in required if isinstance(name, str)}


@dataclass
class Answer:
    """Provider-neutral answer, rendered by each format's builders."""

    text: str = ""
    tool_name: str | None = None
    tool_args: dict[str, Any] = field(default_factory=dict)
    finish: str = "stop"  # stop | length | stop_sequence | tool
    stop_sequence: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0


def _first_stop(prompt: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """Where the earliest stop sequence starts in ``prompt``, and which one."""
    best: tuple[int, str] | None = None
    for stop in stops:
        if stop:
            idx = prompt.find(stop)
            if idx >= 0 and (best is None or idx < best[0]):
                best = (idx, stop)
    return best


def make_answer(
    prompt: str,
    input_tokens: int,
    tool: tuple[str, dict[str, Any]] | None,
    max_tokens: int | None,
    stops: Sequence[str],
) -> Answer:
    if tool is not None:
        name, schema = tool
        args = fill_arguments(schema)
        return Answer(
            tool_name=name, tool_args=args, finish="tool", input_tokens=input_tokens, output_tokens=1 + len(args)
        )
    text, hit = prompt, None
    best = _first_stop(prompt, stops)
    if best is not None:
        text, hit = prompt[: best[0]], best[1]
    tokens = text.split()
    if max_tokens is not None and len(tokens) > max_tokens:
        return Answer(
            text=" ".join(tokens[:max_tokens]), finish="length", input_tokens=input_tokens, output_tokens=max_tokens
        )
    return Answer(
        text=text,
        finish="stop_sequence" if hit else "stop",
        stop_sequence=hit,
        input_tokens=input_tokens,
        output_tokens=len(tokens),
    )
