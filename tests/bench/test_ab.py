"""benchkit.ab: two gateways measured in turns; one short round of both rows, and its refusals."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from benchkit import nginx, wrk

ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'scripts'}:{ROOT}"}


def _ab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchkit.ab", *args], cwd=ROOT / "scripts", env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(150)
@pytest.mark.skipif(not (wrk.available() and nginx.available()),
                    reason="needs wrk and nginx (scripts/install-test-tools.sh installs them)")
def test_one_round_measures_both_sides_of_both_rows() -> None:
    proc = _ab(str(ROOT), str(ROOT), "--rounds", "1", "--duration", "1", "--connections", "4",
               "--env-b", "LOG_LEVEL=warning", timeout=140)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for row in ("l1", "miss"):
        for side in "AB":
            line = re.search(rf"^round 1 {row} {side}: ([\d,]+) req/s, p50 [\d.]+ ms, p99 [\d.]+ ms, "
                             rf"([\d,]+) us/req, errors 0$", out, re.M)
            assert line is not None, out
            assert int(line.group(1).replace(",", "")) > 0
        verdict = re.search(rf"^{row}: A [\d,]+ req/s, .* B/A (\d+\.\d+) \(rounds .*\); errors A 0, B 0$", out, re.M)
        assert verdict is not None, out
        assert float(verdict.group(1)) > 0
    assert "with LOG_LEVEL=warning" in out and "wrk -c4, 1 s per row" in out


def test_unknown_rows_and_non_checkouts_are_refused(tmp_path) -> None:
    proc = _ab(str(ROOT), str(ROOT), "--rows", "l1,nonsense")
    assert proc.returncode == 2 and "nonsense" in proc.stderr
    proc = _ab(str(ROOT), str(tmp_path))
    assert proc.returncode == 2 and "not a checkout" in proc.stderr
