"""DETR core: official checkpoint layout, attention capture, pre/post-processing, loading errors.

Most tests use a tiny random DETR (ResNet-18, d=64, 2+2 layers) on 128x160 inputs; the full
ResNet-50 model is only built where official key names and shapes matter.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vitviz.core.capture.detr import capture_detr_attention, run_detr_with_capture
from vitviz.core.models.detr import DETR_PRESETS, DetrConfig, build_detr
from vitviz.core.models.detr_checkpoint import (
    CheckpointError,
    config_from_state_dict,
    load_detr_checkpoint,
    load_detr_state_dict,
)
from vitviz.core.models.detr_data import (
    COCO_CLASSES,
    boxes_to_pixels,
    detr_preprocess,
    detr_resize_hw,
    pad_images,
    postprocess,
)

TINY = DetrConfig(backbone="resnet18", d_model=64, nheads=4, enc_layers=2, dec_layers=2,
                  dim_feedforward=128, num_queries=10, num_classes=5)

OFFICIAL_KEYS = [
    "backbone.0.body.conv1.weight",
    "backbone.0.body.bn1.weight",
    "backbone.0.body.bn1.bias",
    "backbone.0.body.bn1.running_mean",
    "backbone.0.body.bn1.running_var",
    "backbone.0.body.layer1.0.conv1.weight",
    "backbone.0.body.layer1.0.downsample.0.weight",
    "backbone.0.body.layer1.0.downsample.1.running_var",
    "backbone.0.body.layer4.2.bn3.running_var",
    "input_proj.weight",
    "input_proj.bias",
    "query_embed.weight",
    "transformer.encoder.layers.0.self_attn.in_proj_weight",
    "transformer.encoder.layers.0.self_attn.in_proj_bias",
    "transformer.encoder.layers.5.self_attn.out_proj.weight",
    "transformer.encoder.layers.5.self_attn.out_proj.bias",
    "transformer.encoder.layers.3.linear1.weight",
    "transformer.encoder.layers.3.linear2.bias",
    "transformer.encoder.layers.3.norm1.weight",
    "transformer.encoder.layers.3.norm2.bias",
    "transformer.decoder.layers.0.self_attn.in_proj_weight",
    "transformer.decoder.layers.5.multihead_attn.in_proj_weight",
    "transformer.decoder.layers.5.multihead_attn.out_proj.bias",
    "transformer.decoder.layers.2.norm3.weight",
    "transformer.decoder.layers.2.linear2.weight",
    "transformer.decoder.norm.weight",
    "transformer.decoder.norm.bias",
    "class_embed.weight",
    "class_embed.bias",
    "bbox_embed.layers.0.weight",
    "bbox_embed.layers.1.bias",
    "bbox_embed.layers.2.bias",
]


def tiny_model(seed: int = 0, config: DetrConfig = TINY):
    torch.manual_seed(seed)
    model = build_detr(config)
    # heads well away from zero so a changed output would show
    for p in [*model.class_embed.parameters(), *model.bbox_embed.parameters()]:
        torch.nn.init.normal_(p, std=0.5)
    return model


def test_official_r50_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    model = build_detr("detr_resnet50")
    sd = model.state_dict()
    missing = [k for k in OFFICIAL_KEYS if k not in sd]
    assert not missing
    assert not [k for k in sd if "num_batches_tracked" in k]
    assert not [k for k in sd if ".fc." in k or "encoder.norm" in k]
    assert sd["query_embed.weight"].shape == (100, 256)
    assert sd["class_embed.weight"].shape == (92, 256)
    assert sd["input_proj.weight"].shape == (256, 2048, 1, 1)
    assert sd["bbox_embed.layers.2.weight"].shape == (4, 256)
    assert sd["transformer.encoder.layers.0.self_attn.in_proj_weight"].shape == (768, 256)
    assert config_from_state_dict(sd) == DETR_PRESETS["detr_resnet50"]
    assert config_from_state_dict(sd, dilation=True) == DETR_PRESETS["detr_resnet50_dc5"]

    path = tmp_path / "detr-r50.pth"
    torch.save({"model": sd}, path)
    torch.manual_seed(2)
    fresh = build_detr(DETR_PRESETS["detr_resnet50"])
    assert not torch.equal(fresh.query_embed.weight, model.query_embed.weight)
    load_detr_checkpoint(fresh, path)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_dc5_has_the_same_weights_and_half_the_stride():
    # DC5 only dilates layer4: same keys and shapes, a feature map twice as fine
    model = tiny_model(config=TINY.with_changes(backbone="resnet50", dilation=True))
    plain = tiny_model(config=TINY.with_changes(backbone="resnet50"))
    assert {k: v.shape for k, v in model.state_dict().items()} == \
           {k: v.shape for k, v in plain.state_dict().items()}
    r = run_detr_with_capture(model, torch.randn(3, 128, 160))
    assert r.feat_hw == (8, 10)
    with pytest.raises(ValueError):
        DetrConfig(backbone="resnet18", dilation=True)


def test_capture_leaves_outputs_unchanged_and_shapes():
    model = tiny_model()
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        ref = model(x)
    r = run_detr_with_capture(model, x)
    assert r.feat_hw == (4, 5) and r.input_hw == (128, 160)
    assert r.enc_attn.shape == (2, 4, 20, 20) and r.enc_attn.dtype == np.float16
    assert r.dec_self.shape == (2, 4, 10, 10)
    assert r.dec_cross.shape == (2, 4, 10, 20)
    assert r.logits.shape == (10, 6) and r.boxes.shape == (10, 4)
    assert r.layer_logits.shape == (2, 10, 6) and r.layer_boxes.shape == (2, 10, 4)
    assert not r.pad_mask.any() and r.valid_hw == (4, 5)
    assert r.logits.std() > 0.1
    np.testing.assert_allclose(r.logits, ref["pred_logits"][0].numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(r.boxes, ref["pred_boxes"][0].numpy(), atol=1e-6, rtol=1e-5)
    np.testing.assert_array_equal(r.layer_logits[-1], r.logits)
    # hooks are gone afterwards and the model runs as before
    mha = model.transformer.decoder.layers[0].multihead_attn
    assert not mha._forward_hooks and not mha._forward_pre_hooks
    with torch.no_grad():
        again = model(x)
    assert torch.equal(again["pred_logits"], ref["pred_logits"])


def test_captured_weights_reproduce_attention_output():
    model = tiny_model()
    x = torch.randn(3, 128, 160)
    mha = model.transformer.decoder.layers[1].multihead_attn
    seen = {}

    def spy(module, args, kwargs, output):
        seen["value"] = kwargs["value"] if "value" in kwargs else args[2]
        seen["out"] = output[0]

    handle = mha.register_forward_hook(spy, with_kwargs=True)
    try:
        r = run_detr_with_capture(model, x, attn_dtype=np.float32)
    finally:
        handle.remove()
    assert r.dec_cross.dtype == np.float32
    for a in (r.enc_attn, r.dec_self, r.dec_cross):
        np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
        assert (a >= 0).all()

    d, heads = 64, 4
    attn = torch.from_numpy(r.dec_cross[1])  # (heads, Q, HW)
    value = seen["value"][:, 0]  # (HW, d)
    with torch.no_grad():
        v = F.linear(value, mha.in_proj_weight[2 * d:], mha.in_proj_bias[2 * d:])  # (HW, d)
        v = v.reshape(-1, heads, d // heads).transpose(0, 1)  # (HW, d) -> (heads, HW, d/h)
        out = (attn @ v).transpose(0, 1).reshape(-1, d)  # (heads, Q, d/h) -> (Q, d)
        out = mha.out_proj(out)
    torch.testing.assert_close(out, seen["out"][:, 0], atol=1e-5, rtol=1e-4)


def test_padded_keys_get_zero_attention():
    model = tiny_model()
    image = torch.randn(3, 128, 160)
    batch, mask = pad_images([image], multiple=96)  # -> 192 x 192, features 6 x 6
    assert batch.shape == (1, 3, 192, 192) and mask[0, :128, :160].logical_not().all()
    assert mask[0, 128:].all() and mask[0, :, 160:].all()
    r = run_detr_with_capture(model, batch, mask)
    assert r.feat_hw == (6, 6) and r.valid_hw == (4, 5)
    expected = np.ones((6, 6), bool)
    expected[:4, :5] = False
    np.testing.assert_array_equal(r.pad_mask, expected)
    pad = r.pad_mask.reshape(-1)
    assert (r.enc_attn[..., pad] == 0).all()
    assert (r.dec_cross[..., pad] == 0).all()
    np.testing.assert_allclose(r.dec_cross[..., ~pad].astype(np.float32).sum(-1), 1.0, atol=2e-3)
    assert r.cross_map(1, 3).shape == (6, 6) and r.enc_map(0, 7, head=2).shape == (6, 6)


def test_capture_context_manager_records_each_forward():
    model = tiny_model()
    with torch.no_grad(), capture_detr_attention(model, np.float32) as store:
        model(torch.randn(1, 3, 128, 160))
        first = store.dec_cross
        model(torch.randn(1, 3, 96, 96))
    assert store.complete()
    assert first.shape == (2, 4, 10, 20) and store.dec_cross.shape == (2, 4, 10, 9)
    assert store.feat_mask.shape == (3, 3)


def test_boxes_to_pixels_hand_computed():
    boxes = np.array([[0.5, 0.5, 1.0, 1.0],
                      [0.25, 0.75, 0.5, 0.2],
                      [0.5, 0.1, 0.2, 0.2]], dtype=np.float32)
    # landscape 4:3
    np.testing.assert_allclose(boxes_to_pixels(boxes, 640, 480)[0], [0, 0, 640, 480])
    # very wide 5:1
    np.testing.assert_allclose(boxes_to_pixels(boxes, 1000, 200)[1], [0, 130, 500, 170], atol=1e-4)
    # portrait 1:3, torch input, batch axis kept
    px = boxes_to_pixels(torch.from_numpy(boxes)[None], 300, 900)
    assert px.shape == (1, 3, 4)
    np.testing.assert_allclose(px[0, 2], [120, 0, 180, 180], atol=1e-4)


def test_postprocess_drops_no_object_and_sorts():
    logits = torch.full((4, 6), -10.0)
    logits[0, 5] = 10.0  # confidently "no object"
    logits[1, 2] = 3.0  # class 2, p ~ 0.9999
    logits[2, 4] = 10.0  # class 4, p ~ 1
    logits[3, 1] = logits[3, 3] = 0.0  # torn between classes 1 and 3: p ~ 0.5
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 4)
    det = postprocess(logits[None], boxes[None], orig_size=(200, 400), threshold=0.7)
    assert det.query.tolist() == [2, 1]
    assert det.labels.tolist() == [4, 2]
    assert (np.diff(det.scores) <= 0).all() and det.scores[0] > 0.99
    np.testing.assert_allclose(det.boxes[0], [160, 80, 240, 120], atol=1e-4)
    assert len(postprocess(logits, boxes, (200, 400), threshold=0.9999999).query) == 1


def test_resize_rules_and_preprocess():
    assert detr_resize_hw(640, 480) == (800, 1066)
    assert detr_resize_hw(480, 640) == (1066, 800)
    assert detr_resize_hw(1000, 800) == (800, 1000)  # short side already 800
    assert detr_resize_hw(2000, 500) == (333, 1332)  # long side capped near 1333
    assert detr_resize_hw(500, 1500) == (1332, 444)
    assert max(detr_resize_hw(3000, 1000)) <= 1333

    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[:, :320] = 255
    tensor, (sx, sy), orig_hw = detr_preprocess(Image.fromarray(rgb))
    assert tensor.shape == (3, 800, 1066) and tensor.dtype == torch.float32
    assert orig_hw == (480, 640)
    assert sx == pytest.approx(1066 / 640) and sy == pytest.approx(800 / 480)
    # ImageNet normalisation: white -> (1 - mean) / std, black -> -mean / std
    assert tensor[0, 400, 10].item() == pytest.approx((1 - 0.485) / 0.229, abs=1e-4)
    assert tensor[2, 400, 1050].item() == pytest.approx(-0.406 / 0.225, abs=1e-4)

    small = detr_preprocess(Image.new("L", (160, 128)), short=128, max_size=400)
    assert small.tensor.shape == (3, 128, 160) and small.scale == (1.0, 1.0)


def test_coco_class_ids():
    assert len(COCO_CLASSES) == 91
    assert COCO_CLASSES[1] == "person" and COCO_CLASSES[18] == "dog"
    assert COCO_CLASSES[72] == "tv" and COCO_CLASSES[90] == "toothbrush"
    assert [i for i, n in enumerate(COCO_CLASSES) if n == "N/A"] == \
           [0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83]


def test_mismatched_checkpoint_lists_keys():
    model = tiny_model()
    sd = dict(tiny_model(seed=3).state_dict())
    load_detr_state_dict(model, sd)  # bare state dict
    assert torch.equal(model.query_embed.weight, sd["query_embed.weight"])

    bad = dict(sd)
    del bad["transformer.decoder.norm.weight"]
    bad["transformer.encoder.norm.weight"] = torch.ones(64)
    bad["class_embed.weight"] = torch.zeros(92, 64)
    with pytest.raises(CheckpointError) as info:
        load_detr_state_dict(model, {"model": bad})
    msg = str(info.value)
    assert "1 missing keys: transformer.decoder.norm.weight" in msg
    assert "1 unexpected keys: transformer.encoder.norm.weight" in msg
    assert "class_embed.weight checkpoint (92, 64) vs model (6, 64)" in msg
    assert info.value.missing == ["transformer.decoder.norm.weight"]
    assert isinstance(info.value, ValueError)

    # many missing keys: the first ten are named, the rest counted
    deeper = build_detr(TINY.with_changes(enc_layers=4))
    with pytest.raises(CheckpointError, match=r"missing keys: .*\(\d+ more\)"):
        load_detr_state_dict(deeper, sd)

    # official-style BatchNorm counters are tolerated, as DETR's own loader does
    with_counter = dict(sd, **{"backbone.0.body.bn1.num_batches_tracked": torch.tensor(0)})
    load_detr_state_dict(model, with_counter)


def test_unreadable_checkpoint_file(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_detr_checkpoint(tiny_model(), path)
