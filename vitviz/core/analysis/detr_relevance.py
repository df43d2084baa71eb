"""Relevance for DETR: Chefer, Gur, Wolf, "Generic Attention-model Explainability for Interpreting
Bi-Modal and Encoder-Decoder Transformers" (ICCV 2021), its encoder-decoder rules, eqs. 6-10.
Pure numpy, float64.

Tokens: i = the h*w feature cells (encoder), q = the object queries (decoder). Each attention's
Abar = mean over heads of max(A * dA, 0) (clamped per head, then averaged), dA = dy/dA for the
detection's class logit y. Start: R_ii = I, R_qq = I, R_qi = 0.
    encoder self-attention (eq. 6):          R_ii += Abar_ii R_ii           (the ViT rule)
    decoder self-attention (eqs. 6, 7):      R_qq += Abar_qq R_qq,  R_qi += Abar_qq R_qi
    decoder cross-attention (eqs. 8-10):     R_qi += Rbar_qq^T Abar_qi Rbar_ii
        with Rbar = rownorm(R - I) + I, a row of R - I that sums to 0 normalised to 0 (NaN -> 0);
    (eq. 11, R_qq += Abar_qi R_iq, adds 0: cells never attend to queries, so R_iq stays 0.)
The map of detection q is R_qi[q] over the feature grid. Padding cells are masked keys (A is exactly 0
in their columns), so they get no relevance; the caller shows NaN there.
NaN -> 0 is applied per row, before the product: the authors' code sets NaN entries of the product to 0,
where one zero row of R_qq - I (a query with no positive gradient-weighted attention) makes every entry
NaN and so drops that layer's whole cross-attention term.
"""
from __future__ import annotations

import numpy as np


def encoder_relevance(abar_enc: np.ndarray, start_layer: int = 0) -> np.ndarray:
    """(hw, hw) R_ii = (I + Abar_{L-1}) ... (I + Abar_start): the ViT rule over the encoder."""
    L, n = abar_enc.shape[0], abar_enc.shape[-1]
    if not 0 <= int(start_layer) < L:
        raise ValueError(f"start_layer {start_layer} is out of range (the encoder has {L} layers: 0..{L - 1})")
    r = np.eye(n)
    for a in abar_enc[int(start_layer):]:
        r = r + a.astype(np.float64) @ r
    return r


def normalised_residual(r: np.ndarray) -> np.ndarray:
    """Rbar = rownorm(R - I) + I; a row of R - I summing to 0 becomes 0 (eqs. 8-9, NaN -> 0)."""
    n = r.shape[0]
    res = r - np.eye(n)
    s = res.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(s != 0, res / s, 0.0)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0) + np.eye(n)


def detr_relevance(abar: dict, start_layer: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R_ii (hw, hw), R_qq (Q, Q), R_qi (Q, hw)) after the encoder and every decoder layer.

    abar: {"enc_attn": (L_enc, hw, hw), "dec_self": (L_dec, Q, Q), "dec_cross": (L_dec, Q, hw)}, each
    mean_h max(A * dA, 0) (vitviz.core.capture.grad_detr); start_layer: first encoder layer used."""
    r_ii = encoder_relevance(abar["enc_attn"], start_layer)
    q = abar["dec_self"].shape[-1]
    if abar["dec_cross"].shape[-2:] != (q, r_ii.shape[0]):
        raise ValueError(f"cross-attention {abar['dec_cross'].shape[-2:]} does not match {q} queries x "
                         f"{r_ii.shape[0]} cells")
    r_ii_bar = normalised_residual(r_ii)
    r_qq, r_qi = np.eye(q), np.zeros((q, r_ii.shape[0]))
    for a_qq, a_qi in zip(abar["dec_self"].astype(np.float64), abar["dec_cross"].astype(np.float64)):
        r_qq, r_qi = r_qq + a_qq @ r_qq, r_qi + a_qq @ r_qi
        r_qi = r_qi + normalised_residual(r_qq).T @ (a_qi @ r_ii_bar)
    return r_ii, r_qq, r_qi
