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


def three_rounds() -> Report:
    # Each round measures the floor, then the gateway; the VM slows down by half in the third round.
    report = Report(rows=[Row("floor", 6000.0), Row("gateway", 3600.0),
                          Row("floor", 6600.0), Row("gateway", 4290.0),
                          Row("floor", 3000.0), Row("gateway", 1950.0)])
    report.keep_medians()
    return report


def test_the_ratio_is_the_median_of_each_rounds_own_ratio():
    ratio, each = three_rounds().paired_ratio("gateway", "floor")
    assert [round(r) for r in each] == [60, 65, 65]
    assert round(ratio) == 65
    # The ratio of the kept medians (3,600 against 6,000) would mix rounds measured at different speeds.
    report = three_rounds()
    assert round(100 * report.row("gateway").rps / report.row("floor").rps) == 60


def test_rows_that_do_not_pair_up_fall_back_to_the_kept_rows():
    report = Report(rows=[Row("floor", 6000.0), Row("floor", 5000.0), Row("floor", 7000.0), Row("gateway", 3000.0)])
    report.keep_medians()
    assert report.paired_ratio("gateway", "floor") == (50.0, [])  # one gateway round: 3,000 against 6,000
    single = Report(rows=[Row("floor", 4000.0), Row("gateway", 1000.0)])
    single.keep_medians()
    assert single.paired_ratio("gateway", "floor") == (25.0, [])
    failed = Report(rows=[Row("floor", 4000.0), Row("gateway", None), Row("floor", 4000.0), Row("gateway", 2000.0)])
    failed.keep_medians()
    assert failed.paired_ratio("gateway", "floor")[1] == []  # a round without a figure is not paired
    assert failed.paired_ratio("nothing", "floor") == (None, [])
