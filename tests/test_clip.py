"""CLIP image towers open as ViTs (open_clip:ARCH/CHECKPOINT or TAG, transformers CLIP hub ids), offline,
and compute what the libraries compute: attention (transformers' output_attentions; open_clip's from
each block's q/k), the image embedding (encode_image / get_image_features); a text prompt as the
target of relevance equals Chefer's rule written here from its equations with the gradient of the
image-text cosine, taken through the libraries' own models. Tiny random models written by the tests."""
from __future__ import annotations

import json
import socket
import urllib.request

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import vitviz  # noqa: E402
from tests.hf_helpers import noise_image, save_all, write_snapshot  # noqa: E402
from vitviz.core.models.clip_text import prompt_maps  # noqa: E402

ARCHS = {  # open_clip configs written by the tests: GELU and QuickGELU towers
    "vitviz-tiny-clip-test": {"embed_dim": 16},
    "vitviz-tiny-clip-test-quickgelu": {"embed_dim": 16, "quick_gelu": True},
}
PROMPTS = ["a photo of a dog", "a diagram of a red car"]


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


def _spread(model: torch.nn.Module, seed: int) -> None:
    """Random weights with some spread (the default init gives near-uniform attention)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" not in name and "norm" not in name and "logit" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _open_clip_model(tmp_path, arch: str, seed: int = 0):
    """(the open_clip model, the checkpoint it was saved to)."""
    cfg = {**ARCHS[arch], "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "head_width": 8,
                                         "patch_size": 8},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2}}
    path = tmp_path / f"{arch}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    model = open_clip.create_model(arch).eval()
    _spread(model, seed)
    ckpt = tmp_path / f"{arch}.pt"
    torch.save(model.state_dict(), ckpt)
    return model, ckpt


def _hf_clip(hub, repo_id="openai/clip-tiny-test"):
    """A transformers CLIPModel, its image processor and a byte-level tokenizer in the hub cache."""
    chars = [chr(c) for c in _byte_chars()]
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    try:  # transformers 5: the vocabulary and merges as data
        tok = transformers.CLIPTokenizer(vocab=vocab, merges=[])
    except TypeError:  # transformers 4: as files
        folder = hub.parent / "tok"
        folder.mkdir(exist_ok=True)
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        tok = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=32, bos_token_id=len(vocab) - 2,
                         eos_token_id=len(vocab) - 1, pad_token_id=len(vocab) - 1),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                           num_attention_heads=4), projection_dim=16)
    torch.manual_seed(0)
    model = transformers.CLIPModel(cfg).eval()
    _spread(model, 1)
    proc = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    snap = write_snapshot(hub, repo_id, save_all(model, proc, tok))
    ref = transformers.CLIPModel.from_pretrained(snap, attn_implementation="eager").eval()
    return ref, proc, tok


def _byte_chars() -> list[int]:
    """GPT-2 / CLIP byte-level BPE's 256 code points, one per byte (bytes_to_unicode)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = iter(range(256, 512))
    return [b if b in keep else next(extra) for b in range(256)]


def _relevance_reference(attn: list[torch.Tensor], grads: list[torch.Tensor]) -> np.ndarray:
    """Chefer et al.: R = I; per block R += mean_h clamp(dA * A, 0) R; the map is R[CLS, patches]."""
    n = attn[0].shape[-1]
    r = torch.eye(n, dtype=torch.float64)
    for a, g in zip(attn, grads):
        abar = (g[0].double() * a[0].detach().double()).clamp(min=0).mean(dim=0)
        r = r + abar @ r
    return r[0, 1:].numpy()


