"""The ViT paper's, DINO's and the register paper's analyses against computations written here from
their equations: hand-built attention with known answers, then random models with class,
distillation and register tokens and a position embedding resampled to another input size."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vitviz
from vitviz.core.analysis.dino_masks import head_masks
from vitviz.core.analysis.distance import mean_attention_distance
from vitviz.core.analysis.entropy import attention_entropy
from vitviz.core.analysis.over_images import measure_many
from vitviz.core.analysis.tables import get_measure, measures
from vitviz.core.geometry import InputTransform, TokenGrid
from vitviz.core.models.registry import ModelSpec, Preprocess, register

# TokenViT stored for a 4 x 4 grid (32 px, patch 8) and run at 48 px: a 6 x 6 grid, so the position
# embedding is resampled; class + distillation + 2 register tokens in front of the patches.
REG_VIT = ModelSpec("test_reg_vit", "vit", "Register ViT (tests)", "tests.test_analyses:build_reg_vit",
                    Preprocess("center_crop", 48, resize=52), classes="none", group="Tests")
register(REG_VIT)


def build_reg_vit():
    from vitviz.core.models.vit_tokens import TokenViT

    torch.manual_seed(3)
    model = TokenViT(image_size=32, patch_size=8, num_layers=3, num_heads=4, hidden_dim=32, mlp_dim=64,
                     num_classes=5, dist_token=True, reg_tokens=2)
    with torch.no_grad():
        for t in (model.class_token, model.dist_token, model.reg_tokens):
            t.normal_()
        for layer in model.encoder.layers:
            layer.self_attention.in_proj_weight.mul_(6.0)  # sharper than the near-uniform init
    return model


def grid(rows, cols, cell=16):
    return TokenGrid(rows, cols, cell, cell, InputTransform.resize_exact(cols * cell, rows * cell,
                                                                         cols * cell, rows * cell))


def with_prefix(patch_attn, prefix_mass, prefix):
    """(heads, P, P) rows summing to 1 -> (heads, prefix + P, prefix + P): each row gives
    `prefix_mass` to the prefix tokens (split evenly) and the rest to the patches as given."""
    h, p, _ = patch_attn.shape
    n = prefix + p
    a = np.zeros((h, n, n))
    a[:, :, :prefix] = prefix_mass / prefix
    a[:, prefix:, prefix:] = (1 - prefix_mass) * patch_attn
    a[:, :prefix, prefix:] = (1 - prefix_mass) / p
    return a


def mean_pairwise_distance(rows, cols, cell):
    """Closed form by brute force: mean over ordered pairs of patch centres (self pairs included)."""
    total = 0.0
    for r1 in range(rows):
        for c1 in range(cols):
            for r2 in range(rows):
                for c2 in range(cols):
                    total += cell * math.hypot(r1 - r2, c1 - c2)
    return total / (rows * cols) ** 2


# --------------------------------------------------------------------- hand-built attention


def test_uniform_rows_on_2x2_grid_give_the_mean_pairwise_distance_with_prefix_tokens_excluded():
    g = grid(2, 2, 16)
    uniform = np.full((1, 4, 4), 0.25)
    want = (0 + 16 + 16 + 16 * math.sqrt(2)) / 4  # every query sees itself, two neighbours, a diagonal
    for prefix in (1, 3):  # class token; class + 2 registers
        attn = with_prefix(uniform, 0.4, prefix)[None]
        d = mean_attention_distance(attn, g, prefix)
        assert d.shape == (1, 1) and d[0, 0] == pytest.approx(want, rel=1e-12)
        # the notebook's version: no renormalisation over the patch keys
        notebook = (attn[0, 0, prefix:, prefix:] * _dist(g)).sum(-1).mean()
        assert notebook == pytest.approx(0.6 * want) and abs(notebook - d[0, 0]) > 5


def _dist(g):
    c = [((col + 0.5) * g.cell_w, (row + 0.5) * g.cell_h) for row in range(g.rows) for col in range(g.cols)]
    return np.array([[math.dist(p, q) for q in c] for p in c])


def test_uniform_attention_over_a_grid_equals_the_closed_form_and_self_attention_is_zero():
    g = grid(3, 5, 8)
    p = 15
    attn = np.stack([with_prefix(np.full((1, p, p), 1 / p), 0.2, 2)[0],
                     with_prefix(np.eye(p)[None], 0.7, 2)[0]])[None]  # (1 layer, 2 heads, N, N)
    d = mean_attention_distance(attn, g, 2)
    assert d[0, 0] == pytest.approx(mean_pairwise_distance(3, 5, 8), rel=1e-12)
    assert d[0, 1] == 0.0


def test_one_hot_rows_give_the_distance_to_the_attended_patch():
    g = grid(2, 2, 16)
    opposite = np.eye(4)[[3, 2, 1, 0]][None]  # each patch looks at the diagonally opposite one
    d = mean_attention_distance(with_prefix(opposite, 0.5, 1)[None], g, 1)
    assert d[0, 0] == pytest.approx(16 * math.sqrt(2))


def test_entropy_from_its_equation():
    rng = np.random.default_rng(0)
    n, prefix = 7, 2
    a = rng.random((2, 3, n, n)) ** 4
    a[0, 0] = np.eye(n)  # one key per query: 0 nats
    a[0, 1] = 1 / n  # uniform over all keys: log N
    a /= a.sum(-1, keepdims=True)
    got = attention_entropy(a, prefix)
    want = np.zeros((2, 3))
    for layer in range(2):
        for head in range(3):
            rows = [-sum(x * math.log(x) for x in a[layer, head, i] if x > 0) for i in range(prefix, n)]
            want[layer, head] = sum(rows) / len(rows)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0, 0] == 0 and got[0, 1] == pytest.approx(math.log(n))


@pytest.mark.parametrize("threshold", [0.3, 0.6, 0.9])
def test_dino_masks_hold_the_threshold_and_are_minimal(threshold):
    rng = np.random.default_rng(1)
    prefix, rows, cols = 3, 4, 5
    a = rng.random((6, prefix + 20, prefix + 20)) ** 3
    a /= a.sum(-1, keepdims=True)
    masks = head_masks(a, prefix, rows, cols, threshold)
    assert masks.shape == (6, 4, 5) and masks.dtype == bool
    for h in range(6):
        w = a[h, 0, prefix:] / a[h, 0, prefix:].sum()
        kept = w[masks[h].ravel()]
        assert kept.sum() >= threshold
        assert kept.sum() - kept.min() < threshold  # without its smallest patch it holds too little
        # the same set, built from the largest weight down
        order = np.argsort(-w)
        k = int(np.searchsorted(np.cumsum(w[order]), threshold) + 1)
        assert set(np.flatnonzero(masks[h].ravel())) == set(order[:k].tolist())


# ---------------------------------------------------------------- a model with prefix tokens


@pytest.fixture(scope="module")
def reg_analysis():
    rng = np.random.default_rng(5)
    from PIL import Image

    img = Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8), "RGB")
    return vitviz.analyze(img, model="test_reg_vit", attention_dtype="float32")


def test_register_model_distance_and_entropy_from_attention_and_geometry(reg_analysis):
    a = reg_analysis
    assert a.num_prefix_tokens == 4 and a.grid.shape == (6, 6)
    t = a.grid.transform
    centres = []
    for row in range(6):
        for col in range(6):
            x0, y0, x1, y1 = a.grid.rect(row, col)  # original pixels -> model-input pixels
            centres.append(t.to_input((x0 + x1) / 2, (y0 + y1) / 2))
    want_d = np.zeros((3, 4))
    want_h = np.zeros((3, 4))
    for layer in range(3):
        att = a.attention(layer).astype(np.float64)
        for head in range(4):
            ds, hs = [], []
            for i in range(36):
                row = att[head, 4 + i]
                patch = row[4:] / row[4:].sum()
                ds.append(sum(patch[j] * math.dist(centres[i], centres[j]) for j in range(36)))
                hs.append(-sum(x * math.log(x) for x in row if x > 0))  # 0 log 0 = 0
            want_d[layer, head], want_h[layer, head] = np.mean(ds), np.mean(hs)
    np.testing.assert_allclose(a.analyse("attention_distance"), want_d, rtol=1e-5)
    np.testing.assert_allclose(a.analyse("attention_entropy"), want_h, rtol=1e-5)
    assert want_d.std() > 0.5  # the heads differ: the comparison is not of constants


def _encoder_input(model, x):
    """What entered the encoder layers, from a forward pre-hook."""
    seen = []
    h = model.encoder.layers.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    with torch.no_grad():
        model(x)
    h.remove()
    return seen[0][0]


def test_position_similarity_is_of_the_interpolated_embedding_the_forward_added(reg_analysis):
    a = reg_analysis
    model = a._vitviz_model.module
    x = torch.from_numpy(a.model_input)[None]
    with torch.no_grad():
        patches = model.conv_proj(x).flatten(2).transpose(1, 2)[0]  # (36, d)
    added = (_encoder_input(model, x)[4:] - patches).double().numpy()  # the position rows it used
    assert added.shape == (36, 32) and model.encoder.pos_embedding.shape[1] == 4 + 16
    unit = added / np.linalg.norm(added, axis=1, keepdims=True)
    want = (unit @ unit.T).reshape(6, 6, 6, 6)
    got = a.analyse("position_similarity")
    assert got.shape == (6, 6, 6, 6)
    np.testing.assert_allclose(got, want, atol=2e-5)
    np.testing.assert_allclose(got[2, 3, 2, 3], 1.0)


def test_token_norms_from_an_explicit_pass_through_the_layers(reg_analysis):
    a = reg_analysis
    model = a._vitviz_model.module
    x = _encoder_input(model, torch.from_numpy(a.model_input)[None])[None]
    want = []
    with torch.no_grad():
        for layer in model.encoder.layers:
            x = layer(x)
            want.append(x[0].norm(dim=-1).numpy())
    fired = []  # a capture in another thread hooks the attention modules: the pass must not trigger them
    hooks = [layer.self_attention.register_forward_hook(lambda *args: fired.append(1))
             for layer in model.encoder.layers]
    try:
        got = a.analyse("token_norms")
    finally:
        for h in hooks:
            h.remove()
    assert got.shape == (3, 4 + 36) and fired == []
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-5)


@pytest.mark.parametrize("model", ["test_tiny_vit", "demo_vit"])
def test_token_norms_of_torchvision_vits_match_their_own_forward(model):
    """Plain torchvision ViTs (class token with a position row; demo_vit's convolutional stem)."""
    a = vitviz.analyze(np.full((64, 64, 3), 90, np.uint8), model=model)
    m = a._vitviz_model.module
    want = []
    hooks = [layer.register_forward_hook(lambda mod, args, out: want.append(out[0].norm(dim=-1).numpy()))
             for layer in m.encoder.layers]
    with torch.no_grad():
        m(torch.from_numpy(a.model_input)[None])
    for h in hooks:
        h.remove()
    np.testing.assert_allclose(a.analyse("token_norms"), np.stack(want), rtol=1e-5, atol=1e-5)


def test_dino_masks_on_the_model_use_the_class_token_over_patches(reg_analysis):
    a = reg_analysis
    masks = a.analyse("dino_masks", threshold=0.5, layer=1)
    cls = a.attention(1)[:, 0, 4:].astype(np.float64)
    for h in range(4):
        w = cls[h] / cls[h].sum()
        kept = w[masks[h].ravel()]
        assert kept.sum() >= 0.5 and kept.sum() - kept.min() < 0.5
    with pytest.raises(ValueError, match="threshold"):
        a.analyse("dino_masks", threshold=1.5)
    with pytest.raises(ValueError, match="no parameter"):
        a.analyse("attention_distance", layer=1)


def test_patch_filter_components_are_the_principal_directions_of_the_filters():
    a = vitviz.analyze(np.zeros((40, 40, 3), np.uint8), model="test_tiny_vit")
    w = a._vitviz_model.module.conv_proj.weight.detach().double().numpy()  # (64, 3, 16, 16)
    flat = w.reshape(64, -1)
    cov = np.cov(flat, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    got = a.analyse("patch_filters", k=5)
    assert got.shape == (5, 16, 16, 3) and got.min() == 0 and got.max() == 1
    for i in range(5):
        v = vecs[:, -1 - i].reshape(3, 16, 16).transpose(1, 2, 0)
        scaled = (v - v.min()) / (v.max() - v.min())
        flipped = (-v - (-v).min()) / ((-v).max() - (-v).min())
        assert min(np.abs(got[i] - scaled).max(), np.abs(got[i] - flipped).max()) < 1e-6


def test_over_a_folder_the_mean_of_the_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (60 + 10 * i, 80, 3), dtype=np.uint8), "RGB").save(p)
        paths.append(str(p))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    names = ["attention_distance", "attention_entropy", "dino_masks"]
    res = measure_many(paths + [str(tmp_path / "broken.png")], names, model="test_reg_vit",
                       params={"dino_masks": {"threshold": 0.7}}, workers=0)
    assert res.sources == paths and len(res.failures) == 1 and res.model_name == "test_reg_vit"
    singles = [vitviz.analyze(p, model="test_reg_vit") for p in paths]
    for name in names[:2]:
        per = [s.analyse(name) for s in singles]
        np.testing.assert_allclose(res.per_image[name], per, rtol=2e-3)
        np.testing.assert_allclose(res.means[name], np.mean(per, axis=0), rtol=2e-3)
    freq = np.mean([s.analyse("dino_masks", threshold=0.7) for s in singles], axis=0)
    assert np.abs(res.means["dino_masks"] - freq).max() <= 1 / 3 + 1e-9  # a tie may flip one patch
    assert "dino_masks" not in res.per_image and res.params["dino_masks"] == {"threshold": 0.7, "layer": -1}


