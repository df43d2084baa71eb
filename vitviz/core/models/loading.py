"""Build a model from its spec and put weights in it: pretrained from the hub cache, a checkpoint
file, or random. Never downloads; never unpickles arbitrary objects."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .registry import ModelSpec, Preprocess, get_spec
from . import weights as wts


class CheckpointError(ValueError):
    """A checkpoint file could not be used; the message says which file and why."""


@dataclass
class LoadedModel:
    spec: ModelSpec
    module: object  # torch.nn.Module in eval mode on `device`
    weights: str  # "pretrained", "random" or the checkpoint path
    trained: bool
    device: str
    preprocess: Preprocess
    class_names: list[str] | None
    notes: list[str] = field(default_factory=list)  # plain-language remarks to show the user

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def weights_label(self) -> str:
        if self.weights in ("pretrained", "random"):
            return self.weights
        return os.path.basename(self.weights)


def resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"Device {device!r} was asked for, but this machine has no CUDA GPU")
    return device


def read_state_dict(path: str | os.PathLike) -> dict:
    """Tensors from a .pth/.pt (safe unpickling only) or .safetensors file, unwrapping the usual
    containers ("model", "state_dict", "teacher", "student")."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"Checkpoint {str(p)!r} does not exist or is not a file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p), device="cpu")
        else:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle refusals, truncation, garbage: one clear message
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            msg = ("it holds Python objects other than tensors, and vitviz never unpickles "
                   "arbitrary objects (weights_only=True)")
        raise CheckpointError(f"Cannot read checkpoint {p.name!r}: {msg}") from None
    for key in ("model", "state_dict", "teacher", "student", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"Checkpoint {p.name!r} holds no tensors (not a model state dict)")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_state_strict(module, state: dict, source: str) -> None:
    """load_state_dict(strict=True) with a message listing missing, unexpected and mismatched keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        def part(title, items):
            if not items:
                return ""
            more = f" (and {len(items) - 10} more)" if len(items) > 10 else ""
            return f"\n{title} ({len(items)}): " + ", ".join(items[:10]) + more

        raise CheckpointError(
            f"Checkpoint {source!r} does not fit this model" + part("missing keys", missing)
            + part("unexpected keys", unexpected) + part("shape mismatches", mismatched))
    module.load_state_dict(state, strict=True)


def _build(spec: ModelSpec, preprocess: Preprocess):
    """torchvision builders by name; "package.module:function" for vitviz's own (DETR, demos, tests)."""
    from importlib import import_module

    kwargs = dict(spec.builder_kwargs)
    if ":" in spec.builder:
        module_name, func = spec.builder.split(":", 1)
        return getattr(import_module(module_name), func)(**kwargs)
    import torchvision.models as tvm

    if spec.family == "vit" and preprocess.size != 224:
        kwargs["image_size"] = preprocess.size
    return getattr(tvm, spec.builder)(weights=None, **kwargs)


def load_model(name: str | ModelSpec, weights: str | os.PathLike | None = "pretrained",
               device: str | None = "cpu") -> LoadedModel:
    """The model `name` with `weights`: "pretrained" (hub cache; random with a note when absent),
    "random", or a checkpoint path. Raises CheckpointError if a checkpoint does not fit."""
    import torch

    spec = name if isinstance(name, ModelSpec) else get_spec(name)
    device = resolve_device(device)
    weights = "pretrained" if weights in (None, "") else weights
    notes: list[str] = []
    preprocess = spec.preprocess
    state = None
    if weights == "pretrained" and spec.bundled:
        from ..resources import resource_path

        state = read_state_dict(resource_path(spec.bundled))
    elif weights == "pretrained":
        path = wts.cached_weights_path(spec) if spec.weights else None
        if spec.weights and path is None:
            notes.append(f"Pretrained weights for {spec.label} are not in the torch hub cache "
                         f"({wts.hub_checkpoint_dir()}); running UNTRAINED random weights.")
            weights = "random"
        elif path is not None:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            preprocess = spec.pretrained_preprocess or spec.preprocess
        else:
            weights = "random"
    elif weights != "random":
        state = read_state_dict(weights)
    torch.manual_seed(0)  # random weights are reproducible run to run
    module = _build(spec, preprocess)
    trained = weights != "random"
    if state is not None:
        load_state_strict(module, state, spec.label if weights == "pretrained"
                          else os.path.basename(str(weights)))
    module.eval().to(device)
    return LoadedModel(spec, module, str(weights), trained, device, preprocess, _class_names(spec), notes)


def _class_names(spec: ModelSpec) -> list[str] | None:
    """"imagenet" (from the torchvision weights' meta) or "package.module:NAMES" for other label sets."""
    if ":" in spec.classes:
        from importlib import import_module

        module_name, attr = spec.classes.split(":", 1)
        return list(getattr(import_module(module_name), attr))
    return wts.class_names(spec) if spec.classes == "imagenet" else None
