"""`vitviz export FOLDER`: batched analysis (analyze_many), the same figures as one-image exports,
progress, and runs that resume after an interruption without leaving partial files."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.gui

MODEL = ["--model", "test_tiny_vit", "--weights", "random"]


def _png(path, size, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for i, size in enumerate([(80, 64), (64, 96), (120, 90), (70, 70), (100, 60)]):
        _png(d / f"img{i}.png", size, i)
    return d


def _export(*args):
    from vitviz.cli.export import main

    return main([*map(str, args), *MODEL, "--workers", "0"])


def _figures(out):
    return sorted(f for f in os.listdir(out) if f.endswith(".png"))


@pytest.fixture
def batches(monkeypatch):
    """The sizes of the forwards analyze_many runs."""
    import vitviz.core.batch.many as many

    sizes: list[int] = []
    real = many.run_batch

    def spy(loaded, items, dtype):
        sizes.append(len(items))
        return real(loaded, items, dtype)

    monkeypatch.setattr(many, "run_batch", spy)
    return sizes


def test_folder_runs_batched_and_each_png_equals_the_single_image_export(qapp, folder, tmp_path, batches, capsys):
    out = tmp_path / "out"
    assert _export(folder, "--view", "attention,rollout", "--batch-size", "2", "--out", out) == 0
    assert batches == [2, 2, 1]  # five images in batched forwards, not one at a time
    printed = capsys.readouterr()
    assert "[5/5]" in printed.err and "img/s" in printed.err  # the tqdm bar: count, rate
    assert printed.out.split() == [str(out / f"img{i}_attention+rollout.png") for i in range(5)]
    for i in range(5):
        single = tmp_path / f"single{i}.png"
        assert _export(folder / f"img{i}.png", "--view", "attention,rollout", "--out", single) == 0
        folder_png = (out / f"img{i}_attention+rollout.png").read_bytes()
        assert folder_png == single.read_bytes(), i  # byte for byte (the provenance chunk included)
        a = json.loads((out / f"img{i}_attention+rollout.png.json").read_text())
        b = json.loads(single.with_name(single.name + ".json").read_text())
        assert a["panels"] == b["panels"] and a["request"] == b["request"] and a["export_key"] == b["export_key"]


def test_rerun_skips_complete_figures_and_redoes_the_rest(qapp, folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert _export(folder, "--batch-size", "4", "--out", out) == 0
    names = [f"img{i}_attention.png" for i in range(5)]
    assert _figures(out) == names
    stamp = {n: os.stat(out / n).st_mtime_ns for n in names}
    os.unlink(out / names[0])  # figure gone
    os.unlink(out / (names[1] + ".json"))  # sidecar gone
    (out / names[2]).write_bytes((out / names[2]).read_bytes()[:100])  # truncated figure
    capsys.readouterr()
    assert _export(folder, "--batch-size", "4", "--out", out) == 0
    printed = capsys.readouterr()
    assert printed.out.split() == [str(out / n) for n in names[:3]]  # only the incomplete ones again
    assert "2 image(s) exported by an earlier run" in printed.err and "[5/5]" in printed.err
    assert "Exported 3 of 5 image(s)" in printed.err
    for n in names[3:]:
        assert os.stat(out / n).st_mtime_ns == stamp[n]  # untouched
    for n in names:
        side = json.loads((out / (n + ".json")).read_text())
        assert side["output"]["bytes"] == os.path.getsize(out / n)
    # another option: every figure is made again; --force: the same
    assert _export(folder, "--colormap", "magma", "--out", out) == 0
    assert len(capsys.readouterr().out.split()) == 5
    assert json.loads((out / (names[4] + ".json")).read_text())["colormap"] == "magma"
    assert _export(folder, "--colormap", "magma", "--out", out) == 0
    assert capsys.readouterr().out.split() == []
    assert _export(folder, "--colormap", "magma", "--force", "--out", out) == 0
    assert len(capsys.readouterr().out.split()) == 5
    # the image changed since: its figure is made again
    _png(folder / "img3.png", (70, 70), 99)
    assert _export(folder, "--colormap", "magma", "--out", out) == 0
    assert capsys.readouterr().out.split() == [str(out / names[3])]


def test_interrupt_mid_write_leaves_no_partial_file_and_the_rerun_finishes(qapp, folder, tmp_path, monkeypatch,
                                                                          capsys):
    import vitviz.gui.export_request as export_request

    out = tmp_path / "out"
    real_replace = os.replace
    calls = []

    def replace(src, dst):  # Ctrl+C after the third image's figure is in place, before its sidecar
        if str(dst).startswith(str(out)):
            calls.append(dst)
            if len(calls) == 6:
                raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(export_request.os, "replace", replace)
    assert _export(folder, "--batch-size", "2", "--out", out) == 130
    monkeypatch.setattr(export_request.os, "replace", real_replace)
    err = capsys.readouterr().err
    assert "interrupted after 2 figure(s)" in err and "run the same command again" in err
    # two complete exports; the third's figure was taken back; no temporary files
    assert sorted(os.listdir(out)) == ["img0_attention.png", "img0_attention.png.json",
                                       "img1_attention.png", "img1_attention.png.json"]
    assert _export(folder, "--batch-size", "2", "--out", out) == 0
    printed = capsys.readouterr()
    assert printed.out.split() == [str(out / f"img{i}_attention.png") for i in (2, 3, 4)]
    assert len(os.listdir(out)) == 10


def test_bad_images_are_listed_retried_and_the_exit_code_says_so(qapp, folder, tmp_path, capsys):
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    assert _export(folder, "--batch-size", "4", "--out", out, "--quiet") == 1
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.png" in err and "Exported 5 of 6" in err and "[" not in err.split("\n")[0]
    assert len(_figures(out)) == 5
    assert _export(folder, "--out", out) == 1  # the bad one is tried again (and fails again)
    err = capsys.readouterr().err
    assert "5 image(s) exported by an earlier run" in err and "Exported 0 of 6" in err and "broken.png" in err


def test_batch_size_must_be_positive(qapp, folder, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        _export(folder, "--batch-size", "0", "--out", tmp_path / "out")
    assert exit_.value.code == 2
