"""Hugging Face hub-cache models open by id, offline, and compute what transformers computes:
attention equal to transformers' own output_attentions, logits equal, model input equal to the
checkpoint's image processor on the same image. Tiny random models written by the tests."""
from __future__ import annotations

import socket
import urllib.request

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
import torch  # noqa: E402

import vitviz  # noqa: E402
from tests.hf_helpers import noise_image, save_all, write_snapshot  # noqa: E402
from vitviz.core.models.registry import get_spec  # noqa: E402


@pytest.fixture
def hub(tmp_path, monkeypatch):
    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*a, **k):
        raise AssertionError("network access")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    return cache


def _hf_reference(snapshot, cls, image):
    """transformers' own model and processor from the snapshot: (pixel_values, outputs)."""
    proc = transformers.AutoImageProcessor.from_pretrained(snapshot)
    model = cls.from_pretrained(snapshot, attn_implementation="eager").eval()
    pixels = proc(image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model(pixels, output_attentions=True)
    return pixels, out


VIT_CASES = {
    # repo id: (config, model class, processor)
    "google/vit-tiny-test": (
        lambda: transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=4, intermediate_size=64, num_labels=3,
                                       initializer_range=0.3, id2label={0: "cat", 1: "dog", 2: "fish"},
                                       label2id={"cat": 0, "dog": 1, "fish": 2}),
        "ViTForImageClassification",
        lambda: transformers.ViTImageProcessor(size={"height": 32, "width": 32})),
    "facebook/dino-tiny-test": (
        lambda: transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=4, intermediate_size=64, initializer_range=0.3),
        "ViTModel",
        lambda: transformers.ViTImageProcessor(size={"height": 32, "width": 32}, resample=3,
                                               image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])),
    "facebook/deit-tiny-distilled-test": (
        lambda: transformers.DeiTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=64, num_labels=5,
                                        initializer_range=0.3),
        "DeiTForImageClassificationWithTeacher",
        lambda: transformers.DeiTImageProcessor(size={"height": 37, "width": 37}, crop_size={"height": 32, "width": 32})),
    "facebook/deit-tiny-test": (
        lambda: transformers.DeiTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=64, num_labels=5,
                                        initializer_range=0.3),
        "DeiTForImageClassification",
        lambda: transformers.DeiTImageProcessor(size={"height": 37, "width": 37}, crop_size={"height": 32, "width": 32})),
    "facebook/dinov2-tiny-test": (
        lambda: transformers.Dinov2Config(image_size=56, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=4, mlp_ratio=2, initializer_range=0.3,
                                          layerscale_value=0.7),
        "Dinov2Model",
        lambda: transformers.BitImageProcessor(size={"shortest_edge": 37}, crop_size={"height": 32, "width": 32},
                                               resample=3, image_mean=[0.485, 0.456, 0.406],
                                               image_std=[0.229, 0.224, 0.225], do_convert_rgb=True)),
    "facebook/dinov2-tiny-cls-test": (
        lambda: transformers.Dinov2Config(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=4, mlp_ratio=2, initializer_range=0.3,
                                          layerscale_value=0.7, num_labels=4),
        "Dinov2ForImageClassification",
        lambda: transformers.BitImageProcessor(size={"shortest_edge": 37}, crop_size={"height": 32, "width": 32},
                                               resample=3)),
    "facebook/dinov2-tiny-reg4-test": (
        lambda: transformers.Dinov2WithRegistersConfig(image_size=56, patch_size=8, hidden_size=32,
                                                       num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2,
                                                       initializer_range=0.3, layerscale_value=0.7,
                                                       num_register_tokens=4),
        "Dinov2WithRegistersModel",
        lambda: transformers.BitImageProcessor(size={"shortest_edge": 37}, crop_size={"height": 32, "width": 32},
                                               resample=3)),
}


def _write_vit(hub, repo_id):
    make_config, cls_name, make_proc = VIT_CASES[repo_id]
    torch.manual_seed(1)
    cls = getattr(transformers, cls_name)
    model = cls(make_config())
    with torch.no_grad():  # random non-trivial biases and norms (init leaves them 0 / 1)
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "layernorm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return write_snapshot(hub, repo_id, save_all(model, make_proc())), cls


