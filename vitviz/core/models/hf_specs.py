"""Hugging Face hub ids as registry names: "google/vit-base-patch16-224" -> a ModelSpec read from the
cached snapshot's config.json (shape, family, id2label) and preprocessor_config.json (size, crop,
mean/std, resample). Plain data, no torch: imported when the registry is first used.
"""
from __future__ import annotations

from pathlib import Path

from . import hf_cache
from .hf_cache import CachedModel, HubCacheError, read_json
from .registry import ModelSpec, Preprocess, register_resolver

HF_GROUP = "Hugging Face hub cache"
HF_BUILDER = "vitviz.core.models.hf_convert:build"
# PIL's resample codes, as the processors store them
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
_SHORTEST_EDGE_BY_DEFAULT = ("BitImageProcessor", "CLIPImageProcessor", "ConvNextImageProcessor")


def _side(value, what: str) -> int:
    """A square size from an int or {"height", "width"}; {"shortest_edge"} is handled by the caller."""
    if isinstance(value, int):
        return value
    h, w = value.get("height"), value.get("width")
    if h is None or h != w:
        raise HubCacheError(f"preprocessor_config.json {what} {value}: vitviz needs a square input")
    return int(h)


def preprocess_from(proc: dict, cfg: dict) -> tuple[Preprocess, list[str]]:
    """The Preprocess equal to the checkpoint's image processor, and notes on what was assumed."""
    notes: list[str] = []
    kind_of = str(proc.get("image_processor_type") or proc.get("feature_extractor_type") or "")
    resample = _RESAMPLE.get(int(proc.get("resample", 2)))
    if resample is None:
        notes.append(f"The processor's resample {proc.get('resample')} is approximated by bicubic.")
        resample = "bicubic"
    if proc.get("do_rescale", True) and abs(float(proc.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-9:
        raise HubCacheError(f"rescale_factor {proc['rescale_factor']}: vitviz scales pixels by 1/255")
    if proc.get("do_normalize", True):
        mean = tuple(float(v) for v in proc.get("image_mean", (0.5, 0.5, 0.5)))
        std = tuple(float(v) for v in proc.get("image_std", (0.5, 0.5, 0.5)))
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    common = dict(mean=mean, std=std, resample=resample, convention="transformers")
    size = proc.get("size", cfg.get("image_size", 224))
    if isinstance(size, int) and ("Detr" in kind_of or "max_size" in proc):
        size = {"shortest_edge": size, "longest_edge": proc.get("max_size", 1333)}
    elif isinstance(size, int) and kind_of.startswith(_SHORTEST_EDGE_BY_DEFAULT):
        size = {"shortest_edge": size}
    crop = proc.get("crop_size") if proc.get("do_center_crop") else None
    if not proc.get("do_resize", True):
        raise HubCacheError("an image processor that does not resize: vitviz needs a fixed input size")
    if isinstance(size, dict) and "shortest_edge" in size:
        short = int(size["shortest_edge"])
        if crop is not None:
            return Preprocess("center_crop", _side(crop, "crop_size"), resize=short, **common), notes
        longest = size.get("longest_edge")
        return Preprocess("resize_short", short, max_size=int(longest) if longest else None, **common), notes
    side = _side(size, "size")
    if crop is not None:
        return Preprocess("resize_crop", _side(crop, "crop_size"), resize=side, **common), notes
    return Preprocess("resize", side, **common), notes


def _labels(cfg: dict) -> tuple[str, ...] | None:
    id2label = cfg.get("id2label") or {}
    archs = " ".join(cfg.get("architectures") or [])
    if not id2label or not ("ForImageClassification" in archs or "ForObjectDetection" in archs):
        return None
    return tuple(str(id2label.get(str(i), id2label.get(i, f"class {i}"))) for i in range(len(id2label)))


def spec_for_snapshot(repo_id: str, snapshot: Path) -> ModelSpec:
    cfg_path = snapshot / "config.json"
    if not cfg_path.is_file():
        raise HubCacheError(f"{repo_id!r} in the hub cache has no config.json ({snapshot})")
    cfg = read_json(cfg_path)
    info = hf_cache.describe(repo_id, snapshot)
    if info.library != "transformers":
        hint = f" Open it as model='timm:{repo_id.split('/', 1)[1]}'." if info.library == "timm" else ""
        raise HubCacheError(f"{repo_id!r} is a {info.library} model, not a transformers one.{hint}")
    if info.family is None:
        raise HubCacheError(f"{repo_id!r} is a {cfg.get('model_type')!r} model; vitviz opens Hugging Face "
                            f"{', '.join(sorted(hf_cache.HF_FAMILIES))} models")
    proc_path = snapshot / "preprocessor_config.json"
    if proc_path.is_file():
        pre, _ = preprocess_from(read_json(proc_path), cfg)
    else:  # the processor transformers would use by default for this model type
        side = int(cfg.get("image_size", 224))
        pre = (Preprocess("resize_short", 800, max_size=1333) if info.family == "detr" else
               Preprocess("resize", side, mean=(0.5,) * 3, std=(0.5,) * 3))
    labels = _labels(cfg)
    return ModelSpec(repo_id, info.family, repo_id, HF_BUILDER, pre, weights=None,
                     builder_kwargs={"snapshot": str(snapshot), "input_size": pre.size},
                     classes="none", group=HF_GROUP, labels=labels, source="hf")


def spec_for(name: str) -> ModelSpec:
    """The spec of hub id `name` ("ORG/NAME", or "ORG/NAME@REVISION") from the local cache."""
    repo_id, _, revision = name.partition("@")
    return spec_for_snapshot(name, hf_cache.require_snapshot(repo_id, revision or "main"))


def accepts(name) -> bool:
    return isinstance(name, str) and hf_cache.looks_like_repo_id(name.partition("@")[0])


def cached_specs() -> list[tuple[ModelSpec, CachedModel]]:
    """Every hub-cache model vitviz can open, with its cache entry (size, snapshot): for the model
    picker and `vitviz models`. Offline, file reads only."""
    out = []
    for entry in hf_cache.list_cached():
        if entry.library != "transformers" or entry.family is None:
            continue
        try:
            out.append((spec_for_snapshot(entry.repo_id, entry.snapshot), entry))
        except HubCacheError:
            continue
    return out


register_resolver(accepts, spec_for)
