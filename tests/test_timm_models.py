"""timm ViTs as `timm:NAME`: weights from timm's repository in a hub cache the test writes; logits
equal timm's and attention equals timm's attention computed from its own q and k, with timm's
fused attention on and off (its fused path returns no weights, so hooking timm would capture
nothing; vitviz runs torchvision's attention instead)."""
from __future__ import annotations

import numpy as np
import pytest

timm = pytest.importorskip("timm")
import torch  # noqa: E402

import vitviz  # noqa: E402
from tests.hf_helpers import noise_image, write_snapshot  # noqa: E402
from tests.test_hf_models import hub  # noqa: E402,F401 (fixture)

NAME = "vit_tiny_patch16_224"


def _write_timm(hub, name=NAME, **kw):  # noqa: F811
    from timm.models._hub import save_for_hf

    torch.manual_seed(4)
    model = timm.create_model(name, pretrained=False, **kw).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("bias") or "norm" in pname:
                p.add_(torch.randn_like(p) * 0.2)
            elif "qkv.weight" in pname:
                p.mul_(4.0)  # sharper attention than the init's near-uniform maps
    repo = timm.models.get_pretrained_cfg(name).hf_hub_id
    write_snapshot(hub, repo, lambda d: save_for_hf(model, d))
    return model


def _timm_attention(model, x):
    """Per block softmax(q k^T * scale) from timm's own qkv projection, batch item 0."""
    maps = []

    def hook(attn):
        def run(module, args, out):
            b, n, _ = out.shape
            qkv = out.reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
            q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
            maps.append(((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1)[0])
        return run

    handles = [blk.attn.qkv.register_forward_hook(hook(blk.attn)) for blk in model.blocks]
    with torch.no_grad():
        logits = model(x)
    for h in handles:
        h.remove()
    return logits[0], maps


@pytest.mark.parametrize("fused", [True, False])
def test_timm_vit_matches_timm(hub, fused):  # noqa: F811
    model = _write_timm(hub)
    for blk in model.blocks:
        blk.attn.fused_attn = fused
    image = noise_image(300, 260)
    a = vitviz.analyze(image, model=f"timm:{NAME}", attention_dtype="float32")
    assert a.trained and a.weights == "pretrained" and a.attn.shape == (12, 3, 197, 197)
    x = torch.from_numpy(a.model_input)[None]
    logits, maps = _timm_attention(model, x)
    np.testing.assert_allclose(a.logits, logits.numpy(), rtol=1e-4, atol=2e-4)
    for layer, want in enumerate(maps):
        np.testing.assert_allclose(a.attn[layer], want.numpy(), atol=2e-5, err_msg=f"layer {layer}")
    assert len(a.class_names) == 1000


def test_timm_preprocessing_is_timms(hub):  # noqa: F811
    model = _write_timm(hub)
    cfg = timm.data.resolve_data_config(model=model)
    transform = timm.data.create_transform(**cfg)  # PIL resize; vitviz resizes the uint8 tensor
    image = noise_image(300, 260)
    a = vitviz.analyze(image, model=f"timm:{NAME}")
    want = transform(image).numpy()
    assert a.model_input.shape == want.shape
    assert np.abs(a.model_input - want).mean() < 0.01 and np.abs(a.model_input - want).max() < 0.1


def test_timm_checkpoint_file_and_missing_weights(hub, tmp_path):  # noqa: F811
    from vitviz.core.models.loading import load_model

    offline = load_model(f"timm:{NAME}", "pretrained")  # nothing in the cache
    assert not offline.trained and "not in the hub cache" in " ".join(offline.notes)
    model = timm.create_model(NAME, pretrained=False)
    torch.save(model.state_dict(), tmp_path / "mine.pth")
    loaded = load_model(f"timm:{NAME}", tmp_path / "mine.pth")
    assert loaded.trained


def test_unsupported_timm_model_is_named(hub):  # noqa: F811
    with pytest.raises(KeyError, match="cannot be opened by vitviz"):
        vitviz.core.models.registry.get_spec("timm:eva02_tiny_patch14_224")
