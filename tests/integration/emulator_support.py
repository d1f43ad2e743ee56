"""What the emulator's tests share: an emulator per test module, a raw HTTP client, request bodies, SSE parsing.

The tests run the emulator over real HTTP (tests/integration/test_emulator*.py); see scripts/emulator/.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import emulator_module

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "emulator"


em = emulator_module  # loaded once by tests/conftest.py, so both share one Fault class
Emulator, Fault = em.Emulator, em.Fault

OPENAI_KEY = "sk-emu-test-openai"
ANTHROPIC_KEY = "sk-ant-emu-test"
OA = {"Authorization": f"Bearer {OPENAI_KEY}", "Content-Type": "application/json"}
AN = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
WEATHER_TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "s": {"type": "string"},
        "n": {"type": "number"},
        "i": {"type": "integer"},
        "b": {"type": "boolean"},
        "a": {"type": "array", "items": {"type": "string"}},
        "o": {"type": "object"},
        "optional": {"type": "string"},
    },
    "required": ["s", "n", "i", "b", "a", "o"],
}
FILLED = {"s": "test", "n": 1, "i": 1, "b": True, "a": [], "o": {}}
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAcCBlCwAAAABJRU5ErkJggg=="


# ------------------------------------------------------------------------------------------- fixtures


# Each test module makes them its fixtures: emu_server = pytest.fixture(scope="module")(serving); emu = ...


def serving() -> Iterator[Any]:
    """An emulator for the test module, with both keys required."""
    with Emulator(openai_key=OPENAI_KEY, anthropic_key=ANTHROPIC_KEY) as emu:
        yield emu


def cleared(emu_server: Any) -> Iterator[Any]:
    """The module's emulator with recordings and faults cleared around each test."""
    emu_server.reset()
    yield emu_server
    emu_server.reset()


# -------------------------------------------------------------------------------------------- helpers


def call(
    emu: Any,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=timeout)
    try:
        payload = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        conn.request(method, path, body=payload, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def oa(emu: Any, body: Any, headers: dict[str, str] | None = None, **kw: Any) -> tuple[int, dict, bytes]:
    return call(emu, "POST", "/v1/chat/completions", body, OA if headers is None else headers, **kw)


def an(emu: Any, body: Any, headers: dict[str, str] | None = None, **kw: Any) -> tuple[int, dict, bytes]:
    return call(emu, "POST", "/v1/messages", body, AN if headers is None else headers, **kw)


def parse_sse(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) for each SSE event, asserting the framing is clean."""
    events: list[tuple[str | None, str]] = []
    text = raw.decode()
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            else:
                raise AssertionError(f"unexpected SSE line {line!r}")
        events.append((name, "\n".join(data)))
    return events


def oa_body(text: str = "hello big world", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def an_body(text: str = "hello big world", **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def oa_tool(name: str = "get_weather", schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": schema or WEATHER_TOOL_SCHEMA}}


def an_tool(name: str = "get_weather", schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "description": "weather", "input_schema": schema or WEATHER_TOOL_SCHEMA}

