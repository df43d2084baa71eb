"""Folder runs (`vitviz stats`): rows per image written atomically, resume, --force, failures listed,
stats.json; the engine interface; the Ray engine on a local Ray (slow)."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from PIL import Image

import tests.swin_helpers  # noqa: F401  (registers test_tiny_swin)
from vitviz.cli.batch import main as stats_main
from vitviz.core.batch.folder import Job, RunFolder, RunFolderError, list_images
from vitviz.core.batch.run import run_stats
from vitviz.core.engines import get_engine
from vitviz.core.engines.local import LocalEngine

JOB = Job(model="test_tiny_vit", weights="random", batch_size=3)


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "imgs"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (50 + i, 70, 3), dtype=np.uint8)).save(src / f"a{i}.png")
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(src / "sub" / "g.jpg")
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    (src / "notes.txt").write_text("not an image, and not named one")
    return src


def test_list_images_recurses_by_extension(folder):
    files = list_images([folder])
    names = sorted(p.split("/")[-1] for p in files)
    assert names == ["a0.png", "a1.png", "a2.png", "a3.png", "a4.png", "broken.png", "g.jpg"]
    assert list_images([folder / "notes.txt", folder / "notes.txt"]) == [str(folder / "notes.txt")]


def test_run_writes_rows_and_stats_and_resumes(folder, tmp_path):
    out = tmp_path / "out"
    s = run_stats(folder, out, JOB)
    assert (s.total, s.analysed, s.skipped) == (7, 7, 0) and not s.cancelled
    assert [f["source"] for f in s.failed] == [str(folder / "broken.png")]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["images"] == 6 and stats["engine"] == "local" and len(stats["rows"]) == 6
    assert "not an image Pillow can read" in stats["failed"][0]["error"]
    probs = [r["values"]["predictions"]["top1_probability"] for r in stats["rows"]]
    assert stats["means"]["predictions"]["top1_probability"] == pytest.approx(np.mean(probs))
    maps = np.array([r["values"]["rollout"]["map"] for r in stats["rows"]])
    np.testing.assert_allclose(stats["means"]["rollout"]["map"], maps.mean(0), atol=1e-7)
    assert len(list((out / "rows").glob("*.json"))) == 7 and not list(out.rglob("*.tmp"))
    # a re-run analyses only what failed; --force everything
    again = run_stats(folder, out, JOB)
    assert (again.analysed, again.skipped) == (1, 6)
    assert json.loads((out / "stats.json").read_text())["rows"] == stats["rows"]
    assert run_stats(folder, out, JOB, force=True).analysed == 7


def test_another_job_in_the_same_folder_is_refused(folder, tmp_path):
    run_stats([folder / "a0.png"], tmp_path / "out", JOB)
    with pytest.raises(RunFolderError, match="another run"):
        run_stats([folder / "a0.png"], tmp_path / "out", Job(model="test_tiny_swin", weights="random"))
    # the batch size or device do not change results: the same job
    run_stats([folder / "a0.png"], tmp_path / "out", Job(model="test_tiny_vit", weights="random", batch_size=1))


def test_cancelled_run_keeps_rows_and_resumes(folder, tmp_path):
    cancel = threading.Event()
    out = tmp_path / "out"

    def progress(done, total):
        cancel.set()

    s = run_stats(folder, out, JOB, cancel=cancel, progress=progress)
    assert s.cancelled and s.stats is None and not (out / "stats.json").exists()
    assert len(list((out / "rows").glob("*.json"))) == 3  # the first batch
    rest = run_stats(folder, out, JOB)
    assert (rest.analysed, rest.skipped) == (4, 3) and rest.stats["images"] == 6


def test_interrupt_keeps_rows(folder, tmp_path):
    class Interrupted:  # an engine that is stopped by Ctrl+C after two rows
        name = "test"

        def run(self, job, sources, *, cancel=None, progress=None):
            inner = LocalEngine(workers=0).run(job, sources)
            yield next(inner)
            yield next(inner)
            raise KeyboardInterrupt

    s = run_stats(folder, tmp_path / "out", JOB, Interrupted())
    assert s.cancelled and s.analysed == 2 and len(list((tmp_path / "out" / "rows").glob("*.json"))) == 2


def test_any_engine_with_run_plugs_in(folder, tmp_path):
    class Fake:
        name = "fake"

        def run(self, job, sources, *, cancel=None, progress=None):
            for i, s in enumerate(sources):
                yield {"source": s, "ok": True, "values": {"x": {"v": float(i)}}}

    s = run_stats(folder, tmp_path / "out", JOB, Fake())
    assert s.stats["engine"] == "fake" and s.stats["means"]["x"]["v"] == pytest.approx(3.0)


def test_row_files_are_atomic_and_named_per_source(tmp_path):
    run = RunFolder(tmp_path, JOB)
    run.open()
    run.write({"source": "/x/a.png", "ok": True, "values": {}})
    run.write({"source": "/y/a.png", "ok": False, "error": "e"})
    assert run.done("/x/a.png") and not run.done("/y/a.png") and not run.done("/z/a.png")
    assert len({run.key("/x/a.png"), run.key("/y/a.png")}) == 2
    run.row_path("/z/a.png").write_text("{half a fi")  # a file from a crash elsewhere: analysed again
    assert not run.done("/z/a.png")


def test_cli_exit_codes_and_output(folder, tmp_path, capsys):
    code = stats_main([str(folder), "--model", "test_tiny_vit", "--weights", "random", "--out",
                       str(tmp_path / "o"), "-q", "--stats", "predictions"])
    captured = capsys.readouterr()
    assert code == 1  # one image failed
    assert "6 image(s) analysed" in captured.out and "1 failed" in captured.out
    assert "skipped" in captured.err and "broken.png" in captured.err
    rows = json.loads((tmp_path / "o" / "stats.json").read_text())["rows"]
    assert set(rows[0]["values"]) == {"predictions"}
    good = [str(folder / f"a{i}.png") for i in range(2)]
    assert stats_main([*good, "--model", "test_tiny_vit", "--weights", "random", "--out", str(tmp_path / "p"),
                       "-q"]) == 0
    assert stats_main([*good, "--model", "test_tiny_swin", "--weights", "random", "--out", str(tmp_path / "p"),
                       "-q"]) == 2
    assert "another run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        stats_main([*good, "--stats", "nope"])
    with pytest.raises(SystemExit):
        stats_main([*good, "--address", "auto"])  # a Ray option without --engine ray
    assert stats_main([*good, "--model", "no_such_model", "--out", str(tmp_path / "q"), "-q"]) == 2


def test_cli_ray_without_ray_says_how_to_install(monkeypatch, capsys, folder):
    import vitviz.core.engines.ray as ray_engine

    def missing():
        raise RuntimeError(ray_engine.INSTALL_HINT)

    monkeypatch.setattr(ray_engine, "import_ray", missing)
    assert stats_main([str(folder), "--engine", "ray"]) == 2
    assert "pip install 'vitviz[ray]'" in capsys.readouterr().err


def test_main_entry_knows_stats():
    from vitviz.__main__ import SUBCOMMANDS

    assert SUBCOMMANDS["stats"] == "vitviz.cli.batch"
    with pytest.raises(ValueError, match="unknown engine"):
        get_engine("spark")


@pytest.mark.slow
def test_ray_engine_equals_local_engine(folder, tmp_path):
    """A local Ray (2 CPUs): the same rows and means as the local engine, failures listed the same."""
    ray = pytest.importorskip("ray")
    job = Job(model="demo_vit", weights="pretrained", batch_size=3)  # Ray's workers know the bundled models
    try:
        local = run_stats(folder, tmp_path / "local", job)
        remote = run_stats(folder, tmp_path / "ray", job, get_engine("ray", num_cpus=2))
    finally:
        ray.shutdown()
    assert remote.stats["engine"] == "ray"
    assert remote.failed == local.failed
    a = {r["source"]: r["values"] for r in local.stats["rows"]}
    b = {r["source"]: r["values"] for r in remote.stats["rows"]}
    assert a.keys() == b.keys()
    for k in a:
        assert a[k]["predictions"]["top1_label"] == b[k]["predictions"]["top1_label"]
        np.testing.assert_allclose(b[k]["rollout"]["map"], a[k]["rollout"]["map"], atol=1e-5)
        assert b[k]["predictions"]["top1_probability"] == pytest.approx(a[k]["predictions"]["top1_probability"],
                                                                        abs=1e-5)
    np.testing.assert_allclose(remote.stats["means"]["rollout"]["map"], local.stats["means"]["rollout"]["map"],
                               atol=1e-5)
