"""Which model a state dict belongs to, and how its keys map onto the model vitviz builds.

Layouts recognised: torchvision ViT and Swin, official DETR (facebookresearch/detr), and timm-style
ViTs (DINO, DeiT, MAE, timm, DINOv2). `fit_checkpoint` adapts a state dict to a named model;
`infer_spec` names the model when none was given. Architecture (patch, depth, heads, width) comes
from the model's spec when there is one, so a checkpoint of another shape fails strict loading with
its keys listed; tokens and head come from the checkpoint.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace

from torch import Tensor

from . import known_checkpoints as known
from .registry import ModelSpec, Preprocess, all_specs, get_spec
from .errors import CheckpointError

TORCHVISION_VIT, TORCHVISION_SWIN, DETR, TIMM_VIT, UNKNOWN = (
    "torchvision ViT", "torchvision Swin", "DETR (official)", "timm-style ViT", "unknown")

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def normalize_keys(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Strip wrapper prefixes; keep only the ViT of a DINO training checkpoint ("backbone." keys
    beside the projection "head."). Returns (state, notes). (BatchNorm counters are reconciled
    by loading.load_state_strict.)"""
    notes: list[str] = []
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    if "backbone.patch_embed.proj.weight" in state:  # DINO teacher/student: backbone + DINOHead
        others = [k for k in state if not k.startswith("backbone.")]
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        if others:
            notes.append(f"Used the checkpoint's backbone; left out {len(others)} training-only keys "
                         f"({_first(others)}).")
    return state, notes


def detect_layout(state: dict[str, Tensor]) -> str:
    keys = state.keys()
    if "class_token" in keys and "conv_proj.weight" in keys and any(k.startswith("encoder.layers.") for k in keys):
        return TORCHVISION_VIT
    if "features.0.0.weight" in keys and any("relative_position_bias_table" in k or "cpb_mlp" in k for k in keys):
        return TORCHVISION_SWIN
    if "query_embed.weight" in keys and any(k.startswith("transformer.encoder.layers.") for k in keys):
        return DETR
    from .timm_vit import is_timm_vit

    return TIMM_VIT if is_timm_vit(state) else UNKNOWN


# --------------------------------------------------------------------------- named model