def test_one_declaration_table():
    names = [m.name for m in measures("vit")]
    assert names[:2] == ["attention_distance", "attention_entropy"]
    assert {"position_similarity", "dino_masks", "token_norms", "patch_filters"} <= set(names)
    assert get_measure("attention_distance").per_layer_head
    with pytest.raises(ValueError, match="unknown analysis"):
        get_measure("nope")


# ----------------------------------------------------------------------------------- the CLI


def test_cli_writes_the_table_as_json_and_csv(tmp_path, capsys):
    import csv
    import json

    from PIL import Image

    from vitviz.__main__ import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "RGB").save(folder / f"{i}.png")
    out = tmp_path / "t.json"
    assert main(["analyses", str(folder), "--model", "test_reg_vit", "--out", str(out), "-q",
                 "--analyses", "attention_distance,attention_entropy,dino_masks",
                 "--param", "dino_masks.threshold=0.8"]) == 0
    table = json.loads(out.read_text())
    singles = [vitviz.analyze(str(folder / f"{i}.png"), model="test_reg_vit") for i in range(2)]
    want = np.mean([s.analyse("attention_distance") for s in singles], axis=0)
    np.testing.assert_allclose(table["analyses"]["attention_distance"]["mean"], want, rtol=2e-3)
    assert table["model"] == "test_reg_vit" and table["settings"]["params"]["dino_masks"]["threshold"] == 0.8
    assert np.asarray(table["analyses"]["dino_masks"]["mean"]).shape == (4, 6, 6)
    assert [r["source"] for r in table["images"]] == [str(folder / "0.png"), str(folder / "1.png")]
    assert "attention_distance" in capsys.readouterr().out

    out_csv = tmp_path / "t.csv"
    assert main(["analyses", str(folder / "0.png"), "--model", "test_reg_vit", "--out", str(out_csv), "-q"]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 2 * 3 * 4  # the image's 3 x 4 table, then the mean's
    ent = singles[0].analyse("attention_entropy")
    r = next(r for r in rows if r["source"] == "mean" and r["layer"] == "2" and r["head"] == "1")
    assert float(r["attention_entropy"]) == pytest.approx(ent[2, 1], rel=2e-3)


def test_cli_errors(tmp_path, capsys):
    from vitviz.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["analyses", str(tmp_path), "--analyses", "nope"])
    assert e.value.code == 2 and "unknown analysis 'nope'" in capsys.readouterr().err
    assert main(["analyses", str(tmp_path), "--model", "test_reg_vit"]) == 2
    assert "no images found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- Swin


