"""The analyses as `vitviz stats` statistics (vitviz.core.analysis.stats_reducers): each image's
(layer, head) tables in its row of stats.json, their means over the images, DETR's slot boxes."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import tests.test_analyses  # noqa: F401 (registers test_reg_vit)
import vitviz
from vitviz.core.batch.folder import Job
from vitviz.core.batch.run import run_stats


@pytest.fixture(autouse=True)
def statistics():
    """Registered for these tests only: other tests see the default statistics as they are."""
    from vitviz.core.analysis import stats_reducers

    stats_reducers.register()
    yield
    stats_reducers.unregister()


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(11)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (44 + 4 * i, 60, 3), dtype=np.uint8)).save(d / f"{i}.png")
    (d / "bad.png").write_bytes(b"x")
    return d


def test_tables_per_image_and_their_means(folder, tmp_path):
    from vitviz.core.api import get_model

    job = Job(model="test_reg_vit", stats=("attention_distance", "attention_entropy"), batch_size=2)
    s = run_stats(folder, tmp_path / "out", job)
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["images"] == 3 and [f["source"].rsplit("/", 1)[-1] for f in stats["failed"]] == ["bad.png"]
    loaded = get_model("test_reg_vit")
    for name in ("attention_distance", "attention_entropy"):
        per = []
        for row in stats["rows"]:
            a = vitviz.analyze(row["source"], model=loaded)
            np.testing.assert_allclose(row["values"][name]["table"], a.analyse(name), rtol=2e-3)
            per.append(row["values"][name]["table"])
        np.testing.assert_allclose(stats["means"][name]["table"], np.mean(per, axis=0), rtol=1e-9)
    assert not s.cancelled


def test_detr_slot_boxes_in_the_rows(folder, tmp_path):
    from vitviz.core.analysis.detr_queries import QuerySpecialisation

    run_stats(folder, tmp_path / "out", Job(model="demo_detr", stats=("query_slots",)))
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    boxes = np.array([r["values"]["query_slots"]["boxes"] for r in stats["rows"]])
    assert boxes.shape == (3, 12, 6)
    spec = QuerySpecialisation(boxes, [r["source"] for r in stats["rows"]], 0.7)
    a = vitviz.analyze(stats["rows"][1]["source"], model="demo_detr")
    np.testing.assert_allclose(spec.boxes[1, :, :4], a.boxes, atol=1e-6)
    assert "query_slots" not in stats["means"]  # a slot's boxes over different images have no mean


def test_analyses_run_only_when_named_and_the_cli_knows_them(folder, tmp_path):
    """Distance and entropy cost a pass over every layer: named with --stats, never by default."""
    from vitviz.cli.batch import main
    from vitviz.core.batch.reducers import default_reducers, get_reducer

    assert get_reducer("attention_distance").applies_to("vit")
    assert not {"attention_distance", "attention_entropy"} & set(default_reducers("vit"))
    assert "query_slots" not in default_reducers("detr")
    (folder / "bad.png").unlink()  # (a failed image makes the exit code 1)
    assert main([str(folder), "--model", "test_reg_vit", "--stats", "attention_distance",
                 "--out", str(tmp_path / "cli"), "-q"]) == 0
    stats = json.loads((tmp_path / "cli" / "stats.json").read_text())
    assert set(stats["means"]) == {"attention_distance"} and len(stats["rows"]) == 3
