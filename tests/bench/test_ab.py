"""benchkit.ab: two gateways in turns; one short round of both rows (counted by perf where it can), refusals."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from benchkit import kernel_counts, nginx, wrk
from benchkit.kernel_counts import parse

ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'scripts'}:{ROOT}"}


def _ab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchkit.ab", *args], cwd=ROOT / "scripts", env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(150)
@pytest.mark.skipif(not (wrk.available() and nginx.available()),
                    reason="needs wrk and nginx (scripts/install-test-tools.sh installs them)")
def test_one_round_measures_both_sides_of_both_rows() -> None:
    perf = kernel_counts.available()  # counted too where perf may count system calls
    proc = _ab(str(ROOT), str(ROOT), "--rounds", "1", "--duration", "1", "--connections", "4",
               "--env-b", "LOG_LEVEL=warning", *(["--perf"] if perf else []), timeout=140)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for row in ("l1", "miss"):
        for side in "AB":
            line = re.search(rf"^round 1 {row} {side}: ([\d,]+) req/s, p50 [\d.]+ ms, p99 [\d.]+ ms, "
                             rf"([\d,]+) us/req(, ([\d.]+) syscalls/req, [\d.]+ futex/req, [\d.]+ switches/req)?, "
                             rf"errors 0$", out, re.M)
            assert line is not None, out
            assert int(line.group(1).replace(",", "")) > 0
            if perf:  # every request makes system calls (at least reading it and sending the answer)
                assert line.group(4) is not None and float(line.group(4)) >= 2, out
        verdict = re.search(rf"^{row}: A [\d,]+ req/s, .* B/A (\d+\.\d+) \(rounds .*\); errors A 0, B 0$", out, re.M)
        assert verdict is not None, out
        assert float(verdict.group(1)) > 0
    assert "with LOG_LEVEL=warning" in out and "wrk -c4, 1 s per row" in out


def test_unknown_rows_and_non_checkouts_are_refused(tmp_path) -> None:
    proc = _ab(str(ROOT), str(ROOT), "--rows", "l1,nonsense")
    assert proc.returncode == 2 and "nonsense" in proc.stderr
    proc = _ab(str(ROOT), str(tmp_path))
    assert proc.returncode == 2 and "not a checkout" in proc.stderr
    proc = _ab(str(ROOT), str(ROOT), "--env-b", "LOG_LEVEL")
    assert proc.returncode == 2 and "NAME=VALUE" in proc.stderr


def test_perf_stat_output_is_read_per_event() -> None:
    text = ("# started on Fri Nov 27 04:30:00 2026\n\n"
            "48213,,context-switches,2000184000,100.00,,\n"
            "<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n"
            "91022,,syscalls:sys_enter_futex,2000184000,100.00,,\n")
    assert parse(text) == {"switches": 48213.0, "futex": 91022.0}