def test_swin_distance_and_entropy_per_token_through_the_shift_and_padding():
    from tests.swin_helpers import TINY_SWIN  # noqa: F401 (registers test_tiny_swin)

    a = vitviz.analyze(np.zeros((80, 90, 3), np.uint8) + 90, model="test_tiny_swin", attention_dtype="float32")
    got_d, got_h = a.analyse("attention_distance"), a.analyse("attention_entropy")
    assert got_d.shape == (8, 4)
    assert any(b.shifted for b in a.blocks) and any(b.padding != (0, 0) for b in a.blocks)
    for b in a.blocks:
        g = a.stage_grid(b.stage)
        rows, cols = b.feature_size
        att = a.window_attention(b.stage, b.block).astype(np.float64)
        coords = a.token_coords(b.stage, b.block)
        for h in range(b.heads):
            ds, hs = [], []
            for r in range(rows):
                for c in range(cols):  # token by token, through the roll
                    slot = a.window_of(b.stage, b.block, r, c)
                    row = att[slot.window, h, slot.index]
                    keys = coords[slot.window]
                    real = (keys[:, 0] < rows) & (keys[:, 1] < cols)
                    w = row[real] / row[real].sum()
                    dy = (keys[real, 0] - r) * g.cell_h
                    dx = (keys[real, 1] - c) * g.cell_w
                    ds.append(float((w * np.hypot(dy, dx)).sum()))
                    hs.append(-sum(x * math.log(x) for x in row if x > 0))
            assert got_d[b.index, h] == pytest.approx(np.mean(ds), rel=1e-6), (b.stage, b.block, h)
            assert got_h[b.index, h] == pytest.approx(np.mean(hs), rel=1e-6)
        assert np.isnan(got_d[b.index, b.heads:]).all()
    assert got_d[0, 0] > 0 and got_d[6, 0] > got_d[0, 0]  # later stages: coarser cells, longer reach


