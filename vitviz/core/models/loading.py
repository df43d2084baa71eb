"""Build a model from its spec and put weights in it: pretrained (hub cache, downloaded only when
asked), a checkpoint file in any layout checkpoint_layouts knows, or random. Never unpickles
arbitrary objects."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Union

from .registry import ModelSpec, Preprocess, get_spec
from . import weights as wts
from .devices import resolve_device, resolve_precision  # noqa: F401 (resolve_device: public here too)
from .errors import CheckpointError  # noqa: F401 (public here too)
from .state_files import read_state_dict  # noqa: F401 (public here too)

ProgressCallback = Callable[[int, Union[int, None]], None]


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
    precision: str = "float32"  # "bfloat16" / "float16": autocast on the GPU (devices.autocast)
    # pretrained weights were asked for and are published, but not on disk: random weights run
    weights_missing: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def weights_label(self) -> str:
        if self.weights in ("pretrained", "random"):
            return self.weights
        return os.path.basename(self.weights)


def is_checkpoint_path(weights) -> bool:
    """True when `weights` names a file rather than "pretrained" / "random"."""
    return weights not in (None, "", "pretrained", "random")


def load_state_strict(module, state: dict, source: str, context: str = "") -> None:
    """load_state_dict(strict=True) with a message listing missing, unexpected and mismatched keys.

    BatchNorm's `num_batches_tracked` counters are the one exception: eval mode never reads them, and
    checkpoints keep them or not depending on the norm layer that wrote them (DETR's frozen batch
    norm has none), so they are taken from the file when both sides have them and ignored otherwise.
    """
    own = module.state_dict()
    counter = ".num_batches_tracked"
    state = {k: v for k, v in state.items() if not k.endswith(counter) or k in own}
    state.update({k: v for k, v in own.items() if k.endswith(counter) and k not in state})
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [(k, tuple(state[k].shape), tuple(own[k].shape))
                  for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        def part(title, items):
            if not items:
                return ""
            more = f" (and {len(items) - 10} more)" if len(items) > 10 else ""
            return f"\n{title} ({len(items)}): " + ", ".join(items[:10]) + more

        shapes = [f"{k}: checkpoint {a} vs model {b}" for k, a, b in mismatched]
        raise CheckpointError(
            f"Checkpoint {source!r} does not fit this model" + (f" ({context})" if context else "")
            + part("missing keys", missing) + part("unexpected keys", unexpected)
            + part("shape mismatches", shapes), missing, unexpected, mismatched)
    module.load_state_dict(state, strict=True)


def build_module(spec: ModelSpec, preprocess: Preprocess):
    """torchvision builders by name; "package.module:function" for vitviz's own (DETR, demos, tests)."""
    from importlib import import_module

    from .known_checkpoints import TOKEN_VIT_BUILDER

    kwargs = dict(spec.builder_kwargs)
    if spec.builder == TOKEN_VIT_BUILDER:
        kwargs["image_size"] = preprocess.size
    if ":" in spec.builder:
        module_name, func = spec.builder.split(":", 1)
        return getattr(import_module(module_name), func)(**kwargs)
    import torchvision.models as tvm

    if spec.family == "vit" and preprocess.size != 224:
        kwargs["image_size"] = preprocess.size
    return getattr(tvm, spec.builder)(weights=None, **kwargs)


