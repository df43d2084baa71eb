"""Tiny real torchvision Swin models (v1 and v2) for tests, and helpers to check captures against them.

At 72x72 input the tiny models' stages are 18, 9, 5 and 3 tokens across with 5x5 windows: stages 0-1
are padded (to 20, 10) and shifted by 2, stage 2 has its shift dropped (window = map), stage 3 is
padded to 5 and unshifted."""
from __future__ import annotations

import numpy as np

from vitviz.core.models.registry import ModelSpec, Preprocess, register

TINY_SWIN = ModelSpec("test_tiny_swin", "swin", "Tiny Swin (tests)", "tests.swin_helpers:build_tiny_swin",
                      Preprocess("center_crop", 72, resize=80), classes="none", group="Tests")
TINY_SWIN_V2 = ModelSpec("test_tiny_swin_v2", "swin", "Tiny Swin v2 (tests)", "tests.swin_helpers:build_tiny_swin",
                         Preprocess("center_crop", 72, resize=80), builder_kwargs={"v2": True},
                         classes="none", group="Tests")
register(TINY_SWIN)
register(TINY_SWIN_V2)


def build_tiny_swin(v2: bool = False, num_classes: int = 7):
    """A real torchvision SwinTransformer, tiny, with a head large enough that logits are not ~0."""
    import torch
    from torchvision.models import swin_transformer as st

    extra = dict(block=st.SwinTransformerBlockV2, downsample_layer=st.PatchMergingV2) if v2 else {}
    model = st.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2, 2, 2], num_heads=[2, 2, 4, 4],
                               window_size=[5, 5], stochastic_depth_prob=0.0, num_classes=num_classes, **extra)
    torch.nn.init.normal_(model.head.weight, std=0.2)
    return model


def analysis_of(model, height: int, width: int, dtype=np.float32, seed: int = 0):
    """A SwinAnalysis of a random (height, width) input tensor given straight to the model."""
    import torch
    from PIL import Image

    from vitviz.core.analysis.swin import SwinAnalysis
    from vitviz.core.capture.swin import forward_with_capture, stage0_grid
    from vitviz.core.geometry import InputTransform

    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed))
    cap = forward_with_capture(model, x, dtype)
    grid = stage0_grid(model, InputTransform.resize_exact(width, height, width, height))
    return SwinAnalysis(image=Image.new("RGB", (width, height)), grid=grid, model_name="tiny", weights="random",
                        trained=False, device="cpu", model_input=x[0].numpy(), blocks=cap.blocks, attn=cap.attn,
                        rel_bias=cap.rel_bias, logits=cap.logits, class_names=None, version=cap.version)


def recompute_output(module, x, attn, layout):
    """A ShiftedWindowAttention's output rebuilt from captured weights (windows, heads, N, N):
    weights @ v per window, proj, then every slot back to its image position through
    `window_token_coords` (reverse partition and roll), padding cropped. x: (1, H, W, C)."""
    import torch
    import torch.nn.functional as F

    from vitviz.core.analysis.windows import window_token_coords

    _, h, w, c = x.shape
    hp, wp = layout.padded
    xp = F.pad(x[0], (0, 0, 0, wp - w, 0, hp - h))  # (Hp, Wp, C), zeros like torchvision's padding
    v = F.linear(xp, module.qkv.weight[2 * c:], module.qkv.bias[2 * c:])  # (Hp, Wp, C)
    coords = torch.from_numpy(window_token_coords(layout))  # (windows, N, 2)
    heads = module.num_heads
    vw = v[coords[..., 0], coords[..., 1]].reshape(*coords.shape[:2], heads, c // heads)  # (windows, N, heads, d)
    out = torch.einsum("whqk,wkhd->wqhd", torch.as_tensor(attn, dtype=torch.float32), vw)
    out = module.proj(out.reshape(*coords.shape[:2], c))  # (windows, N, C)
    image = torch.empty(hp, wp, c)
    image[coords[..., 0], coords[..., 1]] = out
    return image[:h, :w]