def fit_checkpoint(spec: ModelSpec, state: dict[str, Tensor], image_size: int
                   ) -> tuple[ModelSpec, dict[str, Tensor], list[str]]:
    """(spec to build, state in its keys, notes) for loading `state` into the model `spec` names at
    `image_size`. Leaves keys it cannot map alone: the strict load then lists them."""
    state, notes = normalize_keys(state)
    layout = detect_layout(state)
    arch = known.arch_of(spec)
    if spec.family == "detr" and layout == DETR:
        return spec, _detr_state(state), notes
    if spec.family != "vit" or arch is None:
        return spec, state, notes
    if layout == TIMM_VIT:
        from .timm_vit import LayoutError, read_layout, to_token_vit

        try:
            tl = read_layout(state)
        except LayoutError as exc:
            raise CheckpointError(f"{spec.label}: {exc}") from None
        grid = (image_size // arch["patch_size"],) * 2
        if tl.dropped:
            notes.append(f"Left out {len(tl.dropped)} training-only keys ({_first(tl.dropped)}).")
        if tl.grid != grid:
            notes.append(_resampled(tl.grid, grid))
        built = _token_spec(spec, arch, image_size, tl.token_kwargs())
        return built, to_token_vit(state, tl, grid), notes
    if layout == TORCHVISION_VIT:
        pos = state["encoder.pos_embedding"]
        old = math.isqrt(pos.shape[1] - 1)
        grid = image_size // arch["patch_size"]
        if old * old == pos.shape[1] - 1 and old != grid and pos.shape[-1] == arch["hidden_dim"]:
            from .vit_tokens import resample_pos_embedding

            state = dict(state, **{"encoder.pos_embedding": resample_pos_embedding(pos, 1, (old, old), (grid, grid))})
            notes.append(_resampled((old, old), (grid, grid)))
        if spec.builder == known.TOKEN_VIT_BUILDER:
            head = state.get("heads.head.weight")
            spec = _token_spec(spec, arch, image_size,
                               dict(num_classes=head.shape[0] if head is not None else 0, dist_token=False,
                                    reg_tokens=0, global_pool="token", fc_norm=False, final_norm=True))
    return spec, state, notes


def _token_spec(spec: ModelSpec, arch: dict, image_size: int, tokens: dict) -> ModelSpec:
    """`spec` built as a TokenViT with its own architecture and the checkpoint's tokens and head."""
    n = tokens["num_classes"]
    classes = spec.classes
    if n == 0:
        classes = "none"
    elif n == 1000 and classes in ("none", "imagenet") and not spec.weights:
        classes = known.IMAGENET_NAMES  # "imagenet" reads the torchvision weights enum, absent here
    elif n != 1000 and classes in ("imagenet", known.IMAGENET_NAMES):
        classes = "none"
    kwargs = dict(arch, image_size=image_size, **tokens)
    return replace(spec, builder=known.TOKEN_VIT_BUILDER, builder_kwargs=kwargs, classes=classes)


def _detr_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Delegate to the DETR loader's own unwrapping when it is there."""
    try:
        from .detr_checkpoint import extract_state_dict
    except ImportError:
        return state
    return extract_state_dict(state)


# --------------------------------------------------------------------------- no model named


def infer_spec(state: dict[str, Tensor], source: str) -> tuple[ModelSpec, list[str]]:
    """The spec for a checkpoint from its keys and shapes alone, with a note saying what was
    inferred. Raises CheckpointError when the layout is not recognised."""
    state, _ = normalize_keys(state)
    layout = detect_layout(state)
    name = os.path.basename(source)
    if layout == TIMM_VIT or layout == TORCHVISION_VIT:
        return _infer_vit(state, layout, name)
    if layout == TORCHVISION_SWIN:
        return _infer_swin(state, name)
    if layout == DETR:
        return _infer_detr(state, name)
    raise CheckpointError(
        f"Cannot tell which model {name!r} is for: its keys ({_first(list(state), 5)}) match no known "
        "layout (torchvision ViT/Swin, DINO/DeiT/MAE/timm ViT, official DETR). Name the model, e.g. "
        "model='vit_b_16'.")


def _infer_vit(state: dict[str, Tensor], layout: str, file_name: str) -> tuple[ModelSpec, list[str]]:
    if layout == TIMM_VIT:
        from .timm_vit import LayoutError, read_layout

        try:
            tl = read_layout(state)
        except LayoutError as exc:
            raise CheckpointError(f"{file_name!r}: {exc}") from None
        shape = dict(patch_size=tl.patch_size, num_layers=tl.num_layers, hidden_dim=tl.hidden_dim,
                     mlp_dim=tl.mlp_dim)
        grid, head_rows = tl.grid, tl.num_classes
        tokens = _token_words(tl.dist_token, tl.reg_tokens, tl.num_classes)
    else:
        pos = state["encoder.pos_embedding"]
        shape = dict(patch_size=state["conv_proj.weight"].shape[-1],
                     num_layers=len({k.split(".")[2] for k in state if k.startswith("encoder.layers.")}),
                     hidden_dim=pos.shape[-1], mlp_dim=_torchvision_mlp_dim(state))
        side = math.isqrt(pos.shape[1] - 1)
        grid = (side, side)
        head = state.get("heads.head.weight")
        head_rows = head.shape[0] if head is not None else 0
        tokens = _token_words(False, 0, head_rows)
    size = grid[0] * shape["patch_size"]
    # Specs of this shape know the head count, which the state dict does not record.
    matches = [s for s in all_specs() if (a := known.arch_of(s)) and
               all(a[k] == v for k, v in shape.items())]
    spec = next((s for s in matches if _file_name_of(s) == file_name), None)  # a known download
    if spec is None and layout == TORCHVISION_VIT and head_rows == 1000:
        spec = next((_at_size(s, size) for s in matches if s.builder in known.TORCHVISION_VIT_ARCH
                     and _at_size(s, size)), None)
    if spec is not None:
        how = f"{_heads_word(known.arch_of(spec)['num_heads'])}, as {spec.name}"
    else:
        heads = _heads_for(shape["hidden_dim"], matches, file_name)
        how = (f"{_heads_word(heads)}, as {matches[0].name}" if matches else
               f"{_heads_word(heads)} (width / 64: the checkpoint does not record heads; name the model if wrong)")
        label = f"{_size_word(shape['hidden_dim'])}/{shape['patch_size']}"
        spec = ModelSpec(os.path.splitext(file_name)[0], "vit", f"ViT-{label} ({file_name})",
                         known.TOKEN_VIT_BUILDER, Preprocess("center_crop", size, resize=round(size / 0.875)),
                         builder_kwargs=dict(shape, num_heads=heads), classes="none", group="Checkpoint files")
    note = (f"Inferred from {file_name!r} ({layout} keys): ViT, patch {shape['patch_size']}, "
            f"{shape['num_layers']} layers, width {shape['hidden_dim']}, {how}; {tokens}; "
            f"input {spec.preprocess.size}x{spec.preprocess.size}, ImageNet mean/std assumed.")
    return spec, [note]


def _at_size(spec: ModelSpec, size: int) -> ModelSpec | None:
    """`spec` with the preprocessing whose input size is `size` (vit_h_14's SWAG weights: 518)."""
    if spec.preprocess.size == size:
        return spec
    pre = spec.pretrained_preprocess
    return replace(spec, preprocess=pre) if pre is not None and pre.size == size else None


def _torchvision_mlp_dim(state: dict[str, Tensor]) -> int:
    for suffix in ("mlp.0.weight", "mlp.linear_1.weight"):  # current and pre-0.13 torchvision names
        key = f"encoder.layers.encoder_layer_0.{suffix}"
        if key in state:
            return state[key].shape[0]
    raise CheckpointError("torchvision ViT checkpoint without an MLP in encoder_layer_0")


def _heads_for(width: int, matches: list[ModelSpec], file_name: str) -> int:
    if matches:
        return known.arch_of(matches[0])["num_heads"]
    if width % 64:
        raise CheckpointError(f"Cannot infer the head count of {file_name!r} (width {width} is not a "
                              "multiple of 64): name the model.")
    return width // 64


def _heads_word(n: int) -> str:
    return f"{n} head" + ("s" if n != 1 else "")


def _token_words(dist: bool, regs: int, classes: int) -> str:
    words = ["class token"] + (["distillation token"] if dist else []) + ([f"{regs} register tokens"] if regs else [])
    head = f"{classes}-class head" if classes else "no classification head"
    return " + ".join(words) + f", {head}"


def _size_word(width: int) -> str:
    return {192: "Ti", 384: "S", 768: "B", 1024: "L", 1280: "H", 1536: "g"}.get(width, f"w{width}")


def _file_name_of(spec: ModelSpec) -> str | None:
    from .weights import weights_url

    url = weights_url(spec)
    return os.path.basename(url) if url else None


def _infer_swin(state: dict[str, Tensor], file_name: str) -> tuple[ModelSpec, list[str]]:
    v2 = any("cpb_mlp" in k for k in state)
    width = state["features.0.0.weight"].shape[0]
    depth3 = len({k.split(".")[2] for k in state if k.startswith("features.5.")})
    size = {(96, 6): "t", (96, 18): "s", (128, 18): "b"}.get((width, depth3))
    if size is None:
        raise CheckpointError(f"{file_name!r} is a torchvision Swin of no known size (width {width}, "
                              f"{depth3} blocks in stage 3): name the model.")
    spec = get_spec(f"swin_{'v2_' if v2 else ''}{size}")
    return spec, [f"Inferred from {file_name!r} (torchvision Swin keys): {spec.label}."]


def _infer_detr(state: dict[str, Tensor], file_name: str) -> tuple[ModelSpec, list[str]]:
    try:
        from .detr import DETR_PRESETS
        from .detr_checkpoint import config_from_state_dict
    except ImportError:
        raise CheckpointError(f"{file_name!r} is a DETR checkpoint; name the DETR model to load it.") from None
    try:
        config = config_from_state_dict(state)
    except ValueError as exc:
        raise CheckpointError(f"{file_name!r}: {exc}") from None
    dc5 = "dc5" in file_name.lower()  # dilation leaves no trace in the weights; the official names say it
    config = config.with_changes(dilation=dc5)
    name = next((n for n, c in DETR_PRESETS.items() if c == config), None)
    try:
        spec = get_spec(name) if name else None
    except KeyError:
        spec = None
    if spec is None:
        raise CheckpointError(f"{file_name!r} is a DETR checkpoint ({config.backbone}, {config.num_classes} "
                              "classes) that matches no registered DETR model: name the model.")
    return spec, [f"Inferred from {file_name!r} (DETR keys): {spec.label}"
                  + ("" if dc5 else "; not DC5 (the file name does not say dc5)") + "."]


def _resampled(old: tuple[int, int], new: tuple[int, int]) -> str:
    return (f"Position embeddings resampled (bicubic) from the checkpoint's {old[0]}x{old[1]} patch grid "
            f"to {new[0]}x{new[1]}.")


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")
