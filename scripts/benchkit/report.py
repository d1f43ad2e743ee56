"""The one table the benchmark prints, and the targets judged from it (docs/performance.md, "Method")."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Row:
    name: str
    rps: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    cpu_us: float | None = None
    rss_mib: float | None = None
    errors: int | None = None
    note: str = ""


@dataclass
class Target:
    name: str
    measured: float | None
    goal: float
    unit: str
    at_least: bool  # True: measured >= goal; False: measured <= goal

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured >= self.goal if self.at_least else self.measured <= self.goal

    def cells(self) -> list[str]:
        sign = ">=" if self.at_least else "<="
        verdict = {True: "met", False: "NOT met", None: "not measured"}[self.met]
        return [self.name, _num(self.measured, self.unit), f"{sign} {_num(self.goal, self.unit)}", verdict]


@dataclass
class Report:
    header: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    rounds: dict[str, list[float | None]] = field(default_factory=dict)  # req/s of each round, by row name

    def row(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)

    def paired_ratio(self, name: str, base: str) -> tuple[float | None, list[float]]:
        """``name``'s req/s as a percentage of ``base``'s: the median of the rounds' own ratios, and those ratios.

        Why not the ratio of the two medians: a round measures the floor and then the gateway within a
        minute, so both see the VM at the same speed; between rounds that speed can move by half (seen on
        a shared VM), and a ratio of medians taken from different rounds carries that drift. With one
        round, or rounds that do not pair up, it is the ratio of the kept rows.
        """
        ours, theirs = self.rounds.get(name, []), self.rounds.get(base, [])
        if len(ours) > 1 and len(ours) == len(theirs) and all(ours) and all(theirs):
            each = [100 * a / b for a, b in zip(ours, theirs, strict=True)]  # type: ignore[operator]
            return sorted(each)[(len(each) - 1) // 2], each
        row, base_row = self.row(name), self.row(base)
        if row and base_row and row.rps and base_row.rps:
            return 100 * row.rps / base_row.rps, []
        return None, []

    def keep_medians(self) -> None:
        """Rows measured in several rounds become one: the round with the median req/s, noting the others.

        On a shared 2-core VM one row of identical code moves by up to a third between runs; the ratios
        are taken between medians of rounds that alternate floor and gateway rows, not single runs.
        """
        rounds: dict[str, list[Row]] = {}
        for row in self.rows:
            rounds.setdefault(row.name, []).append(row)
        self.rounds = {name: [r.rps for r in measured] for name, measured in rounds.items()}
        kept = []
        for measured in rounds.values():
            if len(measured) == 1:
                kept.append(measured[0])
                continue
            ranked = sorted(measured, key=lambda r: r.rps or 0.0)
            median = ranked[(len(ranked) - 1) // 2]
            spread = " / ".join(_f(r.rps, 0) for r in measured)
            median.note = ", ".join(filter(None, [median.note, f"median of {len(measured)} rounds ({spread} req/s)"]))
            kept.append(median)
        self.rows = kept

    def render(self) -> str:
        out = list(self.header)
        out.append("")
        heads = ["scenario", "req/s", "p50 ms", "p90 ms", "p99 ms", "CPU us/req", "RSS MiB/worker", "errors", "notes"]
        body = [[r.name, _f(r.rps, 0), _f(r.p50, 2), _f(r.p90, 2), _f(r.p99, 2), _f(r.cpu_us, 0),
                 _f(r.rss_mib, 1), "-" if r.errors is None else str(r.errors), r.note] for r in self.rows]
        out += _table(heads, body)
        out.append("")
        out += self.lines
        out.append("")
        out += _table(["target", "measured", "goal", "verdict"], [t.cells() for t in self.targets])
        return "\n".join(out)


def _f(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:.0f}%"
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:,.0f}{(' ' + unit) if unit else ''}"


def _table(heads: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(heads)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i in (0, len(cells) - 1) else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [line(heads), sep, *(line(r) for r in body)]
