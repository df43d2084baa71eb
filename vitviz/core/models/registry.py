"""The built-in models: what each is, how its input is prepared, where its weights live.

Plain data, no torch: the GUI lists these before torch has been imported.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the model's input. kind: "center_crop" (torchvision ImageClassification),
    "resize" (fixed size, aspect not kept), "resize_crop" (square `resize` x `resize`, then a center
    crop of `size`: HF DeiT) or "resize_short" (DETR: shorter side, no crop). `resample` is the
    interpolation. `convention` is whose pixel operations to reproduce exactly: "torchvision"
    (transforms' functional resize, center_crop rounding an odd margin) or "transformers" (Hugging
    Face's image processors: transforms.v2's uint8 resize kernel, which differs by up to one grey
    level, and a crop offset that truncates the margin's half)."""

    kind: str
    size: int  # crop size, square size, or the shorter side
    resize: int = 0  # center_crop only: shorter side before the crop
    max_size: int | None = None  # resize_short only
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    resample: str = "bilinear"  # "bilinear" | "bicubic" | "nearest"
    convention: str = "torchvision"  # "torchvision" | "transformers"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "vit" | "swin" | "detr"
    label: str
    builder: str  # torchvision builder name, or a vitviz builder key
    preprocess: Preprocess
    weights: str | None = None  # torchvision weights enum member, e.g. "ViT_B_16_Weights.IMAGENET1K_V1"
    # the same architecture at another input size (vit_h_14's SWAG weights are trained at 518)
    pretrained_preprocess: Preprocess | None = None
    builder_kwargs: dict = field(default_factory=dict)
    classes: str = "imagenet"  # which class-name list the logits index
    group: str = ""  # heading in the model picker
    bundled: str | None = None  # trained weights shipped in resources/ (path inside it): the demo models
    labels: tuple[str, ...] | None = None  # class names given with the model (HF config.json id2label)
    source: str = ""  # "" (vitviz/torchvision), "hf" (hub cache, transformers layout) or "timm"


_IMAGENET = Preprocess("center_crop", 224, resize=256)


def _vit(name: str, label: str, weights: str, pre: Preprocess = _IMAGENET,
         pretrained_pre: Preprocess | None = None, **kw) -> ModelSpec:
    return ModelSpec(name, "vit", label, name, pre, weights, pretrained_pre, kw, group="ViT (ImageNet)")


def _swin(name: str, label: str, weights: str, pre: Preprocess) -> ModelSpec:
    return ModelSpec(name, "swin", label, name, pre, weights, group="Swin (ImageNet)")


_SPECS: list[ModelSpec] = [
    _vit("vit_b_16", "ViT-B/16", "ViT_B_16_Weights.IMAGENET1K_V1"),
    _vit("vit_b_32", "ViT-B/32", "ViT_B_32_Weights.IMAGENET1K_V1"),
    _vit("vit_l_16", "ViT-L/16", "ViT_L_16_Weights.IMAGENET1K_V1", Preprocess("center_crop", 224, resize=242)),
    _vit("vit_l_32", "ViT-L/32", "ViT_L_32_Weights.IMAGENET1K_V1"),
    _vit("vit_h_14", "ViT-H/14", "ViT_H_14_Weights.IMAGENET1K_SWAG_E2E_V1",
         pretrained_pre=Preprocess("center_crop", 518, resize=518)),
    _swin("swin_t", "Swin-T", "Swin_T_Weights.IMAGENET1K_V1", Preprocess("center_crop", 224, resize=232)),
    _swin("swin_s", "Swin-S", "Swin_S_Weights.IMAGENET1K_V1", Preprocess("center_crop", 224, resize=246)),
    _swin("swin_b", "Swin-B", "Swin_B_Weights.IMAGENET1K_V1", Preprocess("center_crop", 224, resize=238)),
    _swin("swin_v2_t", "Swin-V2-T", "Swin_V2_T_Weights.IMAGENET1K_V1", Preprocess("center_crop", 256, resize=260)),
    _swin("swin_v2_s", "Swin-V2-S", "Swin_V2_S_Weights.IMAGENET1K_V1", Preprocess("center_crop", 256, resize=260)),
    _swin("swin_v2_b", "Swin-V2-B", "Swin_V2_B_Weights.IMAGENET1K_V1", Preprocess("center_crop", 256, resize=272)),
]

_BY_NAME = {s.name: s for s in _SPECS}


def register(spec: ModelSpec) -> None:
    """Add a model family's specs (DETR, the demo models) to the registry."""
    _BY_NAME[spec.name] = spec
    if spec not in _SPECS:
        _SPECS.append(spec)


# Names that are not in the table but stand for a model found elsewhere (a hub id, "timm:NAME"):
# (accepts(name) -> bool, spec_for(name) -> ModelSpec), registered by the modules that read them.
_RESOLVERS: list[tuple] = []


def register_resolver(accepts, spec_for) -> None:
    """Let `spec_for(name)` answer for names `accepts(name)` says are its own (it raises KeyError,
    or a LookupError saying why, when it cannot)."""
    if (accepts, spec_for) not in _RESOLVERS:
        _RESOLVERS.append((accepts, spec_for))


def get_spec(name: str) -> ModelSpec:
    _ensure_extensions()
    if name in _BY_NAME:
        return _BY_NAME[name]
    for accepts, spec_for in _RESOLVERS:
        if accepts(name):
            return spec_for(name)
    known = ", ".join(sorted(n for n, s in _BY_NAME.items() if not s.source))
    raise KeyError(f"Unknown model {name!r}. Known models: {known}; or a Hugging Face hub id in your "
                   "cache (ORG/NAME), or timm:NAME") from None


def all_specs() -> list[ModelSpec]:
    _ensure_extensions()
    return list(_SPECS)


_EXTENSIONS_LOADED = False
ENTRY_POINT_GROUP = "vitviz.models"  # modules that register ModelSpecs when imported


def _ensure_extensions() -> None:
    """Import the modules that register further specs (kept torch-free so listing stays cheap): core's
    own, then every `vitviz.models` entry point (vitviz's demo models, and any installed package's)."""
    global _EXTENSIONS_LOADED
    if _EXTENSIONS_LOADED:
        return
    _EXTENSIONS_LOADED = True
    import importlib
    from importlib.metadata import entry_points

    for mod in ("vitviz.core.models.detr_specs", "vitviz.core.models.known_checkpoints",
                "vitviz.core.models.clip_specs",  # before hf_specs: it claims the hub's CLIP ids
                "vitviz.core.models.hf_specs", "vitviz.core.models.timm_specs"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken third-party plug-in must not take the model list down
            import warnings

            warnings.warn(f"model plug-in {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)
