"""The plot docs/performance.md shows: streams/s and stretch p99 against open streams, one line per set.

Why a plot: the streams-at-scale rows are a curve (where a set saturates, how
fast its stretch grows), which a table of levels shows badly and a side-by-side
of the gateway and each peer shows worse. Drawn from the Report rows the bench
already builds (``scripts/bench.py --plot FILE.png``), so the plot and the table
can never disagree.
"""

from __future__ import annotations

import re
from pathlib import Path

from benchkit.report import Report, Row

_LEVEL = re.compile(r"^(?P<set>.+), (?P<level>\d+) open streams$")
STREAMS_PER_S_GOAL = 800  # issue 23's targets, drawn as dashed lines
STRETCH_P99_GOAL_MS = 100


def scale_sets(report: Report) -> dict[str, list[tuple[int, Row]]]:
    """The streams-at-scale rows by set ("gateway streams at scale, relayed", "peer streams at scale: ..."),
    each ordered by open streams."""
    sets: dict[str, list[tuple[int, Row]]] = {}
    for row in report.rows:
        match = _LEVEL.match(row.name)
        if match:
            sets.setdefault(match["set"], []).append((int(match["level"]), row))
    return {name: sorted(rows, key=lambda lr: lr[0]) for name, rows in sets.items()}


def _label(name: str) -> str:
    return name.replace("gateway streams at scale, ", "gateway, ").replace("peer streams at scale: ", "")


def write(report: Report, path: Path, title: str = "") -> bool:
    """Draw the two panels into ``path`` (PNG); False, and nothing written, when no streams-at-scale row exists."""
    sets = scale_sets(report)
    if not sets:
        return False
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    fig, (rate, stretch) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    ringed: set[int] = set()  # the panels whose legend already has an entry for the red rings
    for name, rows in sets.items():
        levels = [level for level, _ in rows]
        style = {"marker": "o", "label": _label(name)}
        rate.plot(levels, [row.rps or 0.0 for _, row in rows], **style)
        p99 = [(level, row.p99) for level, row in rows if row.p99 is not None and row.p99 > 0]
        stretch.plot([lv for lv, _ in p99], [v for _, v in p99], **style)
        failed = [(level, row) for level, row in rows if row.errors]
        for axes, value in ((rate, lambda row: row.rps or 0.0), (stretch, lambda row: row.p99)):
            points = [(level, value(row)) for level, row in failed if value(row)]
            if points:  # a level with failed streams: its point is ringed in red (no stretch if none ended)
                axes.scatter([lv for lv, _ in points], [v for _, v in points], s=120, facecolors="none",
                             edgecolors="red", zorder=3, label=None if id(axes) in ringed else "failed streams")
                ringed.add(id(axes))
    rate.axhline(STREAMS_PER_S_GOAL, linestyle="--", color="grey", linewidth=1, label=f"goal {STREAMS_PER_S_GOAL}")
    stretch.axhline(STRETCH_P99_GOAL_MS, linestyle="--", color="grey", linewidth=1,
                    label=f"goal {STRETCH_P99_GOAL_MS} ms")
    rate.set(xlabel="open streams", ylabel="streams ended per second", title="streams/s")
    stretch.set(xlabel="open streams", ylabel="stretch p99, ms (log)", yscale="log",
                title="stretch p99 (total time minus the upstream's)")
    stretch.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,g}"))  # 10, 100, 1,000 ms
    stretch.yaxis.set_minor_formatter(NullFormatter())
    for axes in (rate, stretch):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, which="major", alpha=0.3)
        axes.set_xlim(left=0)
        axes.legend(fontsize="small")
    rate.set_ylim(bottom=0)
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return True
