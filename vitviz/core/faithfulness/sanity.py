"""Cascading model randomisation (Adebayo et al., NeurIPS 2018), on a copy of the analysis's model.

Units, from the top: the classifier head (with the final norm), then each block from the last to the
first (Swin: its blocks stage by stage, patch merging as its own unit), then the embedding (ViT: patch
projection, class token, position embedding). Re-initialising a unit replaces each of its parameters
with Gaussian noise of that tensor's own mean and standard deviation (0.02 where the tensor is
constant, e.g. a zero-initialised head): the scale the network runs at is kept, what it learned is
not. The draw comes from a torch.Generator seeded with `seed`, so a run is reproducible.

After each unit the image goes through the family's own runner on the randomised copy (so attention
maps change too, not only gradient ones) and the method's map is compared with the original one by
Spearman's rank correlation (scipy.stats.spearmanr over the flattened maps; NaN when a map is
constant). The method is flagged when the correlation after the last unit is still above `threshold`.
"""
from __future__ import annotations

import copy
import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

THRESHOLD = 0.9


@dataclass
class Sanity:
    method: str
    params: dict
    target: int
    steps: list[str]  # units re-initialised, cumulatively, in order
    correlations: np.ndarray  # Spearman rho of each step's map with the original map
    threshold: float
    original: np.ndarray  # the method's map on the trained model
    maps: list[np.ndarray]  # the map after each step

    @property
    def flagged(self) -> bool:
        """The map barely changes once every weight is random: it does not reflect the model."""
        last = self.correlations[-1]
        return bool(np.isfinite(last) and last > self.threshold)

    def to_json(self) -> dict:
        return {"method": self.method, "params": dict(self.params), "target": self.target, "steps": self.steps,
                "correlations": [None if not np.isfinite(c) else float(c) for c in self.correlations],
                "threshold": self.threshold, "flagged": self.flagged}


def cascade_units(module) -> list[tuple[str, list]]:
    """[(name, [modules or parameters])] from the top of a torchvision ViT or Swin."""
    from torch import nn

    if hasattr(module, "encoder") and hasattr(module, "heads") and hasattr(module.encoder, "layers"):
        layers = list(module.encoder.layers)
        units = [("head", [module.heads, module.encoder.ln])]
        units += [(f"block {i}", [layers[i]]) for i in reversed(range(len(layers)))]
        embed = [module.conv_proj, module.encoder.pos_embedding]
        if getattr(module, "class_token", None) is not None:
            embed.append(module.class_token)
        return units + [("embedding", embed)]
    if hasattr(module, "features") and hasattr(module, "head") and hasattr(module, "norm"):
        units = [("head", [module.head, module.norm])]
        stages = [f for f in module.features if isinstance(f, nn.Sequential)][1:]  # [0] is the patch embedding
        stage = len(stages)
        for f in reversed(list(module.features)[1:]):
            if isinstance(f, nn.Sequential):
                stage -= 1
                units += [(f"stage {stage} block {b}", [f[b]]) for b in reversed(range(len(f)))]
            else:
                units.append((f"merge after stage {stage - 1}", [f]))
        return units + [("embedding", [module.features[0]])]
    raise ValueError(f"cascading randomisation knows torchvision ViT and Swin layouts, not {type(module).__name__}")


def _parameters(items) -> list:
    from torch import nn

    out = []
    for it in items:
        out += list(it.parameters()) if isinstance(it, nn.Module) else [it]
    return out


def reinitialise(items, generator) -> None:
    """Each parameter <- N(its mean, its std) (std 0.02 where the tensor is constant)."""
    import torch

    with torch.no_grad():
        for p in _parameters(items):
            flat = p.detach().float().cpu().ravel()
            std = float(flat.std()) if flat.numel() > 1 else 0.0
            std = std if std > 0 else 0.02
            noise = torch.randn(p.shape, generator=generator) * std + float(flat.mean())
            p.copy_(noise.to(p.device, p.dtype))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant map: NaN, reported as such
        return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


def sanity(analysis, method: str, target: int | None = None, *, seed: int = 0, threshold: float = THRESHOLD,
           progress=None, cancel=None, method_params: dict | None = None, **params) -> Sanity:
    """Cascading randomisation of `method` on this analysis (see the module docstring); the method's
    parameters as keywords or in `method_params` (as in vitviz.core.faithfulness.faithfulness)."""
    import torch

    from ..families import get_family
    from ..gradients import attach_model, model_of
    from . import default_target, merged_params, method_map
    from .curves import Cancelled, is_cancelled

    params = merged_params(method_params, params)
    t = default_target(analysis, target)
    loaded = model_of(analysis)
    original = method_map(analysis, method, t, params)
    twin = dataclasses.replace(loaded, module=copy.deepcopy(loaded.module), notes=list(loaded.notes))
    units = cascade_units(twin.module)
    run = get_family(analysis.family).runner()
    generator = torch.Generator().manual_seed(int(seed))
    names, rhos, maps = [], [], []
    for i, (name, items) in enumerate(units):
        if is_cancelled(cancel):
            raise Cancelled("sanity check cancelled")
        reinitialise(items, generator)
        again = run(twin, analysis.image, np.float32)
        attach_model(again, twin)
        m = method_map(again, method, t, params)
        names.append(name)
        maps.append(m)
        rhos.append(spearman(original, m))
        if progress is not None:
            progress(i + 1, len(units))
    return Sanity(method, params, t, names, np.asarray(rhos), threshold, original, maps)
