"""weights_sha256 (vitviz.core.models.digest) and the hash in `vitviz analyses` tables: the same for
the same weights from another file, different when one number changes, written beside the means."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from PIL import Image

from vitviz.core.models.digest import weights_sha256


def by_hand(module) -> str:
    h = hashlib.sha256()
    for key in sorted(module.state_dict()):
        t = module.state_dict()[key]
        if key.endswith("num_batches_tracked"):
            continue
        h.update(f"{key}|{str(t.dtype)[6:]}|{tuple(t.shape)}\n".encode())
        h.update(np.ascontiguousarray(t.detach().numpy()).view(np.uint8).tobytes())
    return h.hexdigest()


def test_hash_is_of_the_weights_not_the_object():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    b = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    assert weights_sha256(a) == by_hand(a) and weights_sha256(a) != weights_sha256(b)
    b.load_state_dict(a.state_dict())
    b[1].num_batches_tracked += 5  # a counter eval never reads
    assert weights_sha256(a) == weights_sha256(b)
    with torch.no_grad():
        b[2].bias[1] += 1e-7
    assert weights_sha256(a) != weights_sha256(b)
    half = torch.nn.Linear(3, 2).to(torch.bfloat16)  # no numpy dtype: hashed through its bytes
    assert len(weights_sha256(half)) == 64


def test_vitviz_analyses_writes_the_hash(tmp_path):
    from vitviz.__main__ import main
    from vitviz.core.api import get_model

    Image.fromarray(np.full((40, 40, 3), 100, np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "t.json"
    assert main(["analyses", str(tmp_path / "a.png"), "--model", "demo_vit", "--out", str(out), "-q"]) == 0
    table = json.loads(out.read_text())
    assert table["weights_sha256"] == by_hand(get_model("demo_vit").module)
