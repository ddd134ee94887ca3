"""Tables and target checks for the benchmark's results."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any


@dataclass
class Check:
    name: str
    value: float
    limit: float
    higher_is_better: bool = False
    unit: str = "x"
    #: The same ratio for a configuration that does strictly less than any
    #: pool could (Django holding one connection, checking nothing), with
    #: what it is; when even it misses the limit, no pool can meet it here.
    floor: float | None = None
    floor_label: str = ""

    def _meets(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value >= self.limit if self.higher_is_better else value <= self.limit

    @property
    def passed(self) -> bool:
        return self._meets(self.value)

    @property
    def out_of_reach(self) -> bool:
        return not self.passed and self.floor is not None and not self._meets(self.floor)

    @property
    def status(self) -> str:
        return "PASS" if self.passed else "OUT OF REACH" if self.out_of_reach else "FAIL"

    def line(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        text = f"  {self.status:4}  {self.name}: {fmt(self.value)}{self.unit} (target {op} {fmt(self.limit)}{self.unit})"
        if self.floor is not None:
            text += f"; floor, {self.floor_label}: {fmt(self.floor)}{self.unit}"
        return text


def fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def count(value: float, sign: bool = False) -> str:
    """A count per request: whole when it is whole (as an exact count is), else to two places."""
    if value is None or math.isnan(value):
        return "n/a"
    plus = "+" if sign else ""
    return f"{value:{plus},.0f}" if value == round(value) else f"{value:{plus},.2f}"


def us(seconds: float) -> str:
    return "n/a" if seconds is None or math.isnan(seconds) else f"{seconds * 1e6:,.0f}"


def ms(seconds: float) -> str:
    return "n/a" if seconds is None or math.isnan(seconds) else f"{seconds * 1e3:,.1f}"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def divide(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when there is nothing to divide by (a run that completed no request)."""
    if not denominator or math.isnan(denominator) or numerator is None or math.isnan(numerator):
        return float("nan")
    return numerator / denominator


def worst(values: list[float]) -> float:
    """The least of ``values``; NaN if any is NaN (a run that measured nothing is no pass)."""
    return float("nan") if not values or any(math.isnan(v) for v in values) else min(values)


def median(values: list[float]) -> float:
    """The median of ``values``; NaN if any is NaN."""
    return float("nan") if not values or any(math.isnan(v) for v in values) else statistics.median(values)


def ratio_of_rounds(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of numerator/denominator: robust to a noisy round."""
    pairs = [a / b for a, b in zip(numerator, denominator) if b and not math.isnan(a) and not math.isnan(b)]
    return statistics.median(pairs) if pairs else float("nan")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)
