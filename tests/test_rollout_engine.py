"""RolloutEngine: every row, matrix and setting equals the float64 loop (ties included), from float16
and float32, with or without background preparation; the vit-explain peer of the benchmark too."""
import numpy as np
import pytest

from vitviz.core.analysis.rollout import RolloutEngine, rollout_reference


def attention(L=4, H=3, N=17, seed=0, power=6, dtype=np.float32):
    a = np.random.default_rng(seed).random((L, H, N, N)) ** power
    return (a / a.sum(-1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.9, 0.99])
def test_rows_and_matrix_equal_the_reference(dtype, fusion, ratio):
    a = attention(dtype=dtype)
    ref = rollout_reference(a.astype(np.float32), fusion, ratio)
    e = RolloutEngine(a)
    for q in range(a.shape[-1]):
        np.testing.assert_allclose(e.row(q, fusion, ratio), ref[q], atol=1e-6)
    np.testing.assert_allclose(e.matrix(fusion, ratio), ref, atol=1e-6)
    np.testing.assert_allclose(e.matrix(fusion, ratio).sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.7, 0.9])
def test_ties_are_discarded_as_the_stable_reference_does(fusion, ratio):
    a = np.round(attention(L=3, H=2, N=15, power=1) * 32) / 32 + 1 / 64  # many equal weights
    a = (a / a.sum(-1, keepdims=True)).astype(np.float32)
    a = (np.round(a * 64) / 64).astype(np.float32)
    np.testing.assert_allclose(RolloutEngine(a).matrix(fusion, ratio), rollout_reference(a, fusion, ratio),
                               atol=1e-6)


def test_background_preparation_then_every_setting():
    a = attention(L=3, N=11, dtype=np.float16)
    e = RolloutEngine(a)
    e.prepare_in_background(first="max")
    assert e.wait(60)
    assert all(e.prepared(f, 0.9) for f in ("mean", "max", "min"))
    for f in ("mean", "max", "min"):
        np.testing.assert_allclose(e.row(0, f, 0.5), rollout_reference(a.astype(np.float32), f, 0.5)[0], atol=1e-6)


def test_bad_settings_say_what_is_accepted():
    e = RolloutEngine(attention(L=1, N=5))
    with pytest.raises(ValueError, match="discard_ratio"):
        e.row(0, "mean", 1.0)
    with pytest.raises(ValueError, match="head_fusion"):
        e.row(0, "median", 0.0)
    with pytest.raises(IndexError):
        e.row(5)
    with pytest.raises(ValueError, match="layers, heads"):
        RolloutEngine(np.zeros((3, 5, 5)))


def test_tiny_weights_do_not_change_the_result():
    a = attention(L=6, N=9)
    a[:, :, :, 3] = 1e-41  # denormal in float32
    ref = rollout_reference(a, "mean", 0.0)
    np.testing.assert_allclose(RolloutEngine(a).matrix(), ref, atol=1e-6)


def test_vit_explain_peer():
    torch = pytest.importorskip("torch")
    from vitviz.bench import vit_explain

    a = attention(L=3, H=2, N=17)  # 16 patches: a 4 x 4 map, as the script reshapes
    layers = [torch.from_numpy(a[i][None].copy()) for i in range(3)]
    fixed = vit_explain.rollout_result(layers, 0.0, "mean", row_normalise=True)[0].double().numpy()
    np.testing.assert_allclose(fixed, rollout_reference(a, "mean", 0.0), atol=1e-6)
    mask = vit_explain.rollout([layer.clone() for layer in layers], 0.5, "max")
    assert mask.shape == (4, 4) and mask.max() == pytest.approx(1.0)
