"""Checkpoints in the layouts people have (timm/DINO/DeiT/MAE/DINOv2, torchvision, safetensors) load,
run exactly as their own code would, and give attention on the right token grid; bad files fail
with messages that say why, and never run code."""
from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import vitviz
from vitviz.core.capture.vit import capture_attention
from vitviz.core.models import known_checkpoints as known
from vitviz.core.models.checkpoint_layouts import DETR, TIMM_VIT, TORCHVISION_SWIN, TORCHVISION_VIT, \
    detect_layout, infer_spec
from vitviz.core.models.devices import autocast, resolve_precision, run_with_oom_fallback
from vitviz.core.models.loading import CheckpointError, LoadedModel, load_model, read_state_dict
from vitviz.core.models.registry import ModelSpec, Preprocess, get_spec, register
from vitviz.core.models.vit_tokens import resample_pos_embedding

# A 2-layer, 64-wide, 4-head ViT known by name, at 64 px (4x4 patches of 16) and at 96 px (6x6).
ARCH = dict(patch_size=16, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=256)
for _name, _size in (("test_token_vit", 64), ("test_token_vit_96", 96)):
    register(ModelSpec(_name, "vit", f"Token ViT {_size} (tests)", known.TOKEN_VIT_BUILDER,
                       Preprocess("center_crop", _size, resize=_size + 8), builder_kwargs=dict(ARCH),
                       classes="none", group="Tests"))


