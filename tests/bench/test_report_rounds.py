"""Rows measured in several rounds: the table keeps each scenario's median round and names the others."""

from __future__ import annotations

import sys

from tests.support.processes import ROOT

sys.path.insert(0, str(ROOT / "scripts"))  # benchkit lives beside the benchmark, as scripts/bench.py imports it
from benchkit.report import Report, Row


def test_the_median_round_is_kept_in_first_seen_order_and_notes_every_round():
    report = Report(rows=[Row("floor", 6000.0, p50=4.0), Row("gateway", 3000.0, p50=9.0, note="L1 100%"),
                          Row("floor", 7000.0, p50=3.5), Row("gateway", 4500.0, p50=7.0, note="L1 100%"),
                          Row("floor", 6500.0, p50=3.8), Row("gateway", 4000.0, p50=8.0, note="L1 100%"),
                          Row("slow streams")])
    report.keep_medians()
    assert [r.name for r in report.rows] == ["floor", "gateway", "slow streams"]
    floor, gateway, slow = report.rows
    assert (floor.rps, floor.p50) == (6500.0, 3.8)  # the whole median row, not a mix of rounds
    assert (gateway.rps, gateway.p50) == (4000.0, 8.0)
    assert gateway.note == "L1 100%, median of 3 rounds (3,000 / 4,500 / 4,000 req/s)"
    assert slow.note == ""


def test_with_two_rounds_the_lower_is_kept():
    report = Report(rows=[Row("gateway", 5000.0), Row("gateway", 4000.0)])
    report.keep_medians()
    assert [r.rps for r in report.rows] == [4000.0]