def _open_clip_explicit(model, x: torch.Tensor):
    """open_clip's image tower written out with each block's attention as an explicit tensor:
    (image embedding, [A_l])."""
    v = model.visual
    h = v.conv1(x).flatten(2).transpose(1, 2)
    h = torch.cat([v.class_embedding.expand(h.shape[0], 1, -1), h], dim=1) + v.positional_embedding
    h = v.ln_pre(h)
    attn = []
    for blk in v.transformer.resblocks:
        mha = blk.attn
        b, n, e = h.shape
        nh = mha.num_heads
        q, k, val = F.linear(blk.ln_1(h), mha.in_proj_weight, mha.in_proj_bias).reshape(b, n, 3, nh, e // nh).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-2, -1) / (e // nh) ** 0.5, dim=-1)
        attn.append(a)
        h = h + mha.out_proj((a @ val).transpose(1, 2).reshape(b, n, e))
        h = h + blk.mlp(blk.ln_2(h))
    return v.ln_post(h[:, 0]) @ v.proj, attn


def _image(seed=0):
    return noise_image(57, 44, seed)


# --- open_clip ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", list(ARCHS))
def test_open_clip_tower_opens_offline_and_equals_open_clip(hub, tmp_path, arch):
    model, ckpt = _open_clip_model(tmp_path, arch)
    a = vitviz.analyze(_image(), model=f"open_clip:{arch}/{ckpt}")
    assert a.trained and a.logits is None and a.attn.shape == (3, 4, 17, 17)
    x = torch.from_numpy(a.model_input).unsqueeze(0)
    with torch.no_grad():
        ref_emb, ref_attn = _open_clip_explicit(model, x)
        lib_emb = model.encode_image(x)
    assert torch.allclose(ref_emb, lib_emb, atol=1e-5)  # the written-out tower is open_clip's
    for layer, ref in enumerate(ref_attn):  # float16 capture
        np.testing.assert_allclose(a.attn[layer].astype(np.float32), ref[0].numpy(), atol=1e-3, rtol=1e-3)
    loaded = a._vitviz_model
    with torch.no_grad():
        emb = loaded.module.image_embedding(x)
    np.testing.assert_allclose(emb.numpy(), lib_emb.numpy(), atol=1e-5)
    # open_clip's own eval transform on the same image (PIL resize vs torchvision's tensor kernel)
    pre = open_clip.image_transform(32, is_train=False)
    assert np.abs(pre(_image()).numpy() - a.model_input).mean() < 0.02


def test_open_clip_pretrained_tag_from_the_hub_cache(hub, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    arch = "vitviz-tiny-clip-test-quickgelu"
    model, _ = _open_clip_model(tmp_path, arch)
    pcfg = {"hf_hub": "laion/vitviz-tiny-clip-test/", "quick_gelu": True, "mean": (0.5,) * 3, "std": (0.5,) * 3,
            "interpolation": "bilinear"}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, arch, {"tinytag": pcfg})
    name = f"open_clip:{arch}/tinytag"
    with pytest.warns(UserWarning, match="RANDOM weights"):  # not in the cache: random, and said so
        missing = vitviz.analyze(_image(), model=name)
    assert not missing.trained and any("not on disk" in n for n in missing.notes)
    write_snapshot(hub, "laion/vitviz-tiny-clip-test", lambda folder: save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors")))
    a = vitviz.analyze(_image(), model=name)
    assert a.trained and a.input_mean == (0.5, 0.5, 0.5)
    x = torch.from_numpy(a.model_input).unsqueeze(0)
    with torch.no_grad():
        np.testing.assert_allclose(a._vitviz_model.module.image_embedding(x).numpy(), model.encode_image(x).numpy(),
                                   atol=1e-5)
    with pytest.raises(KeyError, match="no pretrained tag 'nope'.*tinytag"):
        vitviz.analyze(_image(), model=f"open_clip:{arch}/nope")


@pytest.mark.parametrize("arch", list(ARCHS))
def test_open_clip_prompt_relevance_equals_the_equations(hub, tmp_path, arch):
    model, ckpt = _open_clip_model(tmp_path, arch)
    a = vitviz.analyze(_image(), model=f"open_clip:{arch}/{ckpt}")
    tok = open_clip.get_tokenizer(arch)
    x = torch.from_numpy(a.model_input).unsqueeze(0)
    for prompt in PROMPTS:
        with torch.no_grad():
            text = model.encode_text(tok([prompt]))
        emb, attn = _open_clip_explicit(model, x)
        y = F.cosine_similarity(emb, text)[0]
        grads = torch.autograd.grad(y, attn)
        ref = _relevance_reference(attn, grads).reshape(4, 4)
        got = a.explain("relevance", target=prompt)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
        t = a.target_info(prompt)
        assert t.prompt == prompt and t.score == pytest.approx(float(y.detach()), abs=1e-5)


# --- transformers ---------------------------------------------------------------------------------
def test_hf_clip_opens_offline_and_equals_transformers(hub):
    ref, proc, _ = _hf_clip(hub)
    img = _image(2)
    a = vitviz.analyze(img, model="openai/clip-tiny-test")
    assert a.trained and a.logits is None and a.attn.shape == (3, 4, 17, 17)
    from vitviz.core.models.clip_specs import cached_specs

    assert [(s.name, s.family, e.repo_id) for s, e in cached_specs()] == [("openai/clip-tiny-test", "vit",
                                                                          "openai/clip-tiny-test")]
    pixels = proc(img, return_tensors="pt")["pixel_values"]
    np.testing.assert_allclose(a.model_input, pixels[0].numpy(), atol=1e-5)  # the checkpoint's processor
    with torch.no_grad():
        out = ref.vision_model(pixels, output_attentions=True)
        feats = ref.get_image_features(pixel_values=pixels)
    feats = feats if torch.is_tensor(feats) else feats.pooler_output
    for layer, att in enumerate(out.attentions):
        np.testing.assert_allclose(a.attn[layer].astype(np.float32), att[0].numpy(), atol=1e-3, rtol=1e-3)
    with torch.no_grad():
        emb = a._vitviz_model.module.image_embedding(pixels)
    np.testing.assert_allclose(emb.numpy(), feats.numpy(), atol=1e-5)


def test_hf_clip_prompt_relevance_equals_the_equations_through_transformers(hub):
    ref, proc, tok = _hf_clip(hub)
    img = _image(3)
    a = vitviz.analyze(img, model="openai/clip-tiny-test")
    pixels = torch.from_numpy(a.model_input).unsqueeze(0)
    for prompt in PROMPTS:
        with torch.no_grad():
            text = ref.get_text_features(**tok([prompt], return_tensors="pt"))
        text = text if torch.is_tensor(text) else text.pooler_output
        out = ref.vision_model(pixels, output_attentions=True)  # A as transformers' forward uses it
        image = ref.visual_projection(out.pooler_output)
        y = F.cosine_similarity(image, text)[0]
        grads = torch.autograd.grad(y, list(out.attentions))
        expected = _relevance_reference(list(out.attentions), grads).reshape(4, 4)
        np.testing.assert_allclose(a.explain("relevance", target=prompt), expected, rtol=1e-4,
                                   atol=1e-6 * np.abs(expected).max())


# --- several prompts, errors, the CLI -------------------------------------------------------------
def test_random_weights_run_random_towers_on_both_sides(hub, tmp_path):
    _, ckpt = _open_clip_model(tmp_path, "vitviz-tiny-clip-test")
    ref, _, _ = _hf_clip(hub)
    for name in (f"open_clip:vitviz-tiny-clip-test/{ckpt}", "openai/clip-tiny-test"):
        trained = vitviz.analyze(_image(), model=name)
        random = vitviz.analyze(_image(), model=name, weights="random")
        assert not random.trained
        m = random.explain("relevance", target=PROMPTS[0])
        assert m.shape == (4, 4) and np.isfinite(m).all()
        assert random.target_info(PROMPTS[0]).score != pytest.approx(trained.target_info(PROMPTS[0]).score)


def test_two_prompts_give_two_different_maps(hub, tmp_path):
    _, ckpt = _open_clip_model(tmp_path, "vitviz-tiny-clip-test")
    a = vitviz.analyze(_image(), model=f"open_clip:vitviz-tiny-clip-test/{ckpt}")
    maps = prompt_maps(a, PROMPTS)
    assert maps.shape == (2, 4, 4) and np.isfinite(maps).all()
    np.testing.assert_array_equal(maps[0], a.explain("relevance", target=PROMPTS[0]))
    assert np.abs(maps[0] - maps[1]).max() > 0.05 * np.abs(maps).max()
    ranks = [np.argsort(m.ravel()) for m in maps]
    assert not np.array_equal(ranks[0], ranks[1])
    assert a.target_info(PROMPTS[0]).score != a.target_info(PROMPTS[1]).score
    rollout = a.explain("grad_rollout", target=PROMPTS[0])  # the other ViT gradient method takes prompts too
    assert rollout.shape == (4, 4) and np.isfinite(rollout).all()


def test_text_target_errors_say_why(hub, tmp_path):
    _, ckpt = _open_clip_model(tmp_path, "vitviz-tiny-clip-test")
    a = vitviz.analyze(_image(), model=f"open_clip:vitviz-tiny-clip-test/{ckpt}")
    with pytest.raises(ValueError, match="no contrast"):
        a.explain("relevance", target="a dog", contrast=3)
    with pytest.raises(ValueError, match="non-empty prompt"):
        a.explain("relevance", target="  ")
    plain = vitviz.analyze(_image(), model="test_tiny_vit", weights="random")
    with pytest.raises(ValueError, match="needs a CLIP model"):
        plain.explain("relevance", target="a photo of a dog")
    with pytest.raises(ValueError, match="no classifier head"):  # "3" is a class index, not a prompt
        a.explain("relevance", target="3")


def test_cli_exports_relevance_for_a_prompt(hub, tmp_path, qapp):
    from PIL import Image

    from vitviz.cli.export import main

    _, ckpt = _open_clip_model(tmp_path, "vitviz-tiny-clip-test")
    image = tmp_path / "noise.png"
    _image().save(image)
    out = tmp_path / "dog.png"
    assert main([str(image), "--model", f"open_clip:vitviz-tiny-clip-test/{ckpt}", "--view", "attention,method",
                 "--method", "relevance", "--param", "target=a photo of a dog", "--out", str(out)]) == 0
    side = json.loads((tmp_path / "dog.png.json").read_text())
    panel = side["panels"][1]
    assert panel["method"] == "relevance" and panel["target_info"]["prompt"] == "a photo of a dog"
    assert "'a photo of a dog', cosine" in panel["title"]
    a = vitviz.analyze(image, model=f"open_clip:vitviz-tiny-clip-test/{ckpt}")
    assert panel["target_info"]["cosine"] == pytest.approx(a.target_info("a photo of a dog").score, abs=1e-6)
    assert Image.open(out).size[0] > 100