def timm_state(width=64, depth=2, patch=16, grid=4, dist=False, regs=0, reg_key="reg_token",
               classes=0, pos_prefix=None, layer_scale=False, fc_norm=False, seed=0) -> dict:
    """Random values under the real key names and shapes of timm's VisionTransformer (DINO, DeiT
    and MAE save the same). pos_prefix: prefix tokens with a position embedding (default all)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    prefix = 1 + int(dist) + regs
    sd = {"cls_token": r(1, 1, width),
          "pos_embed": r(1, (prefix if pos_prefix is None else pos_prefix) + grid * grid, width),
          "patch_embed.proj.weight": r(width, 3, patch, patch, scale=0.02), "patch_embed.proj.bias": r(width)}
    if dist:
        sd["dist_token"] = r(1, 1, width)
    if regs:
        sd[reg_key] = r(1, regs, width)
    for i in range(depth):
        b = f"blocks.{i}."
        sd.update({
            b + "norm1.weight": 1 + r(width), b + "norm1.bias": r(width),
            b + "attn.qkv.weight": r(3 * width, width, scale=0.3), b + "attn.qkv.bias": r(3 * width),
            b + "attn.proj.weight": r(width, width), b + "attn.proj.bias": r(width),
            b + "norm2.weight": 1 + r(width), b + "norm2.bias": r(width),
            b + "mlp.fc1.weight": r(4 * width, width), b + "mlp.fc1.bias": r(4 * width),
            b + "mlp.fc2.weight": r(width, 4 * width), b + "mlp.fc2.bias": r(width)})
        if layer_scale:
            sd[b + "ls1.gamma"], sd[b + "ls2.gamma"] = r(width, scale=1.0), r(width, scale=1.0)
    if fc_norm:  # MAE fine-tuned (global_pool=True): the final norm moves after mean pooling
        sd["fc_norm.weight"], sd["fc_norm.bias"] = 1 + r(width), r(width)
    else:
        sd["norm.weight"], sd["norm.bias"] = 1 + r(width), r(width)
    if classes:
        sd["head.weight"], sd["head.bias"] = r(classes, width), r(classes)
        if dist:
            sd["head_dist.weight"], sd["head_dist.bias"] = r(classes, width), r(classes)
    return sd


def reference_forward(sd: dict, x: torch.Tensor, heads: int) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """timm's / DINOv2's forward written out from their definitions: (attention per layer, logits)."""
    width, patch = sd["cls_token"].shape[-1], sd["patch_embed.proj.weight"].shape[-1]
    ln = lambda t, name: F.layer_norm(t, (width,), sd[name + ".weight"], sd[name + ".bias"], eps=1e-6)
    lin = lambda t, name: F.linear(t, sd[name + ".weight"], sd.get(name + ".bias"))
    n = x.shape[0]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    t = t.flatten(2).transpose(1, 2)
    cls = sd["cls_token"].expand(n, -1, -1)
    extra = [sd[k].expand(n, -1, -1) for k in ("dist_token", "reg_token", "register_tokens") if k in sd]
    pos = sd["pos_embed"]
    num_prefix = 1 + sum(e.shape[1] for e in extra)
    if pos.shape[1] == t.shape[1]:  # timm no_embed_class: add to patches, then concatenate
        h = torch.cat([cls, *extra, t + pos], 1)
    elif pos.shape[1] == t.shape[1] + 1 and extra:  # DINOv2 registers: inserted after adding
        y = torch.cat([cls, t], 1) + pos
        h = torch.cat([y[:, :1], *extra, y[:, 1:]], 1)
    else:
        h = torch.cat([cls, *extra, t], 1) + pos
    attns = []
    for i in range(1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))):
        b = f"blocks.{i}."
        q, k, v = lin(ln(h, b + "norm1"), b + "attn.qkv").reshape(n, -1, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * (width // heads) ** -0.5).softmax(-1)
        attns.append(a)
        o = lin((a @ v).transpose(1, 2).reshape(n, -1, width), b + "attn.proj")
        h = h + o * sd.get(b + "ls1.gamma", 1.0)
        m = lin(F.gelu(lin(ln(h, b + "norm2"), b + "mlp.fc1")), b + "mlp.fc2")
        h = h + m * sd.get(b + "ls2.gamma", 1.0)
    if "norm.weight" in sd:
        h = ln(h, "norm")
    if "head.weight" not in sd:
        return attns, None
    if "fc_norm.weight" in sd:
        return attns, lin(ln(h[:, num_prefix:].mean(1), "fc_norm"), "head")
    logits = lin(h[:, 0], "head")
    if "head_dist.weight" in sd:
        logits = (logits + lin(h[:, 1], "head_dist")) / 2
    return attns, logits


def assert_runs_like_reference(loaded: LoadedModel, sd: dict, heads: int) -> None:
    size = loaded.preprocess.size
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad(), capture_attention(loaded.module, np.float32) as store:
        logits = loaded.module(x)
        ref_attn, ref_logits = reference_forward(sd, x, heads)
    assert len(store) == len(ref_attn)
    for ours, ref in zip(store, ref_attn):
        np.testing.assert_allclose(ours, ref[0].numpy(), atol=2e-5)
    if ref_logits is None:
        assert logits is None
    else:
        torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), "RGB")


# --------------------------------------------------------------------------- real-shaped checkpoints


@pytest.fixture(scope="session")
def dino_vits8_file(tmp_path_factory) -> Path:
    """A DINO ViT-S/8-shaped backbone (21.7M random parameters, DINO's key names), written once."""
    path = tmp_path_factory.mktemp("dino") / "dino_deitsmall8_pretrain.pth"
    torch.save(timm_state(width=384, depth=12, patch=8, grid=28), path)
    return path


def test_dino_vits8_checkpoint_by_name_and_by_inference(dino_vits8_file, image):
    loaded = load_model("dino_vits8", dino_vits8_file)
    assert loaded.module.encoder.pos_embedding.shape == (1, 1 + 28 * 28, 384) and loaded.trained
    # analysed at 64 px to keep the test light (224 px is ~22 GFLOPs; see the slow test below):
    # the 28x28 position embeddings are resampled to 8x8
    small = replace(get_spec("dino_vits8"), preprocess=Preprocess("center_crop", 64, resize=72))
    a = vitviz.analyze(image, model=load_model(small, dino_vits8_file), attention_dtype="float32")
    assert a.attn.shape == (12, 6, 1 + 8 * 8, 1 + 8 * 8)
    assert a.num_prefix_tokens == 1 and a.grid.shape == (8, 8)
    assert a.logits is None and a.model_name == "dino_vits8"
    np.testing.assert_allclose(a.attn.sum(-1), 1.0, atol=1e-4)
    assert a.attention_map(11, "mean").shape == (8, 8) and a.rollout().shape == (8, 8)

    # no model named: the file's keys and shapes say DINO ViT-S/8, its name says which download
    spec, notes = infer_spec(read_state_dict(dino_vits8_file), str(dino_vits8_file))
    assert spec.name == "dino_vits8"
    assert "patch 8, 12 layers, width 384, 6 heads" in notes[0] and "no classification head" in notes[0]


@pytest.mark.slow
def test_dino_vits8_full_size(dino_vits8_file, image):
    a = vitviz.analyze(image, model="dino_vits8", weights=dino_vits8_file)
    assert a.attn.shape == (12, 6, 1 + 28 * 28, 1 + 28 * 28) and a.grid.shape == (28, 28)


def test_deit_tiny_distilled_checkpoint(tmp_path, image):
    sd = timm_state(width=192, depth=12, patch=16, grid=14, dist=True, classes=1000, seed=1)
    path = tmp_path / "deit_tiny_distilled_patch16_224-b40b3cf7.pth"
    torch.save({"model": sd}, path)  # DeiT's files wrap the state dict
    loaded = load_model("deit_tiny_distilled", path)
    assert loaded.module.num_prefix_tokens == 2
    assert len(loaded.class_names) == 1000 and loaded.class_names[0] == "tench"
    assert_runs_like_reference(loaded, sd, heads=3)  # at 224 px: 2 + 14 * 14 tokens
    # the whole pipeline, at 96 px to keep it light: 6x6 patches after the two prefix tokens
    small = replace(get_spec("deit_tiny_distilled"), preprocess=Preprocess("center_crop", 96, resize=110))
    a = vitviz.analyze(image, model=load_model(small, path))
    assert a.num_prefix_tokens == 2 and a.grid.shape == (6, 6) and a.attn.shape == (12, 3, 2 + 36, 2 + 36)
    assert a.logits.shape == (1000,) and a.top_predictions(1)[0].label in loaded.class_names


# --------------------------------------------------------------------------- every layout, tiny


@pytest.mark.parametrize("kind, kwargs, prefix", [
    ("dino", dict(), 1),
    ("deit distilled", dict(dist=True, classes=10), 2),
    ("timm registers (no_embed_class)", dict(regs=4, pos_prefix=0, classes=10), 5),
    ("dinov2 registers + layer scale", dict(regs=4, reg_key="register_tokens", pos_prefix=1, layer_scale=True), 5),
    ("mae fine-tuned (mean pooling, fc_norm)", dict(fc_norm=True, classes=10), 1),
])
def test_timm_layouts_run_like_their_own_code(tmp_path, image, kind, kwargs, prefix):
    sd = timm_state(**kwargs)
    path = tmp_path / "ckpt.pth"
    torch.save(sd, path)
    loaded = load_model("test_token_vit", path)
    assert loaded.module.num_prefix_tokens == prefix
    assert_runs_like_reference(loaded, sd, heads=4)
    a = vitviz.analyze(image, model=loaded)
    assert a.num_prefix_tokens == prefix and a.grid.shape == (4, 4)
    assert a.head_maps().shape == (2, 4, 4, 4)


def test_inferred_model_says_what_it_inferred(tmp_path, image):
    path = tmp_path / "my_vit.pth"
    torch.save(timm_state(width=128, dist=True, classes=10), path)  # a shape no spec has
    a = vitviz.analyze(image, weights=path)
    assert a.num_prefix_tokens == 2 and a.grid.shape == (4, 4) and a.logits.shape == (10,)
    assert a.num_heads == 2 and a.model_name == "my_vit"
    note = a.notes[0]
    assert note.startswith("Inferred from 'my_vit.pth' (timm-style ViT keys)")
    assert "patch 16, 2 layers, width 128, 2 heads (width / 64" in note
    assert "distillation token, 10-class head" in note and "input 64x64" in note

    # the shape of a known spec: its head count
    torch.save(timm_state(), tmp_path / "other.pth")
    assert "4 heads, as test_token_vit" in vitviz.analyze(image, weights=tmp_path / "other.pth").notes[0]


def test_training_only_keys_are_dropped_with_a_note(tmp_path):
    sd = timm_state()
    teacher = {f"backbone.{k}": v for k, v in sd.items()}  # DINO training checkpoint: backbone + head
    teacher.update({"head.mlp.0.weight": torch.zeros(8, 64), "head.last_layer.weight_g": torch.ones(1, 8)})
    torch.save({"teacher": teacher, "student": teacher, "epoch": 3}, tmp_path / "checkpoint.pth")
    loaded = load_model("test_token_vit", tmp_path / "checkpoint.pth")
    assert any("backbone" in n and "2 training-only keys" in n for n in loaded.notes)
    assert_runs_like_reference(loaded, sd, heads=4)

    mae = dict(sd, mask_token=torch.zeros(1, 1, 64), **{"decoder_embed.weight": torch.zeros(32, 64),
                                                         "decoder_pos_embed": torch.zeros(1, 17, 32)})
    torch.save({"model": mae}, tmp_path / "mae_visualize.pth")
    loaded = load_model("test_token_vit", tmp_path / "mae_visualize.pth")
    assert any("Left out 3 training-only keys" in n for n in loaded.notes)


def test_safetensors_checkpoint(tmp_path):
    from safetensors.torch import save_file

    sd = timm_state(regs=2, pos_prefix=0)
    save_file(sd, str(tmp_path / "vit.safetensors"))
    loaded = load_model(None, tmp_path / "vit.safetensors")
    assert loaded.module.num_prefix_tokens == 3 and loaded.weights_label == "vit.safetensors"
    assert_runs_like_reference(loaded, sd, heads=4)  # inferred: the shape of test_token_vit


def test_torchvision_layout_loads_exactly_and_is_inferred(tmp_path, image):
    from tests.helpers import build_tiny_vit

    torch.manual_seed(3)
    original = build_tiny_vit().eval()  # patch 16, 3 layers, 4 heads, width 64, 64 px
    path = tmp_path / "tv_tiny.pth"
    torch.save(original.state_dict(), path)
    x = torch.randn(1, 3, 64, 64)
    loaded = load_model(None, path)  # TokenViT with torchvision's keys
    assert "3 layers, width 64, 1 head" in loaded.notes[0] and loaded.preprocess.size == 64
    named = load_model("test_tiny_vit", path)  # named: the real class, 4 heads
    with torch.no_grad():
        torch.testing.assert_close(named.module(x), original(x))
    with torch.no_grad(), capture_attention(original, np.float32) as ref:
        original(x)
    # the same file into a TokenViT spec of the same shape gives the same model
    spec = ModelSpec("tv_as_token", "vit", "tv as TokenViT", known.TOKEN_VIT_BUILDER,
                     Preprocess("center_crop", 64, resize=72), builder_kwargs=dict(ARCH, num_layers=3, mlp_dim=128))
    as_token = load_model(spec, path)
    with torch.no_grad(), capture_attention(as_token.module, np.float32) as ours:
        torch.testing.assert_close(as_token.module(x), original(x))
    np.testing.assert_allclose(np.stack(ours), np.stack(ref), atol=1e-6)


def test_architectures_inferred_from_shapes_alone():
    """Shapes on the meta device: no memory, no weights, the same keys as the real files."""
    import torchvision.models as tvm

    with torch.device("meta"):
        vit_b_16, swin_t, swin_v2_s = tvm.vit_b_16().state_dict(), tvm.swin_t().state_dict(), tvm.swin_v2_s().state_dict()
        vit_h_14_518 = tvm.vit_h_14(image_size=518).state_dict()
    assert detect_layout(vit_b_16) == TORCHVISION_VIT and detect_layout(swin_t) == TORCHVISION_SWIN
    assert infer_spec(vit_b_16, "a.pth")[0].name == "vit_b_16"
    spec, _ = infer_spec(vit_h_14_518, "swag.pth")
    assert spec.name == "vit_h_14" and spec.preprocess.size == 518
    assert infer_spec(swin_t, "s.pth")[0].name == "swin_t"
    assert infer_spec(swin_v2_s, "s.pth")[0].name == "swin_v2_s"
    # DeiT-small- and MAE-shaped timm files: heads from the known specs of that shape
    spec, notes = infer_spec(timm_state(width=384, depth=12, grid=14).copy(), "finetuned.pth")
    assert spec.builder_kwargs["num_heads"] == 6 and "6 heads, as" in notes[0]


def test_detr_layout_is_detected_and_named():
    from vitviz.core.models.detr import build_detr

    with torch.device("meta"):
        sd = build_detr("detr_resnet50").state_dict()
    assert detect_layout(sd) == DETR and detect_layout(timm_state()) == TIMM_VIT
    pytest.importorskip("vitviz.core.models.detr_specs")  # the DETR models' registry entries
    spec, notes = infer_spec(sd, "detr-r50-e632da11.pth")
    assert spec.name == "detr_resnet50" and "not DC5" in notes[0]
    assert infer_spec(sd, "detr-r50-dc5-f0fb7ef5.pth")[0].name == "detr_resnet50_dc5"  # only the name says


# --------------------------------------------------------------------------- position embeddings


def test_position_embeddings_are_resampled_to_the_input_grid(tmp_path, image):
    sd = timm_state(dist=True, classes=3)  # 4x4 grid at 64 px
    torch.save(sd, tmp_path / "p.pth")
    loaded = load_model("test_token_vit_96", tmp_path / "p.pth")  # 96 px: 6x6
    assert any("resampled (bicubic) from the checkpoint's 4x4 patch grid to 6x6" in n for n in loaded.notes)
    pos = loaded.module.encoder.pos_embedding
    assert pos.shape == (1, 2 + 36, 64)
    torch.testing.assert_close(pos[:, :2], sd["pos_embed"][:, :2])  # prefix tokens kept as they were
    a = vitviz.analyze(image, model=loaded)
    assert a.grid.shape == (6, 6) and a.num_prefix_tokens == 2

    # a smooth field stays that field; a constant stays constant
    ramp = torch.linspace(0, 1, 4).repeat(4)[None, :, None].expand(1, 16, 8)
    out = resample_pos_embedding(torch.cat([torch.full((1, 1, 8), 7.0), ramp], 1), 1, (4, 4), (8, 8))
    assert out.shape == (1, 65, 8) and torch.all(out[0, 0] == 7.0)
    cols = out[0, 1:, 0].reshape(8, 8)
    assert torch.allclose(cols, cols[:1].expand(8, 8)) and torch.all(cols[0].diff() >= 0)
    const = resample_pos_embedding(torch.ones(1, 17, 4), 1, (4, 4), (3, 5))
    torch.testing.assert_close(const, torch.ones(1, 16, 4))


def test_token_vit_accepts_other_input_sizes(tmp_path):
    torch.save(timm_state(), tmp_path / "p.pth")
    model = load_model("test_token_vit", tmp_path / "p.pth").module
    with torch.no_grad(), capture_attention(model, np.float32) as store:
        model(torch.randn(1, 3, 80, 48))  # 5x3 patches
    assert store[0].shape == (4, 1 + 15, 1 + 15)


# --------------------------------------------------------------------------- bad files


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, image):
    target = tmp_path / "pwned.txt"

    class Evil:
        def __init__(self, path):
            self.path = path

        def __reduce__(self):  # unpickling would call open(path, "w"): creates the file
            return open, (str(self.path), "w")

    # control: a plain unpickler really would run it
    control = tmp_path / "control.txt"
    pickle.loads(pickle.dumps(Evil(control)))
    assert control.exists()

    zipped, legacy = tmp_path / "evil.pth", tmp_path / "legacy.pth"
    torch.save({"model": {"w": torch.zeros(2), "x": Evil(target)}}, zipped)
    torch.save({"w": torch.zeros(2), "x": Evil(target)}, legacy, _use_new_zipfile_serialization=False)
    for path in (zipped, legacy):
        with pytest.raises(CheckpointError, match="never unpickles arbitrary objects") as info:
            read_state_dict(path)
        assert "(it asks to run io.open)" in str(info.value) and "nothing in it was run" in str(info.value)
        with pytest.raises(CheckpointError):
            vitviz.analyze(image, weights=path)
        with pytest.raises(CheckpointError):
            load_model("test_tiny_vit", path)
    assert not target.exists()


