"""benchkit.plot: the streams-at-scale PNG of docs/performance.md, drawn from Report rows (not timed)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from tests.support.processes import ROOT

sys.path.insert(0, str(ROOT / "scripts"))  # benchkit lives beside the benchmark, as scripts/bench.py imports it
from benchkit.plot import scale_sets, write
from benchkit.report import Report, Row

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def report() -> Report:
    """Rows shaped like a full run's: two gateway sets, one peer set (with a failing level), other rows."""
    rows = [Row("gateway miss (unique bodies)", 2400.0, 10.0, 12.0, 20.0)]
    for name, rates, p99s in (("gateway streams at scale, relayed", (160, 320, 330), (14, 745, 2300)),
                              ("gateway streams at scale, translated", (150, 300, 310), (20, 900, 2600)),
                              ("peer streams at scale: LiteLLM proxy 1.108.7", (60, 62), (300, 1600))):
        for level, rps, p99 in zip((500, 1000, 2000), rates, p99s, strict=False):
            rows.append(Row(f"{name}, {level} open streams", float(rps), p99 / 2, None, float(p99), 5000.0, 60.0,
                            3 if "peer" in name and level == 1000 else 0))
    # a level where every counted stream timed out: streams/s but no stretch
    rows.append(Row("gateway streams at scale, translated, 3000 open streams", 86.0, None, None, None, 22000.0, 130.0,
                    1547))
    return Report(header=["llm-edge-agent benchmark (full) at commit test"], rows=rows)


def test_scale_sets_group_levels_by_set_in_order() -> None:
    sets = scale_sets(report())
    assert list(sets) == ["gateway streams at scale, relayed", "gateway streams at scale, translated",
                          "peer streams at scale: LiteLLM proxy 1.108.7"]
    assert [level for level, _ in sets["gateway streams at scale, relayed"]] == [500, 1000, 2000]
    assert [level for level, _ in sets["gateway streams at scale, translated"]] == [500, 1000, 2000, 3000]
    assert [level for level, _ in sets["peer streams at scale: LiteLLM proxy 1.108.7"]] == [500, 1000]


def test_write_draws_a_png_of_the_two_panels(tmp_path: Path) -> None:
    out = tmp_path / "scale.png"
    assert write(report(), out, title="test") is True
    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk: 11 x 4.2 inches at 100 dpi
    assert (width, height) == (1100, 420)
    assert len(data) > 20_000, len(data)  # two panels of lines, legends and labels, not a blank image


def test_write_draws_nothing_without_streams_at_scale_rows(tmp_path: Path) -> None:
    out = tmp_path / "none.png"
    assert write(Report(rows=[Row("gateway miss (unique bodies)", 2400.0)]), out) is False
    assert not out.exists()
