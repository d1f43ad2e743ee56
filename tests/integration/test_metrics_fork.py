"""Metric values written before and after a fork land in each process's own file, summed as one.

The gateway's metric values notice a fork through ``os.register_at_fork`` instead of asking for the process id on
every update (app/patches/prometheus_client.py); this checks, with the gateway's own metrics in a real subprocess
that forks, that a child still moves to its own file.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.timeout(30)

SCRIPT = """
import os, sys
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
from prometheus_client import CollectorRegistry, multiprocess
from app.observability import metrics

metrics.CACHE_HITS.labels("l1").inc(2)  # the parent, before the fork
pid = os.fork()
if pid == 0:
    metrics.CACHE_HITS.labels("l1").inc(5)
    metrics.CACHE_HITS.labels("l2").inc(1)
    os._exit(0)
os.waitpid(pid, 0)
metrics.CACHE_HITS.labels("l1").inc(1)  # the parent, after
files = sorted(f for f in os.listdir(sys.argv[1]) if f.startswith("counter_"))
assert files == sorted([f"counter_{os.getpid()}.db", f"counter_{pid}.db"]), files
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
print(registry.get_sample_value("llm_edge_cache_hits_total", {"tier": "l1"}),
      registry.get_sample_value("llm_edge_cache_hits_total", {"tier": "l2"}))
"""


def test_a_forked_child_writes_its_own_file_and_the_sum_counts_both(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["8.0", "1.0"]
