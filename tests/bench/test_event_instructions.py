"""benchkit.event_instructions: its upstream, the apps it counts and its arguments (callgrind itself is too slow
here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

sys.path.insert(0, str(ROOT / "scripts"))  # benchkit lives beside the benchmark, as scripts/bench.py imports it
from benchkit import answers
from benchkit.event_instructions import CALLERS, StreamUpstream, floor_app, request_bodies, stream_events
from benchkit.inprocess import environ


@pytest.mark.parametrize("path", ["relay-openai", "relay-anthropic", "translated"])
def test_each_request_asks_for_as_many_text_events_as_it_names(path: str) -> None:
    short, long = request_bodies(path, 20, 3), request_bodies(path, 120, 3)
    assert len(set(short + long)) == 6  # unique prompts: every one a cache miss
    assert {json.loads(b)["max_tokens"] for b in short} == {20}
    upstream_path = "/v1/messages" if CALLERS[path][1] == answers.ANTHROPIC_MODEL else "/v1/chat/completions"
    assert len(stream_events(upstream_path, long[0])) - len(stream_events(upstream_path, short[0])) == 100


def test_the_floor_relays_the_upstreams_events_one_chunk_each() -> None:
    """Each event is its own HTTP chunk, so the floor (like the gateway) reads one event per read."""
    upstream = StreamUpstream().start()
    try:
        app = floor_app(upstream.openai_base_url)
        body = request_bodies("floor", 5, 1)[0]
        statuses: list[str] = []
        chunks = list(app(environ(body, {}), lambda status, headers, exc_info=None: statuses.append(status)))
        assert statuses == ["200 OK"]
        assert chunks == stream_events("/v1/chat/completions", body)
        assert b"".join(chunks).count(b'"content":"') == 6  # the role chunk and the 5 words
    finally:
        upstream.stop()


def test_unknown_paths_and_a_long_run_no_longer_than_the_short_are_refused() -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'scripts'}:{ROOT}"}
    for args, named in ((["--paths", "relay-openai,nonsense"], "nonsense"), (["--short", "50", "--long", "50"],
                                                                              "--long")):
        proc = subprocess.run([sys.executable, "-m", "benchkit.event_instructions", *args], cwd=ROOT / "scripts",
                              capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 2 and named in proc.stderr, proc.stderr