# ---------------------------------------------------------------------------------------- DETR


def test_detr_query_specialisation_over_a_folder(tmp_path):
    from PIL import Image

    from vitviz.core.analysis.detr_queries import size_class, specialisation
    from vitviz.core.models.detr_specs import detr_spec

    register(detr_spec("test_analyses_detr", "Tiny DETR (analyses tests)", Preprocess("resize_short", 96, max_size=160),
                       group="Tests", backbone="resnet18", d_model=32, nheads=2, enc_layers=1, dec_layers=2,
                       dim_feedforward=64, num_queries=6))
    rng = np.random.default_rng(4)
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (90 + 20 * i, 120, 3), dtype=np.uint8), "RGB").save(p)
        paths.append(str(p))
    res = measure_many(paths, ["query_boxes"], model="test_analyses_detr", weights="random", workers=0)
    spec = specialisation(res, threshold=0.0)
    assert spec.boxes.shape == (3, 6, 6) and spec.num_queries == 6
    for i, p in enumerate(paths):
        a = vitviz.analyze(p, model="test_analyses_detr", weights="random")
        probs = np.exp(a.logits - a.logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        np.testing.assert_allclose(spec.boxes[i, :, :4], a.boxes, atol=1e-5)
        np.testing.assert_allclose(spec.boxes[i, :, 4], probs[:, :-1].max(-1), atol=1e-5)
        assert (spec.boxes[i, :, 5] == probs[:, :-1].argmax(-1)).all()
    q = 2
    assert np.array_equal(spec.centres(q), spec.boxes[:, q, :2])
    assert spec.fired(q) == paths  # every score beats 0
    top = float(spec.boxes[:, q, 4].max())
    assert specialisation(res, threshold=top).fired(q) == []
    assert list(size_class(np.array([[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.8, 0.3], [0.5, 0.5, 0.3, 0.8]]))) == \
        ["small", "horizontal", "vertical"]
    assert sum(c.sum() for c in spec.counts().values()) == 18


def test_high_norm_tokens_and_prefix_names(reg_analysis):
    from vitviz.core.analysis.token_norms import high_norm_tokens, prefix_names

    norms = np.array([50.0, 3.0, 1.0, 1.1, 0.9, 5.0, 1.0, 2.5])  # 2 prefix tokens, then 6 patches
    assert list(high_norm_tokens(norms, 2, factor=2.0)) == [5, 7]  # median of the patches is 1.05
    assert prefix_names(reg_analysis) == ["class", "distillation", "register 0", "register 1"]


def test_named_api_methods_are_the_declared_analyses(qapp=None):
    """a.attention_distance() etc. (the issue's API) are analyse(name) itself."""
    import numpy as np
    from PIL import Image

    import vitviz

    img = Image.fromarray(np.random.default_rng(3).integers(0, 255, (70, 90, 3), dtype=np.uint8))
    a = vitviz.analyze(img, model="test_tiny_vit", weights="random")
    np.testing.assert_array_equal(a.attention_distance(), a.analyse("attention_distance"))
    np.testing.assert_array_equal(a.attention_entropy(), a.analyse("attention_entropy"))
    np.testing.assert_array_equal(a.position_similarity(), a.analyse("position_similarity"))
    np.testing.assert_array_equal(a.dino_masks(0.5), a.analyse("dino_masks", threshold=0.5, layer=-1))
    np.testing.assert_array_equal(a.token_norms(), a.analyse("token_norms"))
    assert a.patch_filter_components(k=3).shape[0] == 3
    assert a.attention_distance().shape == (a.num_layers, a.num_heads)
