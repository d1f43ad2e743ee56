"""app/gc_tuning.py: a worker's startup objects leave the collector's sight and young collections come rarely.

Each case runs in a fresh interpreter: the collector's state is process-wide.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import ROOT

_PROBE = """
import gc
{setup}
kept = []
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info["generation"]))
for _ in range(5000):
    kept.append([])  # containers that stay alive, as a filling cache's entries do
print(gc.get_freeze_count(), gc.get_threshold()[0], len(collections))
"""


def _probe(setup: str) -> tuple[int, int, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(setup=setup)], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    frozen, young, collections = (int(v) for v in out)
    return frozen, young, collections


def test_defaults_collect_young_objects_every_few_hundred_new_containers() -> None:
    frozen, young, collections = _probe("")
    assert (frozen, young) == (0, 700)
    assert collections >= 5


def test_a_tuned_worker_freezes_startup_and_collects_rarely() -> None:
    frozen, young, collections = _probe(
        "from app.gc_tuning import tune_worker_gc\n"
        "import app.pipeline\ntune_worker_gc()")
    assert frozen > 1000  # what the imports made is in the permanent generation
    assert young == 10_000
    assert collections == 0
