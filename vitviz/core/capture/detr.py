"""Capture DETR's attention: per layer and head, encoder self-attention over feature-map cells,
decoder self-attention among object queries, and decoder cross-attention from queries to cells.

The model's code is untouched: a forward pre-hook on each nn.MultiheadAttention asks for
per-head weights (need_weights=True, average_attn_weights=False) and a forward hook keeps
output[1]; a pre-hook on the transformer records the feature-map padding mask. Attention
outputs are the same maths either way (an explicit softmax instead of the fused kernel), so
logits and boxes agree with an uncaptured run to float rounding.

Rows of every attention matrix are queries and sum to 1; columns are keys. Feature cells are
flattened row-major: cell index = y * w + x for a feature map of (h, w) = feat_hw. Keys that
are padding (pad_mask True) get exactly zero weight.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from .host import attention_dtype, to_host

# nn.MultiheadAttention.forward's parameters, in order, for moving positionals to keywords
_MHA_PARAMS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask",
               "average_attn_weights", "is_causal")

@dataclass
class DetrCaptureResult:
    """One image's outputs and attention. L = layers, Q = queries, HW = h * w feature cells."""

    logits: np.ndarray  # (Q, classes + 1) float32, last column = no-object
    boxes: np.ndarray  # (Q, 4) float32 (cx, cy, w, h) relative to the unpadded image
    enc_attn: np.ndarray  # (L_enc, heads, HW, HW)
    dec_self: np.ndarray  # (L_dec, heads, Q, Q)
    dec_cross: np.ndarray  # (L_dec, heads, Q, HW)
    feat_hw: tuple[int, int]  # (h, w) of the feature map the transformer saw
    pad_mask: np.ndarray  # (h, w) bool, True = padding cell
    input_hw: tuple[int, int] = (0, 0)  # (H, W) of the (padded) tensor given to the model
    layer_logits: np.ndarray | None = None  # (L_dec, Q, classes + 1), last = logits
    layer_boxes: np.ndarray | None = None  # (L_dec, Q, 4), last = boxes

    @property
    def valid_hw(self) -> tuple[int, int]:
        """(h, w) of the unpadded part of the feature map (padding is bottom/right)."""
        valid = ~self.pad_mask
        return int(valid.any(axis=1).sum()), int(valid.any(axis=0).sum())

    def cross_map(self, layer: int, query: int, head: int | None = None) -> np.ndarray:
        """(h, w) float32 map of where `query` looks in decoder `layer`; mean over heads if
        `head` is None."""
        a = self.dec_cross[layer, :, query] if head is None else self.dec_cross[layer, head, query]
        a = a.astype(np.float32)
        return (a.mean(axis=0) if head is None else a).reshape(self.feat_hw)

    def enc_map(self, layer: int, cell: int, head: int | None = None) -> np.ndarray:
        """(h, w) float32 map of where feature cell `cell` (= y * w + x) attends in encoder
        `layer`; mean over heads if `head` is None."""
        a = self.enc_attn[layer, :, cell] if head is None else self.enc_attn[layer, head, cell]
        a = a.astype(np.float32)
        return (a.mean(axis=0) if head is None else a).reshape(self.feat_hw)


@dataclass
class DetrAttentionStore:
    """Filled by capture_detr_attention: the latest forward's attention for batch item `item`."""

    item: int = 0
    dtype: np.dtype = np.dtype(np.float16)
    enc_attn: np.ndarray | None = None  # (L_enc, heads, HW, HW)
    dec_self: np.ndarray | None = None  # (L_dec, heads, Q, Q)
    dec_cross: np.ndarray | None = None  # (L_dec, heads, Q, HW)
    feat_mask: np.ndarray | None = None  # (h, w) bool
    _filled: dict[str, set[int]] = field(default_factory=dict)

    def put(self, group: str, layer: int, n_layers: int, weights: Tensor) -> None:
        # (n, heads, Lq, Ls) -> one host copy of item's (heads, Lq, Ls) in the capture dtype
        w = to_host(weights[self.item], self.dtype)
        arr = getattr(self, group)
        if arr is None or arr.shape[1:] != w.shape or layer in self._filled.get(group, ()):
            # first layer of a new forward: allocate all layers at once, no later stacking copy
            arr = np.empty((n_layers, *w.shape), dtype=self.dtype)
            setattr(self, group, arr)
            self._filled[group] = set()
        arr[layer] = w
        self._filled[group].add(layer)

    def complete(self) -> bool:
        groups = ("enc_attn", "dec_self", "dec_cross")
        return all(getattr(self, g) is not None
                   and len(self._filled.get(g, ())) == len(getattr(self, g)) for g in groups)


