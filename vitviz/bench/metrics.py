"""Benchmark rows and timing helpers. Every figure is a median (or a ratio of measurements taken
alternately in the same run), because the machine is shared and absolute times are noisy."""
from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable

# JSON keys of a row, in order. `note` says how it was measured, or why a row has no value.
ROW_KEYS = ("metric", "value", "unit", "goal", "met", "note")


@dataclass
class Row:
    metric: str
    value: float | None  # None: not measured (see note)
    unit: str
    goal: str | None = None  # e.g. "<= 1.05"; None: reported without a goal
    met: bool | None = None  # None when there is no goal or no value
    note: str = ""

    def __post_init__(self) -> None:
        if self.met is None and self.goal is not None and self.value is not None:
            self.met = goal_met(self.value, self.goal)
        if self.value is not None:
            self.value = float(self.value)

    def as_dict(self) -> dict:
        return {k: asdict(self)[k] for k in ROW_KEYS}


def goal_met(value: float, goal: str) -> bool:
    op, limit = goal.split()
    limit = float(limit)
    return {"<=": value <= limit, ">=": value >= limit, "<": value < limit, ">": value > limit}[op]


def missing(metric: str, unit: str, goal: str | None, why: str) -> Row:
    """A row that could not be measured: no value, the reason in the note."""
    return Row(metric, None, unit, goal, None, why)


def median(xs) -> float:
    return float(statistics.median(xs))


def p95(xs) -> float:
    """95th percentile, linear interpolation between order statistics."""
    s = sorted(xs)
    if not s:
        return math.nan
    k = (len(s) - 1) * 0.95
    lo, hi = math.floor(k), math.ceil(k)
    return float(s[lo] + (s[hi] - s[lo]) * (k - lo))


def sync(device: str | None) -> None:
    """Wait for queued GPU work before reading a clock (CUDA timings are otherwise launch times)."""
    if device and str(device).startswith("cuda") and "torch" in sys.modules:
        sys.modules["torch"].cuda.synchronize()
    elif device and str(device).startswith("mps") and "torch" in sys.modules:
        sys.modules["torch"].mps.synchronize()


def timed(fn: Callable[[], object], device: str | None = None) -> float:
    """Seconds one call of fn takes, synchronising the device before both clock reads."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def alternate(a: Callable[[], float], b: Callable[[], float], n: int) -> tuple[list[float], list[float]]:
    """n measurements of each, interleaved A B B A A B ... so drift and order effects hit both
    alike. a and b return the seconds they measured."""
    ta, tb = [], []
    for i in range(n):
        if i % 2 == 0:
            ta.append(a())
            tb.append(b())
        else:
            tb.append(b())
            ta.append(a())
    return ta, tb


def fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "x" or abs(v) >= 100:
        return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"
    if v != 0 and abs(v) < 0.01:
        return f"{v:.1e}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def format_table(rows: list[Row]) -> str:
    """A fixed-width text table (metric, value, unit, goal, met) with the notes underneath."""
    head = ("metric", "value", "unit", "goal", "met")
    body = [(r.metric, fmt_value(r.value, r.unit), r.unit, r.goal or "-",
             "-" if r.met is None else ("yes" if r.met else "NO")) for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(head), "  ".join("-" * w for w in widths), *(line(b) for b in body)]
    notes = [f"[{i + 1}] {r.metric}: {r.note}" for i, r in enumerate(rows) if r.note]
    if notes:
        out += ["", "Notes:", *notes]
    return "\n".join(out)
