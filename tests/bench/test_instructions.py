"""benchkit.instructions: the apps it runs under callgrind, and its arguments (callgrind itself is too slow here)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

sys.path.insert(0, str(ROOT / "scripts"))  # benchkit lives beside the benchmark, as scripts/bench.py imports it
from benchkit import answers, nginx
from benchkit.inprocess import environ, measure
from benchkit.instructions import floor_app, request_bodies


def test_the_constant_floor_answers_its_fixed_body() -> None:
    app = floor_app("constant", "http://127.0.0.1:1/v1")
    chunks: list[bytes] = []

    def start_response(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
        assert status.startswith("200")

    chunks.extend(app(environ(answers.openai_request("hi"), {}), start_response))
    assert b"".join(chunks) == answers.openai_json()


@pytest.mark.skipif(not nginx.available(), reason="needs nginx (scripts/install-test-tools.sh installs it)")
def test_the_passthrough_floor_forwards_to_the_upstream() -> None:
    upstream = nginx.NginxUpstream().start()  # the benchmark's upstream; it answers without a provider key
    try:
        app = floor_app("passthrough", upstream.openai_base_url)
        measure(app, [answers.openai_request(f"prompt {i}") for i in range(3)], {})  # raises unless all are 200
    finally:
        upstream.stop()


def test_unknown_paths_are_refused() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchkit.instructions", "--paths", "hit,nonsense"],
                          cwd=ROOT / "scripts", capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": f"{ROOT / 'scripts'}:{ROOT}"})
    assert proc.returncode == 2
    assert "nonsense" in proc.stderr


def test_each_run_of_a_unique_path_sends_bodies_no_other_run_sent() -> None:
    """The two runs share one redis-server: a body repeated from the other run would be an L2 hit."""
    first_warm, first = request_bodies("miss", 50)
    second_warm, second = request_bodies("miss", 350)
    assert len(set(first)) == 50 and len(set(second)) == 350
    assert not set(first_warm + first) & set(second_warm + second)
    warm, hits = request_bodies("hit", 5)
    assert len(set(warm + hits)) == 1  # a hit path repeats one body, in every run
