"""Hugging Face Swin, Swin V2 and DETR from a hub cache the test writes: mapped onto torchvision's
Swin and vitviz's DETR, they reproduce transformers' own attention, logits and boxes."""
from __future__ import annotations

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
import torch  # noqa: E402

import vitviz  # noqa: E402
from tests.hf_helpers import noise_image, save_all, write_snapshot  # noqa: E402
from tests.test_hf_models import _hf_reference, hub  # noqa: E402,F401 (fixture)


def _randomise(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return model


SWIN = {
    "microsoft/swin-tiny-test": (lambda: transformers.SwinConfig(
        image_size=64, patch_size=4, embed_dim=16, depths=[2, 2, 2], num_heads=[2, 2, 4], window_size=4,
        num_labels=3, initializer_range=0.3), "SwinForImageClassification"),
    "microsoft/swinv2-tiny-test": (lambda: transformers.Swinv2Config(
        image_size=64, patch_size=4, embed_dim=16, depths=[2, 2, 2], num_heads=[2, 2, 4], window_size=4,
        num_labels=3, initializer_range=0.3), "Swinv2ForImageClassification"),
}


@pytest.mark.parametrize("repo_id", list(SWIN))
def test_swin_matches_transformers(hub, repo_id):  # noqa: F811
    make, cls_name = SWIN[repo_id]
    torch.manual_seed(2)
    cls = getattr(transformers, cls_name)
    proc = transformers.ViTImageProcessor(size={"height": 64, "width": 64}, resample=3,
                                          image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    snap = write_snapshot(hub, repo_id, save_all(_randomise(cls(make())), proc))
    image = noise_image(90, 70)
    # transformers returns one attention per stage (its last block's); every block's own attention
    # is what each attention module returns beside its output
    hf_model = cls.from_pretrained(snap, attn_implementation="eager").eval()
    per_block = []
    for stage in getattr(hf_model, hf_model.base_model_prefix).encoder.layers:
        for block in stage.blocks:
            block.attention.register_forward_hook(lambda m, a, out: per_block.append(out[1]))
    proc_ = transformers.AutoImageProcessor.from_pretrained(snap)
    pixels = proc_(image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ref = hf_model(pixels, output_attentions=True)

    s = vitviz.analyze(image, model=repo_id, attention_dtype="float32")
    assert s.trained and s.version == (2 if "v2" in repo_id else 1)
    np.testing.assert_allclose(s.model_input, pixels[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(s.logits, ref.logits[0].numpy(), rtol=1e-4, atol=1e-4)
    assert len(s.attn) == len(per_block) == 6
    for i, want in enumerate(per_block):  # (windows, heads, N, N), windows in the same order
        np.testing.assert_allclose(s.attn[i], want.numpy(), atol=2e-5, err_msg=f"block {i}")
    for stage, want in enumerate(ref.attentions):
        np.testing.assert_allclose(s.attn[2 * stage + 1], want.numpy(), atol=2e-5)
    # the last stage's 4x4 map equals the window: both drop the shift there
    assert s.blocks[-1].layout.shift == (0, 0)
    assert s.class_names == ["LABEL_0", "LABEL_1", "LABEL_2"]


def test_detr_matches_transformers(hub):  # noqa: F811
    pytest.importorskip("timm")  # transformers builds DETR's ResNet with timm
    torch.manual_seed(3)
    config = transformers.DetrConfig(
        use_timm_backbone=True, backbone="resnet18", use_pretrained_backbone=False, d_model=32,
        encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=6, num_labels=4,
        id2label={0: "N/A", 1: "cat", 2: "dog", 3: "car"}, label2id={"N/A": 0, "cat": 1, "dog": 2, "car": 3})
    model = _randomise(transformers.DetrForObjectDetection(config))
    with torch.no_grad():  # frozen batch norm statistics that are not the identity
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn_like(buf) * 0.1)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand_like(buf) + 0.5)
    proc = transformers.DetrImageProcessor(size={"shortest_edge": 96, "longest_edge": 160})
    snap = write_snapshot(hub, "facebook/detr-tiny-test", save_all(model, proc))
    image = noise_image(130, 100)  # 96 x 124 input: the longest edge does not cap
    pixels, _ = _hf_reference(snap, transformers.DetrForObjectDetection, image)

    d = vitviz.analyze(image, model="facebook/detr-tiny-test", attention_dtype="float32")
    assert d.trained and d.class_names == ["N/A", "cat", "dog", "car"]
    # vitviz's DETR input is resized with PIL, as the official DETR evaluation does; transformers'
    # processor resizes the uint8 tensor: the same size, pixels within one grey level
    assert d.model_input.shape == tuple(pixels[0].shape)
    np.testing.assert_allclose(d.model_input, pixels[0].numpy(), atol=1.01 / 255 / 0.224)
    # the converted model computes what transformers' does on the same input
    hf = transformers.DetrForObjectDetection.from_pretrained(snap, attn_implementation="eager").eval()
    with torch.no_grad():
        ref = hf(torch.from_numpy(d.model_input)[None], output_attentions=True)
    np.testing.assert_allclose(d.logits, ref.logits[0].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(d.boxes, ref.pred_boxes[0].numpy(), atol=1e-5)
    for i in range(2):
        np.testing.assert_allclose(d.enc_attn[i], ref.encoder_attentions[i][0].numpy(), atol=2e-5)
        np.testing.assert_allclose(d.dec_self[i], ref.decoder_attentions[i][0].numpy(), atol=2e-5)
        np.testing.assert_allclose(d.dec_cross[i], ref.cross_attentions[i][0].numpy(), atol=2e-5)