def test_damaged_and_foreign_files(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(timm_state(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    png = tmp_path / "image.safetensors"
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    for path in (truncated, text, png):
        with pytest.raises(CheckpointError, match=f"Cannot read checkpoint '{path.name}': the file is damaged"):
            load_model("test_token_vit", path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model("test_token_vit", tmp_path / "missing.pth")
    no_tensors = tmp_path / "epoch.pth"
    torch.save({"epoch": 3, "lr": 0.1}, no_tensors)
    with pytest.raises(CheckpointError, match="holds no tensors"):
        load_model(None, no_tensors)
    unknown = tmp_path / "unknown.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, unknown)
    with pytest.raises(CheckpointError, match="Cannot tell which model 'unknown.pth' is for"):
        load_model(None, unknown)


def test_wrong_architecture_lists_the_keys(tmp_path):
    deeper = tmp_path / "deeper.pth"
    torch.save(timm_state(depth=3), deeper)  # one block more than test_token_vit
    with pytest.raises(CheckpointError) as info:
        load_model("test_token_vit", deeper)
    err = info.value
    assert err.unexpected and all(k.startswith("encoder.layers.encoder_layer_2.") for k in err.unexpected)
    assert "unexpected keys (12)" in str(err) and "timm-style ViT keys" in str(err)

    narrow = tmp_path / "narrow.pth"
    torch.save(timm_state(width=32), narrow)  # same keys, other shapes
    with pytest.raises(CheckpointError, match="shape mismatches") as info:
        load_model("test_token_vit", narrow)
    assert ("conv_proj.weight", (32, 3, 16, 16), (64, 3, 16, 16)) in info.value.mismatched

    swin = tmp_path / "swin.pth"  # the first keys of a torchvision swin_t
    torch.save({"features.0.0.weight": torch.zeros(96, 3, 4, 4), "features.0.0.bias": torch.zeros(96),
                "features.1.0.attn.relative_position_bias_table": torch.zeros(169, 3)}, swin)
    with pytest.raises(CheckpointError, match="torchvision Swin keys; the model is Token ViT 64") as info:
        load_model("test_token_vit", swin)
    assert "class_token" in info.value.missing


# --------------------------------------------------------------------------- devices


def test_oom_falls_back_to_cpu_with_a_note():
    loaded = load_model("test_tiny_vit", "random")
    loaded.device, loaded.precision = "cuda", "bfloat16"  # pretend it sat on a GPU
    devices_seen = []

    def forward(lm):
        devices_seen.append(lm.device)
        if lm.device == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        with torch.no_grad():
            return lm.module(torch.zeros(1, 3, 64, 64, device=lm.device))

    out = run_with_oom_fallback(forward, loaded)
    assert out.shape == (1, 7) and devices_seen == ["cuda", "cpu"]
    assert loaded.device == "cpu" and loaded.precision == "float32"
    assert any("ran out of memory" in n for n in loaded.notes)

    with pytest.raises(ValueError):  # other errors are not swallowed
        run_with_oom_fallback(lambda lm: (_ for _ in ()).throw(ValueError("bug")), loaded)
    with pytest.raises(torch.cuda.OutOfMemoryError):  # already on the CPU: nowhere to go
        run_with_oom_fallback(lambda lm: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("x")), loaded)


@pytest.mark.parametrize("name,module,function", [
    ("demo_swin", "vitviz.core.capture.swin", "forward_with_capture"),
    ("demo_detr", "vitviz.core.capture.detr", "run_detr_with_capture"),
    ("demo_vit", "vitviz.core.capture.vit", "capture_attention"),
])
def test_every_family_falls_back_to_cpu_when_the_gpu_runs_out(monkeypatch, name, module, function):
    """analyze() on a model whose device ran out of memory reruns on the CPU, with a note, and
    gives the same result as a CPU run. The "GPU" is torch's meta device (no GPU here): the
    capture function raises CUDA's OOM error while the model is said to be there."""
    import importlib

    runner = importlib.import_module(module)
    real = getattr(runner, function)
    expected = vitviz.analyze(Image.new("RGB", (128, 128), (40, 90, 160)), model=load_model(name, "random"))
    loaded = load_model(name, "random")
    calls = []

    def on_device(*args, **kwargs):
        calls.append(loaded.device)
        if loaded.device != "cpu":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, function, on_device)
    loaded.device = "meta"
    analysis = vitviz.analyze(Image.new("RGB", (128, 128), (40, 90, 160)), model=loaded)
    assert calls == ["meta", "cpu"]
    assert analysis.device == "cpu" and loaded.device == "cpu"
    assert any("ran out of memory" in n for n in analysis.notes)
    assert np.allclose(analysis.logits, expected.logits)


def test_reduced_precision_is_gpu_only():
    assert resolve_precision("bf16", "cuda") == ("bfloat16", None)
    assert resolve_precision(None, "cpu") == ("float32", None)
    name, note = resolve_precision("fp16", "cpu")
    assert name == "float32" and "GPUs only" in note
    with pytest.raises(ValueError):
        resolve_precision("int8", "cpu")
    loaded = load_model("test_tiny_vit", "random", precision="bfloat16")
    assert loaded.precision == "float32" and any("GPUs only" in n for n in loaded.notes)
    with autocast(loaded), torch.no_grad():
        assert loaded.module(torch.zeros(1, 3, 64, 64)).dtype == torch.float32


def test_batchnorm_model_loads_its_own_state_strictly_with_or_without_counters():
    """A model with real BatchNorm (num_batches_tracked buffers) loads its own state dict, a state
    dict without the counters, and a counters-only extra is ignored for a model that has none;
    any other missing key still fails."""
    import torch
    from torch import nn

    from vitviz.core.models.loading import CheckpointError, load_state_strict

    def net(norm):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), norm(4))

    trained = net(nn.BatchNorm2d)
    trained.train()(torch.randn(2, 3, 8, 8))  # moves the running statistics and the counter
    state = trained.state_dict()
    assert int(state["1.num_batches_tracked"]) == 1

    fresh = net(nn.BatchNorm2d)
    load_state_strict(fresh, state, "own.pt")
    assert torch.equal(fresh[1].running_mean, trained[1].running_mean)
    assert int(fresh[1].num_batches_tracked) == 1

    without = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    load_state_strict(net(nn.BatchNorm2d), without, "no_counters.pt")

    from torchvision.ops.misc import FrozenBatchNorm2d

    frozen = net(FrozenBatchNorm2d)
    load_state_strict(frozen, state, "frozen.pt")  # counter ignored, statistics used
    assert torch.equal(frozen[1].running_var, trained[1].running_var)

    broken = {k: v for k, v in state.items() if k != "1.running_mean"}
    with pytest.raises(CheckpointError, match="running_mean"):
        load_state_strict(net(nn.BatchNorm2d), broken, "broken.pt")