def load_model(name: str | ModelSpec | None, weights: str | os.PathLike | None = "pretrained",
               device: str | None = "cpu", *, download: bool | ProgressCallback = False,
               precision: str | None = None) -> LoadedModel:
    """The model `name` with `weights`: "pretrained" (hub cache; random with a note when absent),
    "random", or a checkpoint path (torchvision, timm/DINO/DeiT/MAE, DETR or safetensors files).

    name None: infer the model from the checkpoint's keys and shapes (a note says what was found).
    download: False never touches the network; True, or a progress callback (done_bytes,
    total_bytes), fetches missing pretrained weights into the hub cache (download.DownloadError if
    that fails; a callback raising download.DownloadCancelled cancels). precision: "bfloat16" /
    "float16" autocast on GPUs (float32 with a note on the CPU). Raises CheckpointError if a
    checkpoint cannot be read or does not fit."""
    import torch

    from . import known_checkpoints  # noqa: F401 (registers dino_vits8, deit_small, ...)
    from .checkpoint_layouts import detect_layout, fit_checkpoint, infer_spec, normalize_keys

    spec = name if isinstance(name, ModelSpec) or name is None else get_spec(name)
    device = resolve_device(device)
    precision, precision_note = resolve_precision(precision, device)
    weights = "pretrained" if weights in (None, "") else weights
    if spec is None and not is_checkpoint_path(weights):
        raise ValueError("Name a model, or give a checkpoint file to infer the model from")
    notes: list[str] = [precision_note] if precision_note else []
    state, source, missing = None, None, False
    if is_checkpoint_path(weights):
        state, source = read_state_dict(weights), os.path.basename(str(weights))
        if spec is None:
            spec, inferred = infer_spec(state, str(weights))
            notes += inferred
        preprocess = spec.preprocess
    else:
        preprocess = spec.preprocess
        if weights == "pretrained" and spec.source in ("hf", "clip"):
            return _load_external(spec, device, download, notes, precision)
        if weights == "pretrained":
            state, source, preprocess = _pretrained_state(spec, download, notes)
            weights = "pretrained" if state is not None else "random"
            missing = state is None and wts.weights_state(spec) == "downloadable"
    context = ""
    if state is not None:
        context = f"the file has {detect_layout(normalize_keys(state)[0])} keys; the model is {spec.label}"
        spec, state, fitted = fit_checkpoint(spec, state, preprocess.size)
        notes += fitted
    torch.manual_seed(0)  # random weights are reproducible run to run
    module = build_module(spec, preprocess)
    if state is not None:
        load_state_strict(module, state, source, context)
    module.eval().to(device)
    return LoadedModel(spec, module, str(weights), weights != "random", device, preprocess,
                       _class_names(spec), notes, precision, weights_missing=missing)


def _pretrained_state(spec: ModelSpec, download, notes: list[str]):
    """(state or None, source label, preprocess) for weights="pretrained"; fetches when allowed."""
    if spec.source == "timm":  # timm's own layout: fit_checkpoint maps it like any timm-style file
        from .timm_models import timm_pretrained_state

        state, source = timm_pretrained_state(spec, download, notes)
        return state, source, spec.preprocess
    if spec.bundled:
        from ..resources import resource_path

        return read_state_dict(resource_path(spec.bundled)), spec.label, spec.preprocess
    url = wts.weights_url(spec)
    if url is None:
        return None, None, spec.preprocess
    path = wts.cached_weights_path(spec)
    if path is None and download:
        from .download import download_weights

        path = download_weights(spec, progress=download if callable(download) else None)
    if path is None:
        from .download import manual_instructions

        notes.append(f"Pretrained weights for {spec.label} are not in the torch hub cache "
                     f"({wts.hub_checkpoint_dir()}); running UNTRAINED random weights. "
                     + manual_instructions(url, wts.hub_checkpoint_dir()))
        return None, None, spec.preprocess
    from .cache_check import verify_cached_weights

    verify_cached_weights(path, url)  # a damaged copy is refused before it is unpickled
    return read_state_dict(path), spec.label, spec.pretrained_preprocess or spec.preprocess


def _load_external(spec: ModelSpec, device: str, download, notes: list[str], precision: str) -> LoadedModel:
    """Pretrained weights of a model found outside vitviz's table (a hub-cache snapshot, a timm
    model): built in the model's shape, then its own weights mapped onto vitviz's keys."""
    import torch

    from .external import external_state

    torch.manual_seed(0)
    module = build_module(spec, spec.preprocess)
    state, source, more = external_state(spec, module, download)
    notes += more
    if state is not None:
        load_state_strict(module, state, source, f"{spec.label}, mapped from its {spec.source} layout")
    module.eval().to(device)
    return LoadedModel(spec, module, "pretrained" if state is not None else "random", state is not None,
                       device, spec.preprocess, _class_names(spec), notes, precision,
                       weights_missing=state is None)


def _class_names(spec: ModelSpec) -> list[str] | None:
    """"imagenet" (from the torchvision weights' meta) or "package.module:NAMES" for other label sets."""
    if spec.labels:
        return list(spec.labels)
    if ":" in spec.classes:
        from importlib import import_module

        module_name, attr = spec.classes.split(":", 1)
        return list(getattr(import_module(module_name), attr))
    return wts.class_names(spec) if spec.classes == "imagenet" else None
