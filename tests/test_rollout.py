"""Rollout: the vectorised version equals the straightforward loop; rows are distributions."""
import numpy as np
import pytest

from vitviz.core.analysis.rollout import rollout_matrix, rollout_reference


def random_attention(L=4, H=3, N=10, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(L, H, N, N)) * 2
    e = np.exp(logits)
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard", [0.0, 0.3, 0.9])
def test_matches_reference_loop(fusion, discard):
    attn = random_attention()
    fast = rollout_matrix(attn, fusion, discard)
    ref = rollout_reference(attn, fusion, discard)
    np.testing.assert_allclose(fast, ref, atol=1e-6)  # float32 vs the float64 loop
    np.testing.assert_allclose(fast.sum(-1), 1.0, atol=1e-5)  # rows renormalised (keepdim)


def test_uniform_attention_rolls_out_to_uniform_plus_identity_mix():
    N = 5
    attn = np.full((1, 2, N, N), 1 / N, np.float32)
    r = rollout_matrix(attn)
    np.testing.assert_allclose(r, 0.5 * np.eye(N) + 0.5 / N, atol=1e-7)


def test_rollout_rows_are_queries(vit_b16_analysis):
    a = vit_b16_analysis
    r = a.rollout_matrix()
    np.testing.assert_allclose(a.rollout(query=(3, 4)), r[1 + 3 * 14 + 4, 1:].reshape(14, 14), rtol=1e-6)
    np.testing.assert_allclose(a.rollout(query="cls"), r[0, 1:].reshape(14, 14), rtol=1e-6)
