"""What the classifier and detector training scripts share: cached scene pools, augmentation,
normalisation, the learning-rate schedule, seeded models, saving weights and model cards."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np


def cached_arrays(cache_dir: str | os.PathLike | None, name: str, render) -> dict:
    """render() -> {name: array}, kept as ``cache_dir/name.npz`` between runs (None: not kept).
    Written to a temporary file first, so an interrupted run never leaves a half cache."""
    if cache_dir is None:
        return render()
    cache = Path(cache_dir) / f"{name}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    arrays = render()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(cache)
    return arrays


def augment(x, gen, boxes=None):
    """Per image, one of the 8 dihedral transforms and a channel permutation.

    x: (n, 3, s, s) square images; gen: torch.Generator; boxes: optional (x0, y0, x1, y1) boxes as
    fractions of the side, transformed with their image: an (n, 4) tensor (one box per image) or a
    list of n (k_i, 4) tensors (detection scenes). Returns the new images, or (images, boxes)."""
    import torch

    n = x.shape[0]
    ks = torch.randint(0, 8, (n,), generator=gen)
    perms = torch.stack([torch.randperm(3, generator=gen) for _ in range(n)])
    out = torch.empty_like(x)
    moved = []
    for i in range(n):
        xi = x[i, perms[i]]
        k = int(ks[i])
        if k >= 4:
            xi = xi.flip(-1)
        out[i] = torch.rot90(xi, k % 4, dims=(-2, -1))
        if boxes is not None:
            moved.append(_dihedral_box(boxes[i], k))
    if boxes is None:
        return out
    return out, (torch.stack(moved) if isinstance(boxes, torch.Tensor) else moved)


def _dihedral_box(box, k: int):
    """The boxes (..., 4) under `augment`'s transform k: a horizontal flip if k >= 4, then k % 4
    quarter turns of torch.rot90 (dims (-2, -1)), which take the point (x, y) to (y, 1 - x)."""
    import torch

    xs, ys = box[..., 0::2], box[..., 1::2]  # (x0, x1), (y0, y1)
    if k >= 4:
        xs = 1 - xs
    for _ in range(k % 4):
        xs, ys = ys, 1 - xs
    return torch.stack([xs.amin(-1), ys.amin(-1), xs.amax(-1), ys.amax(-1)], dim=-1)


def normalise(x_uint8, mean, std):
    """(n, 3, h, w) uint8 -> float32 normalised exactly as vitviz.core.preprocess.prepare does."""
    import torch

    x = x_uint8.to(torch.float32) / 255.0
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def lr_at(step: int, cfg) -> float:
    """Linear warm-up over cfg.warmup of the steps, then cosine decay to 0."""
    warm = max(1, int(cfg.warmup * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


def fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def seeded_model(cfg, spec, log):
    """The model to train, in train mode: random weights drawn after torch.manual_seed(cfg.seed),
    or the weights of an earlier stage (cfg.init), loaded strictly."""
    import torch

    from vitviz.core.models.loading import build_module, load_state_strict, read_state_dict

    torch.manual_seed(cfg.seed)
    model = build_module(spec, spec.preprocess)
    if cfg.init:
        load_state_strict(model, read_state_dict(cfg.init), os.path.basename(cfg.init))
        log(f"[{cfg.model}] initialised from {cfg.init}")
    return model.train()


def state_for_saving(model) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_weights(model, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state_for_saving(model), str(path),
              metadata={k: str(v) for k, v in (metadata or {}).items()})
    return path


def finish_card(path: str | os.PathLike, lines: list[str], metrics_lines: list[str] | None) -> Path:
    """Append the held-out metrics and the reproduce line to a model card's lines; write it."""
    lines = lines + ["", "## Metrics on held-out scenes", ""]
    lines += metrics_lines if metrics_lines else ["Not measured (`--eval 0`)."]
    lines += ["", "Reproduce with the command above; `tests/test_demo_models.py` checks these numbers "
              "on held-out scenes.", ""]
    path = Path(path)
    path.write_text("\n".join(lines))
    return path