def attention_modules(model: nn.Module) -> dict[str, list[nn.MultiheadAttention]]:
    """DETR's attention modules by group, in layer order."""
    try:
        enc = model.transformer.encoder.layers
        dec = model.transformer.decoder.layers
    except AttributeError:
        raise TypeError(f"{type(model).__name__} does not have DETR's transformer layout") from None
    return {
        "enc_attn": [layer.self_attn for layer in enc],
        "dec_self": [layer.self_attn for layer in dec],
        "dec_cross": [layer.multihead_attn for layer in dec],
    }


def _request_weights(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    if len(args) > 3:  # optional arguments given positionally: move them so they can be overridden
        kwargs.update(zip(_MHA_PARAMS[3:], args[3:]))
        args = args[:3]
    kwargs["need_weights"] = True
    kwargs["average_attn_weights"] = False
    return args, kwargs


@contextmanager
def capture_detr_attention(model: nn.Module, attn_dtype=np.float16, item: int = 0
                           ) -> Iterator[DetrAttentionStore]:
    """Within the block, each forward of `model` fills the yielded store with batch item
    `item`'s per-head attention of every layer and its feature-map padding mask."""
    store = DetrAttentionStore(item=item, dtype=attention_dtype(attn_dtype))
    handles = []

    def mask_hook(module, args):
        # Transformer.forward(src, mask, query_embed, pos_embed); mask: (n, h, w)
        store.feat_mask = args[1][item].detach().cpu().numpy().astype(bool)

    def keep_hook(group: str, layer: int, n_layers: int):
        def hook(module, args, output):
            store.put(group, layer, n_layers, output[1])
        return hook

    try:
        handles.append(model.transformer.register_forward_pre_hook(mask_hook))
        for group, mods in attention_modules(model).items():
            for i, mha in enumerate(mods):
                handles.append(mha.register_forward_pre_hook(_request_weights, with_kwargs=True))
                handles.append(mha.register_forward_hook(keep_hook(group, i, len(mods))))
        yield store
    finally:
        for h in handles:
            h.remove()


def _as_batch(tensor: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    if tensor.dim() == 3:
        tensor = tensor[None]
    if tensor.dim() != 4 or tensor.shape[0] != 1:
        raise ValueError(f"expected one image (3, H, W) or (1, 3, H, W), got {tuple(tensor.shape)}")
    if mask is not None:
        if mask.dim() == 2:
            mask = mask[None]
        if tuple(mask.shape) != (1, *tensor.shape[-2:]):
            raise ValueError(f"mask {tuple(mask.shape)} does not match image {tuple(tensor.shape)}")
        mask = mask.bool()
    return tensor, mask


def run_detr_with_capture(model: nn.Module, tensor: Tensor, mask: Tensor | None = None,
                          attn_dtype=np.float16) -> DetrCaptureResult:
    """Run DETR on one image and return its predictions with all attention maps.

    tensor: (3, H, W) or (1, 3, H, W), e.g. detr_preprocess(...).tensor, possibly padded
    (detr_data.pad_images); mask: (H, W) or (1, H, W) bool, True = padding pixel, or None.
    The model runs in eval mode without gradients (its mode is restored afterwards).
    """
    tensor, mask = _as_batch(tensor, mask)
    device = next(model.parameters()).device
    tensor = tensor.to(device)
    mask = None if mask is None else mask.to(device)
    was_training = model.training
    model.eval()
    try:
        # no_grad, not inference_mode: tensors seen by other hooks stay usable with autograd
        with torch.no_grad(), capture_detr_attention(model, attn_dtype) as store:
            out = model(tensor, mask, return_aux=True)
    finally:
        model.train(was_training)
    if not store.complete() or store.feat_mask is None:
        raise RuntimeError("some attention layers did not run; is this a vitviz DETR?")

    def host(x: Tensor) -> np.ndarray:
        return x.detach().to("cpu", torch.float32).numpy()

    layers = [*out.get("aux_outputs", []), out]
    return DetrCaptureResult(
        logits=host(out["pred_logits"][0]),
        boxes=host(out["pred_boxes"][0]),
        enc_attn=store.enc_attn,
        dec_self=store.dec_self,
        dec_cross=store.dec_cross,
        feat_hw=tuple(store.feat_mask.shape),
        pad_mask=store.feat_mask,
        input_hw=tuple(tensor.shape[-2:]),
        layer_logits=np.stack([host(o["pred_logits"][0]) for o in layers]),
        layer_boxes=np.stack([host(o["pred_boxes"][0]) for o in layers]),
    )
