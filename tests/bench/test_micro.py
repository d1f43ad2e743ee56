"""benchkit's in-process timings (cache, limiter, observability, resilience, clouds): each runs small."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'scripts'}:{ROOT}"}
NEEDS_REDIS = pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="needs redis-server (scripts/install-test-tools.sh installs it)")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("module", "args", "rows"), [
    pytest.param("cache", ["--calls", "100"], ["key (hash", "L1 hit", "L2 hit", "miss + fill"], marks=NEEDS_REDIS),
    pytest.param("limiter", ["-n", "100", "--threads", "2"],
                 ["client key", "floor: one Redis PING", "leased batches", "local fallback", "2 threads at once"],
                 marks=NEEDS_REDIS),
    ("observability", ["--calls", "20"], ["end of request", "accounting", "tracing off", "tracing on"]),
    ("resilience", ["--scale", "0.005"], ["breaker allow + record", "client address", "disconnect watch"]),
    ("clouds", ["--scale", "0.01"],
     ["Bedrock: SigV4 signature", "Bedrock: one streamed event", "Vertex: token refresh"]),
])
def test_each_timing_prints_its_rows(module: str, args: list[str], rows: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", f"benchkit.{module}", *args], cwd=ROOT / "scripts", env=ENV,
                          capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    for name in rows:
        assert any(name in line for line in table[1:]), (name, proc.stdout)
