"""The model picker lists the Hugging Face hub-cache models vitviz opens (what `vitviz models` lists:
transformers ViT / Swin / DETR and CLIP), with family and size, offline; choosing one runs it."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")

from tests.hf_helpers import write_snapshot  # noqa: E402
from tests.test_clip import _hf_clip, hub  # noqa: E402,F401  (hub: the fixture, network off)
from tests.test_hf_models import _write_vit  # noqa: E402

from .gui_helpers import make_window, open_and_wait  # noqa: E402

pytestmark = pytest.mark.gui


def _texts(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def _entry(combo, name) -> str:
    i = next((i for i in range(combo.count()) if combo.itemData(i) == name), -1)
    assert i >= 0, (name, _texts(combo))
    return combo.itemText(i)


def test_picker_lists_the_hub_cache_and_runs_a_hub_model(qtbot, tmp_path, hub, capsys):
    from vitviz.cli.models import main as list_models
    from vitviz.core.models.hf_cache import list_cached

    _write_vit(hub, "google/vit-tiny-test")
    _hf_clip(hub)  # openai/clip-tiny-test
    write_snapshot(hub, "someone/bert-thing", lambda d: (d / "config.json").write_text('{"model_type": "bert"}'))
    write_snapshot(hub, "google/vit-config-only", lambda d: (d / "config.json").write_text(
        '{"model_type": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, '
        '"num_attention_heads": 4, "intermediate_size": 64}'))
    sizes = {e.repo_id: e.size_bytes / 1e6 for e in list_cached()}

    win = make_window(qtbot, tmp_path, weights="pretrained")  # (the tiny test ViT runs random: it has none)
    win.picker.refresh_states(background=False)  # what the background scan does
    combo = win.model_combo
    texts = _texts(combo)
    hf, clip = texts.index("Hugging Face hub cache"), texts.index("Hugging Face hub cache: CLIP")
    assert not combo.model().item(hf).isEnabled() and hf < clip < texts.index("Open checkpoint…")
    vit = _entry(combo, "google/vit-tiny-test")
    assert vit == f"google/vit-tiny-test (ViT)  ·  cached {sizes['google/vit-tiny-test']:.1f} MB"
    assert hf < texts.index(vit) < clip
    assert _entry(combo, "google/vit-config-only").endswith("no weights")
    assert _entry(combo, "openai/clip-tiny-test").startswith("openai/clip-tiny-test (CLIP image tower)  ·  cached")
    assert texts.index(_entry(combo, "openai/clip-tiny-test")) > clip
    assert combo.findData("someone/bert-thing") < 0  # not a model vitviz opens
    assert win.picker.state_of("google/vit-tiny-test") == "cached"
    list_models([])  # the same ids as `vitviz models`
    printed = capsys.readouterr().out
    assert "google/vit-tiny-test" in printed and "someone/bert-thing" not in printed

    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(image)
    open_and_wait(qtbot, win, image)
    i = combo.findData("google/vit-tiny-test")
    combo.setCurrentIndex(i)
    with qtbot.waitSignal(win.analysisShown, timeout=60000) as got:
        combo.activated.emit(i)  # what a click on the entry does
    a = got.args[0]
    assert a.model_name == "google/vit-tiny-test" and a.trained and a.class_names[:2] == ["cat", "dog"]
    assert win.picker.recent_models()[0] == "google/vit-tiny-test"
    assert _texts(combo)[:2] == ["Recent", vit]
