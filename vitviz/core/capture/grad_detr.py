"""DETR's attention A and its gradient dy/dA for one detection's class logit y = pred_logits[q, c].

nn.MultiheadAttention's returned weights are not on the path to its output (no gradient reaches them,
ARCHITECTURE.md), and its softmax is inside one fused call. So in gradient mode a forward hook on each
attention module (encoder self-attention, decoder self-attention, decoder cross-attention) recomputes
the block explicitly from its own inputs: q, k, v from in_proj_weight, the key padding mask as -inf,
A = softmax(q k^T / sqrt(d)), A V, out_proj. The recompute is checked against the module's output and
returned in its place, so A is the tensor the rest of DETR uses. A tensor hook on each A stores its
gradient under (group, layer): keyed by layer, never by arrival (backward runs last layer first).
The no-grad capture (capture/detr.py) is unchanged.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .detr import _MHA_PARAMS, attention_modules
from ..analysis.rollout import TINY  # not from grad_vit: methods.targets imports this module, and
# grad_vit reaches the analyses, which import methods.targets (an import circle)

GROUPS = ("enc_attn", "dec_self", "dec_cross")


def explicit_mha(mha: nn.MultiheadAttention, query, key, value, key_padding_mask=None):
    """(out (Lq, n, E), A (n, heads, Lq, Lk)) for sequence-first inputs, rows = queries."""
    if not mha._qkv_same_embed_dim or mha.in_proj_weight is None or mha.batch_first:
        raise TypeError("DETR gradient capture needs sequence-first attention with one in_proj_weight")
    if mha.training and mha.dropout > 0:
        raise RuntimeError("attention dropout is active: put the model in eval mode")
    e, h = mha.embed_dim, mha.num_heads
    d = e // h
    w, b = mha.in_proj_weight, mha.in_proj_bias
    bias = (None, None, None) if b is None else (b[:e], b[e:2 * e], b[2 * e:])

    def heads(x, i):  # (L, n, E) -> (n, heads, L, d)
        y = F.linear(x, w[i * e:(i + 1) * e], bias[i])
        return y.reshape(x.shape[0], x.shape[1], h, d).permute(1, 2, 0, 3)

    q, k, v = heads(query, 0), heads(key, 1), heads(value, 2)
    logits = (q * d ** -0.5) @ k.transpose(-2, -1)  # (n, heads, Lq, Lk)
    if key_padding_mask is not None:
        logits = logits.masked_fill(key_padding_mask.bool()[:, None, None, :], float("-inf"))
    a = torch.softmax(logits, dim=-1)
    out = (a @ v).permute(2, 0, 1, 3).reshape(query.shape[0], query.shape[1], e)  # (Lq, n, E)
    return mha.out_proj(out), a


def weighted_mean(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Abar = mean over heads of max(A * dA, 0) (clamped per head, then averaged), batch item 0,
    float32, tiny values set to 0 (denormal chains are ~80x slower; ARCHITECTURE.md)."""
    abar = (a[0].detach().float() * g[0].float()).clamp_(min=0).mean(dim=0)
    return abar.masked_fill_(abar < TINY, 0.0)


@contextmanager
def live_detr_attention(model: nn.Module, attn: dict, abar: dict):
    """Within the block every DETR attention runs explicitly; attn[(group, layer)] = A on the graph.
    In the backward a tensor hook on each A stores abar[(group, layer)] = weighted_mean(A, dy/dA)
    (the gradient itself is not kept); cross-attention also keeps its per-head (A * dA)^+ under
    ("cross_heads", layer), (heads, Q, hw)."""
    handles = []

    def make_hook(group: str, layer: int):
        def on_grad(a, g):
            with torch.no_grad():
                abar[(group, layer)] = weighted_mean(a, g)
                if group == "dec_cross":
                    abar[("cross_heads", layer)] = (a[0].detach().float() * g[0].float()).clamp_(min=0)

        def hook(module, args, kwargs, output):
            bound = {**dict(zip(_MHA_PARAMS, args)), **kwargs}
            if bound.get("attn_mask") is not None:
                raise TypeError(f"{group} {layer}: an attention mask is not supported")
            out, a = explicit_mha(module, bound["query"], bound["key"], bound["value"],
                                  bound.get("key_padding_mask"))
            ref = output[0].detach()
            err = (out.detach() - ref).abs().max().item()
            tol = (1e-4 if ref.dtype == torch.float32 else 2e-2) * max(1.0, ref.abs().max().item())
            if not err <= tol:
                raise RuntimeError(f"{group} layer {layer}: the explicit attention differs from the "
                                   f"model's output by {err:.3g} (tolerance {tol:.3g})")
            attn[(group, layer)] = a
            if a.requires_grad:
                a.register_hook(lambda g: on_grad(a, g))
            return out, None
        return hook

    try:
        for group, mods in attention_modules(model).items():
            for i, mha in enumerate(mods):
                handles.append(mha.register_forward_hook(make_hook(group, i), with_kwargs=True))
        yield attn
    finally:
        for hd in handles:
            hd.remove()


@contextmanager
def backbone_without_grad(model: nn.Module):
    """Within the block the CNN backbone runs without autograd (no attention there, and its graph
    would cost most of the time and memory); its features enter the transformer as a leaf that
    requires grad, so every attention is on the graph even with frozen parameters."""
    def before(module, args):
        torch.set_grad_enabled(False)  # restored by `after`, or by the caller's enable_grad on error

    def after(module, args, output):
        torch.set_grad_enabled(True)
        feats, *rest = output
        return (feats.detach().requires_grad_(True), *rest)

    handles = [model.backbone.register_forward_pre_hook(before), model.backbone.register_forward_hook(after)]
    try:
        yield
    finally:
        for hd in handles:
            hd.remove()


