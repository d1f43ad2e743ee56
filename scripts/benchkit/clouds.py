"""What Claude on Bedrock or Vertex AI adds per request, in process: body rewrite, SigV4 signing, tokens.

Bedrock: every attempt's body is rewritten (``anthropic_version`` in, ``model`` and ``stream`` out) and
signed with SigV4 (botocore's ``SigV4Auth``: a SHA-256 of the body, the canonical request, four
HMACs); each streamed event is one event-stream frame to parse and re-frame as SSE. Vertex AI: the body
rewrite and a held token (a lock-free check), and once an hour per worker a token refresh: an RS256
assertion signed and posted to the token endpoint (here the emulator's, on loopback, so the figure is
the gateway's own cost plus one local round trip; a real one adds the network's).

``--instructions`` counts the signature's and an event's instructions per call with callgrind instead (two runs of
different lengths in fresh processes, the difference divided by the extra calls): a figure that load
beside it cannot move. Needs valgrind.

Run: ``.venv/bin/python -m benchkit.clouds [--scale 1.0] [--instructions]`` from scripts/ (PYTHONPATH=.:..).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from emulator import Emulator
from emulator import eventstream as frames

from app.providers import eventstream
from app.providers.bedrock import BEDROCK_VERSION, BedrockAdapter
from app.providers.platforms import rewrite_body
from app.providers.routing import Provider, Target
from app.providers.vertex import VertexAdapter
from benchkit import callgrind, micro

# A ~2 KB Messages body: a system prompt, a few turns, one tool.
BODY = json.dumps({
    "model": "claude-bedrock", "max_tokens": 1024, "stream": True, "system": "You are terse. " * 20,
    "tools": [{"name": "get_weather", "description": "Weather for a city",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
    "messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": "some words of a turn " * 15}
                 for i in range(5)],
}).encode()
EVENT = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello there"}}


def bedrock_work() -> dict[str, Callable[[], None]]:
    """Each Bedrock row's work, one call each."""
    os.environ.update(AWS_ACCESS_KEY_ID="AKIABENCHMARK", AWS_SECRET_ACCESS_KEY="bench/secret",
                      AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    os.environ.pop("AWS_SESSION_TOKEN", None)
    provider = Provider("bedrock", "anthropic", "", None, None, False,
                        platform="bedrock", options={"region": "us-east-1"})
    adapter = BedrockAdapter(provider)
    target = Target(provider, "anthropic.claude-sonnet-4-5-20250929-v1:0")
    payload = rewrite_body(BODY, BEDROCK_VERSION, drop=("model", "stream"))
    url = adapter.url(target.model, True)
    frame = frames.event(json.dumps({"bytes": base64.b64encode(json.dumps(EVENT).encode()).decode()}).encode())
    stream = [frame] * 100  # one frame per network read, as a provider streams them

    def sign() -> None:
        adapter.sign(url, payload, {"content-type": "application/json", "x-request-id": "req_1"})

    def prepare() -> None:
        adapter.prepare(target, BODY, {"content-type": "application/json", "anthropic-version": "2023-06-01",
                                       "x-request-id": "req_1"}, True)

    def decode_one() -> None:
        for _ in eventstream.anthropic_sse(stream[:1], "bedrock"):
            pass

    return {
        "Bedrock: body rewrite (2 KB)": lambda: rewrite_body(BODY, BEDROCK_VERSION, drop=("model", "stream")),
        "Bedrock: SigV4 signature (botocore)": sign,
        "Bedrock: whole prepare (rewrite + sign)": prepare,
        "Bedrock: one streamed event decoded": decode_one,
    }


BEDROCK_CALLS = (20_000, 5_000, 5_000, 20_000)  # per row, at --scale 1


def bedrock_rows(scale: float) -> list[tuple[str, float]]:
    return [(name, micro.mean_us(fn, int(calls * scale) or 1, rounds=3, pick=min))
            for (name, fn), calls in zip(bedrock_work().items(), BEDROCK_CALLS, strict=True)]


def instructions(name: str, calls: int) -> int:
    """Instructions of a fresh process that makes ``calls`` calls of row ``name`` (callgrind's total)."""
    return callgrind.collected("benchkit.clouds", [name, str(calls)])


COUNTED = ("Bedrock: SigV4 signature (botocore)", "Bedrock: one streamed event decoded")


def instruction_rows(small: int = 20, large: int = 220) -> list[tuple[str, int]]:
    """The signature and the event decoding (each row is two callgrind runs of a minute or more)."""
    callgrind.compile_sources()
    return [(name, (instructions(name, large) - instructions(name, small)) // (large - small)) for name in COUNTED]


def vertex_rows(scale: float) -> list[tuple[str, float]]:
    emu = Emulator(record=False).start()
    try:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        emu.google.add("bench@p.iam.gserviceaccount.com", "k1", key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        folder = Path(tempfile.mkdtemp(prefix="bench-vertex-"))
        sa = folder / "sa.json"
        sa.write_text(json.dumps({
            "type": "service_account", "project_id": "p", "private_key_id": "k1", "client_email":
            "bench@p.iam.gserviceaccount.com", "client_id": "1", "token_uri": emu.url + "/token",
            "private_key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode()}))
        provider = Provider("vertex", "anthropic", emu.url, None, None, False, platform="vertex",
                            options={"project": "p", "region": "us-east5", "credentials_file": str(sa)})
        adapter = VertexAdapter(provider)
        target = Target(provider, "claude-sonnet-4-5@20250929")
        adapter.token()

        def refresh() -> None:
            adapter.forget_token()
            adapter.token()

        def prepare() -> None:
            adapter.prepare(target, BODY, {"content-type": "application/json"}, True)

        return [
            ("Vertex: whole prepare (rewrite + held token)", micro.mean_us(prepare, int(20_000 * scale) or 1,
                                                                          rounds=3, pick=min)),
            ("Vertex: token refresh (RS256 + loopback token endpoint)", micro.mean_us(
                refresh, int(100 * scale) or 1, rounds=3, pick=min)),
        ]
    finally:
        emu.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        work = bedrock_work()[sys.argv[2]]
        work()  # warm: imports, the first credentials lookup
        for _ in range(int(sys.argv[3])):
            work()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every row's number of calls")
    parser.add_argument("--instructions", action="store_true", help="callgrind instruction counts (Bedrock rows)")
    args = parser.parse_args()
    if args.instructions:
        print(micro.table(["per-request work", "instructions"],
                          ((name, f"{n:,}") for name, n in instruction_rows())))
        return
    rows = bedrock_rows(args.scale) + vertex_rows(args.scale)
    print(micro.table(["per-request work", "µs"], ((name, f"{us:.1f}") for name, us in rows)))


if __name__ == "__main__":
    main()
