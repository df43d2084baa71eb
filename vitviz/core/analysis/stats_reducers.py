"""The analyses as `vitviz stats` statistics (vitviz.core.batch.reducers): each image's (layer, head)
table of mean attention distance and of attention entropy, and DETR's query-slot boxes, kept in its
row of stats.json; summarize() gives the tables' element-wise means over the images (NaN-free JSON:
a head without a value, e.g. a Swin stage with fewer heads, is null and left out of the mean).

Registered on import:  vitviz stats FOLDER --stats attention_distance,attention_entropy
"""
from __future__ import annotations

from ..batch.reducers import Reducer, register_reducer
from .tables import get_measure

TABLES = ("attention_distance", "attention_entropy")


def _table(name: str):
    def compute(a) -> dict:
        m = get_measure(name)
        return {"table": m(a), "unit": m.unit}

    return compute


def _query_slots(a) -> dict:
    """Per slot: cx, cy, w, h (normalised), best real-class score, its class (detr_queries.query_boxes)."""
    return {"boxes": get_measure("query_boxes")(a)}


def register() -> None:
    """Register the statistics (again, replacing: safe to call twice)."""
    for name in TABLES:
        m = get_measure(name)
        register_reducer(Reducer(name, _table(name), tuple(m.compute), f"{m.title} per (layer, head), {m.unit}; "
                                 "mean table over the images", means=("table",), counts=(), default=False),
                         replace=True)
    register_reducer(Reducer("query_slots", _query_slots, ("detr",),
                             "every query slot's box, score and class (the slots' specialisation)",
                             means=(), counts=(), default=False), replace=True)


register()


def unregister() -> None:
    """Take the statistics out again (tests that must leave the default set as it was)."""
    from ..batch import reducers

    for name in (*TABLES, "query_slots"):
        if reducers._REDUCERS.find(name) is not None:
            reducers._REDUCERS.unregister(name)