def pixel_mask(analysis) -> np.ndarray:
    """(H, W) bool, True = padding: the mask the model got with `analysis.model_input` (padding is
    bottom/right of the resized image, whose size the grid's transform records)."""
    t = analysis.grid.transform
    _, hh, ww = analysis.model_input.shape
    rh, rw = int(round(t.orig_h * t.scale_y)), int(round(t.orig_w * t.scale_x))
    mask = np.ones((hh, ww), dtype=bool)
    mask[:rh, :rw] = False
    return mask


def detr_attention_grads(loaded, model_input: np.ndarray, mask: np.ndarray, query: int, cls: int):
    """(logits (Q, classes + 1), abar, feature mask (h, w)) for y = pred_logits[0, query, cls], batch
    item 0. abar: {"enc_attn": (L_enc, hw, hw), "dec_self": (L_dec, Q, Q), "dec_cross": (L_dec, Q, hw)}
    float32 mean_h max(A * dA, 0), and "cross_heads": (L_dec, heads, hw) max(A * dA, 0) of each
    cross-attention head for the target query."""
    from ..models.devices import autocast, run_with_oom_fallback

    def run(loaded):
        model = loaded.module
        attn, abar, feat = {}, {}, {}
        x = torch.from_numpy(np.ascontiguousarray(model_input)).unsqueeze(0).to(loaded.device)
        m = torch.from_numpy(np.ascontiguousarray(mask)).unsqueeze(0).to(loaded.device)
        keep_mask = model.transformer.register_forward_pre_hook(
            lambda mod, args: feat.__setitem__("mask", args[1][0].detach().cpu().numpy()))
        try:
            with (torch.enable_grad(), autocast(loaded), backbone_without_grad(model),
                  live_detr_attention(model, attn, abar)):
                logits = model(x, m)["pred_logits"]
                keys = sorted(attn, key=lambda k: (GROUPS.index(k[0]), k[1]))
                for (group, layer), a in attn.items():  # what no gradient reaches stays 0
                    abar[(group, layer)] = torch.zeros(a.shape[-2:], device=a.device)
                    if group == "dec_cross":
                        abar[("cross_heads", layer)] = torch.zeros(a.shape[1:], device=a.device)
                # drives the backward (the tensor hooks fill abar by layer); frees the graph
                torch.autograd.grad(logits[0, query, cls], [attn[k] for k in keys], allow_unused=True)
        finally:
            keep_mask.remove()
        out = {}
        for group in GROUPS:
            layers = sorted(k[1] for k in keys if k[0] == group)
            if layers != list(range(len(layers))):
                raise RuntimeError(f"DETR {group} layers ran as {layers}; cannot attribute their gradients")
            out[group] = torch.stack([abar[(group, i)] for i in layers]).cpu().numpy()
        out["cross_heads"] = torch.stack([abar[("cross_heads", i)][:, query] for i in range(len(out["dec_cross"]))]).cpu().numpy()
        return logits[0].detach().float().cpu().numpy(), out, feat["mask"]

    return run_with_oom_fallback(run, loaded)


def detection_target(analysis, target: int = -1):
    """The Target for object query `target` (-1: the most confident detection): its best real class
    (no-object excluded) and that class's logit."""
    from ..gradients import Target

    if isinstance(target, str):
        raise ValueError(f"a text target needs a CLIP model (a ViT), not a DETR model: its targets are "
                         f"object query indices (-1: the most confident detection), not {target!r}")
    q = int(np.argmax(analysis.best_scores())) if int(target) == -1 else int(target)
    if not 0 <= q < analysis.num_queries:
        raise ValueError(f"target {q} is not an object query of this model "
                         f"(0..{analysis.num_queries - 1}, -1 for the most confident detection)")
    probs = analysis.probabilities()[q, :-1]
    c = int(np.argmax(probs))
    name = analysis.class_name(c)
    return Target(q, name, float(analysis.logits[q, c]), float(probs[c]), cls=c)


def detr_products(analysis, target: int = -1, contrast: int = -1):
    """(abar {group: mean_h max(A * dA, 0)} for the detection's class logit (detr_attention_grads),
    Target): one backward per detection, cached on the analysis (vitviz.core.gradients)."""
    from ..gradients import cached_backward, model_of

    if isinstance(contrast, str) or int(contrast) != -1:
        raise ValueError("contrast is for classifiers: a DETR target is one detection's class logit")
    t = detection_target(analysis, target)

    def compute():
        _, abar, feat_mask = detr_attention_grads(model_of(analysis), analysis.model_input,
                                                      pixel_mask(analysis), t.index, t.cls)
        if not np.array_equal(feat_mask, analysis.pad_mask):
            raise RuntimeError("the gradient pass saw another padding mask than the analysis")
        return abar

    return cached_backward(analysis, ("detr", t.index, t.cls), compute), t


def detection_head_maps(analysis, target: int = -1) -> np.ndarray:
    """(L_dec, heads, h, w) float32 max(A * dA, 0) of each decoder cross-attention head for detection
    `target`'s class logit, NaN on padding: which heads matter for this detection (the heads x layers
    grid). Shares the cached backward with explain("relevance", target=...)."""
    abar, _ = detr_products(analysis, target)
    return analysis._masked(abar["cross_heads"])
