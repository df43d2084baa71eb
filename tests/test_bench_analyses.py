"""The analyses bench group (vitviz.bench.analyses): every row produced, with the documented keys;
the scatter it times really holds 24 x 16 dots. Nothing is asserted about time."""
from __future__ import annotations

import pytest

from vitviz.bench import analyses
from vitviz.bench.context import BenchContext

from .test_bench import check_rows

pytestmark = pytest.mark.gui


def test_rows_quick(qapp, tmp_path, monkeypatch):
    monkeypatch.setattr(analyses, "FOLDER_IMAGES", (8, 8))
    ctx = BenchContext(quick=True, workdir=tmp_path)
    rows = [r.as_dict() for r in analyses.run(ctx)]
    check_rows(rows, [m for m, _, _ in analyses.metrics()])
    assert all(r["value"] is not None for r in rows), rows
    assert rows[0]["unit"] == "ms" and rows[1]["unit"] == "img/s" and "8 PNGs" in rows[1]["note"]
    assert len(list((tmp_path / "analyses-folder").glob("*.png"))) == 8


def test_a_failing_measurement_gives_a_row_with_the_reason(monkeypatch, tmp_path):
    def boom(ctx):
        raise RuntimeError("no display")

    monkeypatch.setattr(analyses, "scatter_ms", boom)
    monkeypatch.setattr(analyses, "folder_rate", lambda ctx: (10.0, 8))
    rows = [r.as_dict() for r in analyses.run(BenchContext(quick=True, workdir=tmp_path))]
    check_rows(rows, [m for m, _, _ in analyses.metrics()])
    assert rows[0]["value"] is None and "no display" in rows[0]["note"] and rows[1]["value"] == 10.0
