"""Per-image reducers: what a many-image run keeps of each analysis, so memory stays bounded.

A reducer turns one analysis into a small dict of JSON-able values (numbers, strings, nested lists
of numbers). Folder statistics are the per-image rows plus `summarize` over them: the mean of every
numeric value (element-wise for equal-shaped maps) and counts of every string. Later analyses
(attention distance, faithfulness...) plug in with `register_reducer`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..json_values import jsonable  # noqa: F401 (public here too)
from ..named import NamedTable


@dataclass(frozen=True)
class Reducer:
    name: str
    compute: Callable[..., dict[str, Any]]  # compute(analysis) -> {field: JSON-able value}
    families: tuple[str, ...] | None = None  # None: every family
    description: str = ""
    # fields averaged over images (None: every numeric one) and fields counted (None: every string);
    # an index or a grid position has no meaningful mean
    means: tuple[str, ...] | None = None
    counts: tuple[str, ...] | None = None
    default: bool = True  # in every run; False: only when named (`--stats NAME`), e.g. a costly analysis

    def applies_to(self, family: str) -> bool:
        return self.families is None or family in self.families


_REDUCERS: NamedTable[Reducer] = NamedTable("statistic", missing=ValueError)


def register_reducer(reducer: Reducer, *, replace: bool = False) -> Reducer:
    return _REDUCERS.register(reducer, replace=replace)


def get_reducer(name: str) -> Reducer:
    return _REDUCERS.get(name)


def reducers() -> list[Reducer]:
    return list(_REDUCERS)


def default_reducers(family: str) -> list[str]:
    return [r.name for r in _REDUCERS if r.default and r.applies_to(family)]


def reduce(analysis, names) -> dict[str, Any]:
    """{reducer name: its values} for the named reducers that apply to the analysis's family."""
    out = {}
    for name in names:
        r = get_reducer(name)
        if r.applies_to(analysis.family):
            out[name] = jsonable(r.compute(analysis))
    return out


# ------------------------------------------------------------------------------------- summaries


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def summarize(rows: list[dict]) -> dict:
    """{"means": {reducer: {field: mean}}, "counts": {reducer: {field: {value: n}}}} over the rows'
    values (row["values"][reducer][field]), for the fields each reducer lists (all, for a reducer no
    longer registered). Numbers are averaged over the rows that have them (None = missing);
    equal-shaped numeric lists element-wise; strings and booleans counted."""
    means: dict[str, dict] = {}
    counts: dict[str, dict] = {}
    fields: dict[tuple[str, str], list] = {}
    for row in rows:
        for reducer, values in (row.get("values") or {}).items():
            for field, v in values.items():
                fields.setdefault((reducer, field), []).append(v)
    for (reducer, field), vals in fields.items():
        vals = [v for v in vals if v is not None]
        r = _REDUCERS.find(reducer)  # None: a statistic this version does not know
        want_mean = r is None or r.means is None or field in r.means
        want_count = r is None or r.counts is None or field in r.counts
        if not vals:
            continue
        if all(_is_number(v) for v in vals):
            if not want_mean:
                continue
            means.setdefault(reducer, {})[field] = float(np.mean(np.asarray(vals, np.float64)))
        elif all(isinstance(v, (str, bool)) for v in vals):
            if not want_count:
                continue
            c: dict[str, int] = {}
            for v in vals:
                c[str(v)] = c.get(str(v), 0) + 1
            counts.setdefault(reducer, {})[field] = dict(sorted(c.items(), key=lambda kv: -kv[1]))
        elif all(isinstance(v, list) for v in vals) and want_mean:
            try:
                arr = np.asarray(vals, dtype=np.float64)
            except (ValueError, TypeError):  # ragged (different grids) or not numeric: no mean
                continue
            if arr.ndim >= 2:
                means.setdefault(reducer, {})[field] = jsonable(np.nanmean(arr, axis=0))
    return {"means": means, "counts": counts}


# ----------------------------------------------------------------------------- the built-in ones


def _predictions(a, k: int = 5) -> dict:
    preds = a.top_predictions(k)
    if not preds:  # a checkpoint without a classifier head
        return {"top1_index": None, "top1_label": None, "top1_probability": None, "top": []}
    return {"top1_index": preds[0].index, "top1_label": preds[0].label,
            "top1_probability": preds[0].probability,
            "top": [[p.index, p.label, p.probability] for p in preds]}


def _rollout(a) -> dict:
    """Class-token rollout (mean heads, no discard), its peak patch and its entropy in bits
    (log2 of the patch count for a flat map, 0 for all mass on one patch)."""
    m = np.asarray(a.rollout("mean", 0.0, "cls"), np.float64)
    peak = np.unravel_index(int(np.argmax(m)), m.shape)
    p = m / m.sum()
    entropy = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
    return {"map": m.astype(np.float32), "peak_row": int(peak[0]), "peak_col": int(peak[1]),
            "peak_value": float(m[peak]), "entropy_bits": entropy}


def _detections(a, threshold: float = 0.7) -> dict:
    dets = a.detections(threshold)
    return {"count": len(dets), "threshold": threshold,
            "boxes": [[d.name, d.score, *d.box] for d in dets],
            "best_score": float(a.best_scores().max()) if len(a.best_scores()) else None}


register_reducer(Reducer("predictions", _predictions, ("vit", "swin"),
                         "top-5 classes; mean top-1 probability and counts of top-1 labels",
                         means=("top1_probability",), counts=("top1_label",)))
register_reducer(Reducer("rollout", _rollout, ("vit",),
                         "class-token attention rollout map, its peak and entropy; mean map",
                         means=("map", "peak_value", "entropy_bits"), counts=()))
register_reducer(Reducer("detections", _detections, ("detr",),
                         "detections above 0.7 (class, score, box in pixels); mean count",
                         means=("count", "best_score"), counts=()))
