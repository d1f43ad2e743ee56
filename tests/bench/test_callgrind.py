"""benchkit.callgrind: the one runner the instruction counts share (a failed child is an error, not a count)."""

from __future__ import annotations

import shutil
import sys

import pytest

from tests.support.processes import ROOT

sys.path.insert(0, str(ROOT / "scripts"))  # benchkit lives beside the benchmark, as scripts/bench.py imports it
from benchkit import callgrind


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_a_child_that_fails_raises_with_its_error_output() -> None:
    with pytest.raises(RuntimeError, match=r"No module named benchkit\.no_such_module"):
        callgrind.collected("benchkit.no_such_module", ["x"], callgrind.BENCH_ENV, callgrind.ROOT)

