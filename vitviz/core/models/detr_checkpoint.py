"""Load DETR weights: official facebookresearch/detr checkpoints ({"model": state_dict, ...})
or bare state dicts, strictly, with an error that says exactly which keys did not fit."""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from .detr import DetrConfig

_SHOW = 10  # keys listed per category in error messages


class CheckpointError(ValueError):
    """Weights do not fit the model; `missing`, `unexpected` and `mismatched` hold the keys
    ((key, checkpoint shape, model shape) for mismatches)."""

    def __init__(self, message: str, missing: list[str] | None = None,
                 unexpected: list[str] | None = None,
                 mismatched: list[tuple[str, tuple, tuple]] | None = None) -> None:
        super().__init__(message)
        self.missing = missing or []
        self.unexpected = unexpected or []
        self.mismatched = mismatched or []


def extract_state_dict(state: Mapping) -> dict[str, torch.Tensor]:
    """The tensor dict inside an official checkpoint (key "model") or a bare state dict, with a
    DataParallel "module." prefix removed. BatchNorm counters (num_batches_tracked) are dropped:
    DETR's frozen batch norm has none and ignores them, as the official loader does."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"expected a dict of tensors, got {type(state).__name__}")
    if "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    sd = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError("the checkpoint holds no tensors")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return {k: v for k, v in sd.items() if not k.endswith(".num_batches_tracked")}


def _listing(title: str, items: list[str]) -> str:
    more = f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return f"{len(items)} {title}: " + ", ".join(items[:_SHOW]) + more


def compare_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor]
                       ) -> tuple[list[str], list[str], list[tuple[str, tuple, tuple]]]:
    """(missing, unexpected, mismatched) keys of `sd` against the model's own state dict."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in sd.items()
                  if k in own and tuple(v.shape) != tuple(own[k].shape)]
    return missing, unexpected, mismatched


def load_detr_state_dict(model: nn.Module, state: Mapping) -> None:
    """Copy weights into `model` with strict=True, or raise CheckpointError naming the first
    keys that are missing, unexpected, or of the wrong shape (with counts)."""
    sd = extract_state_dict(state)
    missing, unexpected, mismatched = compare_state_dict(model, sd)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(_listing("missing keys", missing))
        if unexpected:
            parts.append(_listing("unexpected keys", unexpected))
        if mismatched:
            shapes = [f"{k} checkpoint {a} vs model {b}" for k, a, b in mismatched]
            parts.append(_listing("shape mismatches", shapes))
        raise CheckpointError("checkpoint does not fit this DETR model: " + "; ".join(parts),
                              missing, unexpected, mismatched)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:  # e.g. dtype problems not caught by the key/shape check
        raise CheckpointError(f"checkpoint could not be loaded: {e}") from e


def read_detr_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint file, read without unpickling arbitrary objects."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpicklable content, truncated file, not a torch file ...
        raise CheckpointError(f"cannot read checkpoint {os.fspath(path)!r}: {e}") from e
    return extract_state_dict(state)


def load_detr_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    load_detr_state_dict(model, read_detr_checkpoint(path))


def _count_blocks(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    ids = {int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)}
    return max(ids) + 1 if ids else 0


def config_from_state_dict(state: Mapping, nheads: int = 8, dilation: bool = False) -> DetrConfig:
    """The DetrConfig whose shapes match a checkpoint. Head count and DC5 dilation leave no trace
    in the weights, so they are given (DETR's checkpoints use 8 heads; DC5 ones say so by name)."""
    sd = extract_state_dict(state)
    try:
        d_model = sd["query_embed.weight"].shape[1]
        layer3 = _count_blocks(sd, "backbone.0.body.layer3.")
        bottleneck = "backbone.0.body.layer1.0.conv3.weight" in sd
        backbone = {(False, 2): "resnet18", (False, 6): "resnet34",
                    (True, 6): "resnet50", (True, 23): "resnet101"}.get((bottleneck, layer3))
        if backbone is None:
            raise CheckpointError(f"unrecognised ResNet backbone ({layer3} blocks in layer3)")
        return DetrConfig(
            backbone=backbone,
            dilation=dilation,
            d_model=d_model,
            nheads=nheads,
            enc_layers=_count_blocks(sd, "transformer.encoder.layers."),
            dec_layers=_count_blocks(sd, "transformer.decoder.layers."),
            dim_feedforward=sd["transformer.encoder.layers.0.linear1.weight"].shape[0],
            num_queries=sd["query_embed.weight"].shape[0],
            num_classes=sd["class_embed.weight"].shape[0] - 1,
        )
    except KeyError as e:
        raise CheckpointError(f"not a DETR checkpoint: no {e.args[0]!r}") from e
