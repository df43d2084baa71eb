"""weights_sha256(): one hash of the weights a model actually runs with, whatever they came from
(pretrained file, checkpoint, random initialisation), so two tables can say whether they were made
with the same model. The sha256 of every state_dict entry in key order: its name, dtype and shape,
then its raw bytes (any dtype, bfloat16 included). BatchNorm's num_batches_tracked counters are left
out (eval mode never reads them, and checkpoints keep them or not)."""
from __future__ import annotations

import hashlib


def weights_sha256(module) -> str:
    import torch

    h = hashlib.sha256()
    for key, t in sorted(module.state_dict().items()):
        if key.endswith(".num_batches_tracked"):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{key}|{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