@pytest.mark.parametrize("repo_id", list(VIT_CASES))
def test_vit_family_matches_transformers(hub, repo_id):
    snap, cls = _write_vit(hub, repo_id)
    image = noise_image(61, 45)  # odd margins: the processors' crop rounding matters
    pixels, ref = _hf_reference(snap, cls, image)

    a = vitviz.analyze(image, model=repo_id, attention_dtype="float32")
    assert a.trained and a.weights == "pretrained" and a.model_name == repo_id
    # the model saw exactly what the checkpoint's processor makes of the image
    np.testing.assert_allclose(a.model_input, pixels[0].numpy(), atol=1e-5)
    # every layer's attention equals transformers' own output_attentions
    assert a.attn.shape[0] == len(ref.attentions)
    for layer, want in enumerate(ref.attentions):
        np.testing.assert_allclose(a.attn[layer], want[0].numpy(), atol=2e-5, err_msg=f"layer {layer}")
    spec = get_spec(repo_id)
    if hasattr(ref, "logits") and ref.logits is not None:
        np.testing.assert_allclose(a.logits, ref.logits[0].numpy(), rtol=1e-4, atol=1e-4)
        assert a.class_names == [ref_label for _, ref_label in sorted(
            cls.config_class.from_pretrained(snap).id2label.items())]
        assert spec.labels is not None
    else:
        assert a.logits is None and spec.labels is None
    # the patch grid the clicks map through is the processor's crop
    assert a.grid.shape == (pixels.shape[-2] // 8, pixels.shape[-1] // 8)
    prefix = {"deit": 2, "dinov2-tiny-reg4": 5}
    want_prefix = next((n for k, n in prefix.items() if k in repo_id), 1)
    assert a.num_prefix_tokens == want_prefix


def test_hub_cache_spec_reads_processor_and_labels(hub):
    _write_vit(hub, "google/vit-tiny-test")
    _write_vit(hub, "facebook/dinov2-tiny-test")
    vit, dino = get_spec("google/vit-tiny-test"), get_spec("facebook/dinov2-tiny-test")
    assert (vit.family, vit.preprocess.kind, vit.preprocess.size, vit.preprocess.mean) == ("vit", "resize", 32, (0.5,) * 3)
    assert vit.labels == ("cat", "dog", "fish") and vit.source == "hf"
    assert (dino.preprocess.kind, dino.preprocess.resize, dino.preprocess.size, dino.preprocess.resample,
            dino.preprocess.convention) == ("center_crop", 37, 32, "bicubic", "transformers")


def test_cached_specs_list_the_cache(hub):
    from vitviz.core.models.hf_specs import cached_specs

    _write_vit(hub, "google/vit-tiny-test")
    write_snapshot(hub, "someone/bert-thing", lambda d: (d / "config.json").write_text('{"model_type": "bert"}'))
    listed = {spec.name: entry for spec, entry in cached_specs()}
    assert list(listed) == ["google/vit-tiny-test"]
    entry = listed["google/vit-tiny-test"]
    assert entry.family == "vit" and entry.has_weights and entry.size_bytes > 10_000


def test_missing_id_says_where_it_looked(hub):
    with pytest.raises(KeyError) as info:
        vitviz.analyze(noise_image(32, 32), model="google/not-downloaded")
    text = str(info.value)
    assert str(hub) in text and "huggingface-cli download google/not-downloaded" in text


def test_unsupported_model_type_is_named(hub):
    write_snapshot(hub, "someone/bert-thing", lambda d: (d / "config.json").write_text('{"model_type": "bert"}'))
    with pytest.raises(KeyError, match="'bert' model"):
        get_spec("someone/bert-thing")


def test_random_weights_for_a_hub_id(hub):
    from vitviz.core.models.loading import load_model
    from vitviz.core.models.weights import weights_state

    snap, _ = _write_vit(hub, "google/vit-tiny-test")
    loaded = load_model("google/vit-tiny-test", "random")
    assert not loaded.trained and loaded.class_names == ["cat", "dog", "fish"]
    assert weights_state(get_spec("google/vit-tiny-test")) == "cached"
    (snap / "model.safetensors").unlink()  # config only: runs random, and says so
    assert weights_state(get_spec("google/vit-tiny-test")) == "downloadable"
    loaded = load_model("google/vit-tiny-test", "pretrained")
    assert not loaded.trained and "no weights file" in loaded.notes[0]


def test_hub_cache_location_follows_the_environment(monkeypatch, tmp_path):
    from vitviz.core.models.hf_cache import hub_cache_dir

    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hub_cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"


def test_vitviz_models_lists_the_hub_cache(hub, capsys):
    from vitviz.cli.models import main

    _write_vit(hub, "google/vit-tiny-test")
    assert main([]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("google/vit-tiny-test"))
    assert " vit " in line and "cached" in line and "MB" in line
    assert "demo_vit" in out and str(hub) in out
