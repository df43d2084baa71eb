"""The captured ViT attention is exactly what the model computed, on the right tokens."""
import numpy as np
import torch
from PIL import Image

import vitviz
from vitviz.core.api import get_model
from vitviz.core.capture.vit import capture_attention


def test_capture_leaves_logits_bit_identical():
    loaded = get_model("test_tiny_vit", "random", cache=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        plain = loaded.module(x)
        with capture_attention(loaded.module, np.float32) as store:
            captured = loaded.module(x)
    assert plain.abs().max() > 0  # a zero head would prove nothing
    assert torch.equal(plain, captured)
    assert len(store) == 3 and store[0].shape == (4, 17, 17)
    # hooks are gone afterwards
    assert all(not m._forward_hooks for m in loaded.module.modules())


def test_recomputing_block_output_from_captured_weights_reproduces_it():
    loaded = get_model("test_tiny_vit", "random", cache=False)
    model = loaded.module
    x = torch.randn(1, 3, 64, 64)
    inputs, outputs = [], []
    def keep(module, args, output):  # returns None: leaves the output alone
        inputs.append(args[0])
        outputs.append(output[0])

    hooks = [layer.self_attention.register_forward_hook(keep) for layer in model.encoder.layers]
    with torch.no_grad(), capture_attention(model, np.float32) as store:
        model(x)
    for h in hooks:
        h.remove()
    for layer, mha in enumerate(l.self_attention for l in model.encoder.layers):
        q_in = inputs[layer][0]  # (N, d)
        d, heads = mha.embed_dim, mha.num_heads
        v = (q_in @ mha.in_proj_weight[2 * d:].T + mha.in_proj_bias[2 * d:]).reshape(-1, heads, d // heads)
        w = torch.from_numpy(store[layer])  # (heads, N, N)
        np.testing.assert_allclose(w.sum(-1).numpy(), 1.0, atol=1e-5)
        per_head = torch.einsum("hqk,khd->qhd", w, v).reshape(-1, d)
        recomputed = per_head @ mha.out_proj.weight.T + mha.out_proj.bias
        torch.testing.assert_close(recomputed, outputs[layer][0], atol=1e-5, rtol=1e-4)


def test_patch_tokens_are_row_major_after_the_class_token():
    """Sequence position 1 + r*cols + c holds the embedding of input patch (r, c): no transposed grid,
    no off-by-one class token."""
    loaded = get_model("test_tiny_vit", "random", cache=False)
    model = loaded.module
    x = torch.randn(1, 3, 64, 64)
    seen = {}
    h = model.encoder.register_forward_pre_hook(lambda m, a: seen.setdefault("seq", a[0]))
    with torch.no_grad():
        model(x)
    h.remove()
    seq = seen["seq"][0]  # the encoder adds the position embedding after this point
    p = model.patch_size
    for r, c in [(0, 1), (2, 3), (3, 0)]:
        patch = x[:, :, r * p:(r + 1) * p, c * p:(c + 1) * p]
        emb = model.conv_proj(patch).flatten()
        torch.testing.assert_close(seq[1 + r * 4 + c], emb, atol=1e-5, rtol=1e-4)


def test_analysis_maps_index_the_captured_tensor(vit_b16_analysis):
    a = vit_b16_analysis
    assert a.grid.shape == (14, 14) and a.num_layers == 12 and a.num_heads == 12
    att = a.attention(5)
    assert att.dtype == np.float32 and att.shape == (12, 197, 197)
    m = a.attention_map(5, 3, (2, 7))
    np.testing.assert_array_equal(m, att[3, 1 + 2 * 14 + 7, 1:].reshape(14, 14))
    m_to = a.attention_map(5, "max", (2, 7), direction="to")
    np.testing.assert_array_equal(m_to, att[:, 1:, 1 + 2 * 14 + 7].max(0).reshape(14, 14))
    np.testing.assert_array_equal(a.attention_map(0, 1, "cls"), a.attention(0)[1, 0, 1:].reshape(14, 14))
    np.testing.assert_allclose(a.head_maps((2, 7))[5, 3], m)
    assert a.model_input.shape == (3, 224, 224) and a.model_input.dtype == np.float32
    assert len(a.top_predictions(5)) == 5


def test_float32_capture_on_request():
    img = Image.new("RGB", (90, 70), "white")
    a = vitviz.analyze(img, model="test_tiny_vit", weights="random", attention_dtype="float32")
    assert a.attn.dtype == np.float32
    np.testing.assert_allclose(a.attn.sum(-1), 1.0, atol=1e-5)
