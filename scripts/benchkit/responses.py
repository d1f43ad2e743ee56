"""What translating the Responses API costs per request, in process, beside the same work for Chat Completions.

One caller body in each API saying the same thing (a system prompt, a user turn, a function tool, a call
and its output), translated for a Claude model: the caller's body read into the canonical request, the
Messages body built from it, the answer rendered in the caller's API, and a 40-event answer stream encoded.
The Responses rows include what only that API does: echoing the request's settings in the response object
and its events' ``sequence_number``\\s and snapshots.

Run: ``.venv/bin/python -m benchkit.responses [--calls 20000]`` from scripts/ (PYTHONPATH=.:..).
"""

from __future__ import annotations

import argparse

from app.formats import anthropic as anthropic_codec
from app.formats import openai as openai_codec
from app.formats import responses as responses_codec
from app.formats.canonical import (
    BlockStop,
    ChatResponse,
    StreamEnd,
    StreamStart,
    TextBlock,
    TextDelta,
    ToolInputDelta,
    ToolUseBlock,
    ToolUseStart,
    Usage,
)
from benchkit import micro

MODEL = "claude-sonnet-4-20250514"
PARAMETERS = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
CHAT = {
    "model": MODEL, "max_tokens": 500,
    "messages": [
        {"role": "system", "content": "You are a weather assistant. Answer briefly."},
        {"role": "user", "content": "What is the weather like in Paris today?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"location\":\"Paris, France\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "14 degrees and cloudy"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                                "parameters": PARAMETERS}}],
}
RESPONSES = {
    "model": MODEL, "max_output_tokens": 500, "instructions": "You are a weather assistant. Answer briefly.",
    "input": [
        {"role": "user", "content": "What is the weather like in Paris today?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": "{\"location\":\"Paris, France\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "14 degrees and cloudy"},
    ],
    "tools": [{"type": "function", "name": "get_weather", "description": "Current weather", "parameters": PARAMETERS}],
}
ANSWER = ChatResponse(id="msg_1", model=MODEL, stop_reason="tool_use",
                      content=(TextBlock("It is 14 degrees and cloudy in Paris. " * 3),
                               ToolUseBlock("toolu_1", "get_weather", {"location": "Lyon, France"})),
                      usage=Usage(input_tokens=120, output_tokens=40))
STREAM = [StreamStart(id="msg_1", model=MODEL), *(TextDelta(0, "word ") for _ in range(34)), BlockStop(0),
          ToolUseStart(1, "toolu_1", "get_weather"), ToolInputDelta(1, "{\"location\":"),
          ToolInputDelta(1, "\"Lyon\"}"), BlockStop(1),
          StreamEnd("tool_use", usage=Usage(input_tokens=120, output_tokens=40))]


def costs(calls: int) -> list[tuple[str, float, float]]:
    echoed = responses_codec.echo(RESPONSES)

    def chat_stream() -> None:
        enc = openai_codec.StreamEncoder(include_usage=True)
        for ev in STREAM:
            enc.encode(ev)

    def responses_stream() -> None:
        enc = responses_codec.StreamEncoder("resp_1", MODEL, echoed, None)
        for ev in STREAM:
            enc.encode(ev)

    chat_req, resp_req = openai_codec.parse_request(CHAT), responses_codec.parse_request(RESPONSES)
    pairs = [
        ("read the caller's body", lambda: openai_codec.parse_request(CHAT),
         lambda: responses_codec.parse_request(RESPONSES)),
        ("build the Messages body", lambda: anthropic_codec.build_request(chat_req, MODEL, default_max_tokens=4096),
         lambda: anthropic_codec.build_request(resp_req, MODEL, default_max_tokens=4096)),
        ("render the answer", lambda: openai_codec.render_response(ANSWER),
         lambda: responses_codec.render_response(ANSWER, "resp_1", MODEL, echoed)),
        (f"encode a {len(STREAM)}-event stream", chat_stream, responses_stream),
    ]
    return [(name, micro.mean_us(chat, calls, 5, min), micro.mean_us(resp, calls, 5, min))
            for name, chat, resp in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per row and round (5 rounds, the best kept)")
    args = parser.parse_args()
    rows = costs(args.calls)
    print("translation for a Claude model, one thread (microseconds per request, best of 5 rounds):\n")
    print(micro.table(["step", "Chat Completions", "Responses"],
                      ((name, f"{chat:.1f}", f"{resp:.1f}") for name, chat, resp in rows)))


if __name__ == "__main__":
    main()
