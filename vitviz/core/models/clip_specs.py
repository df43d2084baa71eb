"""CLIP image towers as registry names, opened as ViTs (clip_vit.CLIPTokenViT):

    "open_clip:ViT-B-32/laion2b_s34b_b79k"   an open_clip model and pretrained tag (weights from the
                                             Hugging Face hub cache, where open_clip downloads them)
    "open_clip:ViT-B-32-quickgelu//path/to/checkpoint.pt"   an open_clip model and a checkpoint file
    "openai/clip-vit-base-patch32"           a transformers CLIPModel in the hub cache

Offline: file reads and open_clip's bundled configs only (importing open_clip is needed for the
open_clip names, not for the Hugging Face ones). The text tower is opened only when a text target
asks for it (clip_text).
"""
from __future__ import annotations

from pathlib import Path

from .hf_cache import HubCacheError, read_json
from .registry import ModelSpec, Preprocess, register_resolver

PREFIX = "open_clip:"
CLIP_GROUP = "CLIP image towers"
CLIP_BUILDER = "vitviz.core.models.clip_vit:build"
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_INSTALL = "pip install 'vitviz[clip]'"


def _open_clip():
    try:
        import open_clip
    except ModuleNotFoundError:
        raise HubCacheError(f"open_clip models need open_clip: {_INSTALL}") from None
    return open_clip


def _is_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith((".pt", ".pth", ".bin", ".safetensors"))


def open_clip_weights_file(pcfg: dict) -> Path | None:
    """Where open_clip's download of a pretrained tag lives in the hub cache (its hf_hub entry:
    "ORG/NAME/" with the default file names, or "ORG/NAME/FILE"), or None. Offline."""
    from .hf_cache import snapshot_dir

    hub = pcfg.get("hf_hub") or ""
    if not hub:
        return None
    repo, filename = hub.rsplit("/", 1) if hub.count("/") > 1 else (hub, "")  # as open_clip splits it
    snap = snapshot_dir(repo)
    if snap is None:
        return None
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
    return next((snap / n for n in names if (snap / n).is_file()), None)


def _open_clip_spec(name: str) -> ModelSpec:
    open_clip = _open_clip()
    arch, _, tail = name[len(PREFIX):].partition("/")
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise HubCacheError(f"open_clip has no model {arch!r} (open_clip.list_models() lists them)")
    v = dict(cfg.get("vision_cfg", {}))
    why = _unsupported_open_clip(v)
    if why:
        raise HubCacheError(f"{name}: vitviz opens open_clip's plain ViT image towers; this one {why}")
    weights_file, pcfg = None, {}
    if tail and _is_path(tail):
        weights_file = str(Path(tail).expanduser())
    elif tail:
        pcfg = open_clip.get_pretrained_cfg(arch, tail) or {}
        if not pcfg:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
            raise HubCacheError(f"open_clip has no pretrained tag {tail!r} for {arch} (its tags: {tags})")
        found = open_clip_weights_file(pcfg)
        weights_file = str(found) if found else None
    width, size = int(v.get("width", 768)), int(v.get("image_size", 224))
    kw = dict(patch_size=int(v["patch_size"]), num_layers=int(v["layers"]),
              num_heads=width // int(v.get("head_width", 64)), hidden_dim=width,
              mlp_dim=int(width * float(v.get("mlp_ratio", 4.0))), embed_dim=int(cfg["embed_dim"]),
              quick_gelu=bool(cfg.get("quick_gelu", False)),
              layer_norm_eps=float((v.get("norm_kwargs") or {}).get("eps", 1e-5)),
              image_size=size, library="open_clip", arch=arch, weights_file=weights_file)
    resample = pcfg.get("interpolation", "bicubic")
    mean, std = tuple(pcfg.get("mean", _OPENAI_MEAN)), tuple(pcfg.get("std", _OPENAI_STD))
    mode = pcfg.get("resize_mode", "shortest")
    if mode == "shortest":
        pre = Preprocess("center_crop", size, resize=size, mean=mean, std=std, resample=resample)
    elif mode == "squash":
        pre = Preprocess("resize", size, mean=mean, std=std, resample=resample)
    else:
        raise HubCacheError(f"{name}: open_clip resize_mode {mode!r} is not reproduced by vitviz")
    shown = Path(tail).name if _is_path(tail) else tail
    return ModelSpec(name, "vit", f"open_clip {arch}" + (f" ({shown})" if tail else ""), CLIP_BUILDER, pre,
                     weights=None, builder_kwargs=kw, classes="none", group=CLIP_GROUP, source="clip")


def _activation_note(spec: ModelSpec) -> list[str]:
    """open_clip runs the model config's activation whatever the tag was trained with (and warns):
    so does vitviz, and says so."""
    arch, _, tag = spec.name[len(PREFIX):].partition("/")
    if spec.builder_kwargs["library"] != "open_clip" or not tag or _is_path(tag):
        return []
    trained = bool(_open_clip().get_pretrained_cfg(arch, tag).get("quick_gelu", False))
    runs = spec.builder_kwargs["quick_gelu"]
    if trained == runs:
        return []
    name = lambda q: "QuickGELU" if q else "GELU"  # noqa: E731
    return [f"The {tag} weights were trained with {name(trained)}, but {arch} runs {name(runs)} (open_clip "
            f"warns the same): open {arch + '-quickgelu' if trained else arch.removesuffix('-quickgelu')} instead."]


def _unsupported_open_clip(v: dict) -> str | None:
    if v.get("timm_model_name"):
        return f"is timm's {v['timm_model_name']}"
    if v.get("hf_model_name"):
        return f"is transformers' {v['hf_model_name']}"
    if not isinstance(v.get("layers"), int):
        return "is a ResNet"
    for key, why in (("attentional_pool", "pools with attention"), ("ls_init_value", "has LayerScale"),
                     ("no_ln_pre", "has no ln_pre"), ("final_ln_after_pool", "normalises after pooling"),
                     ("qk_norm", "normalises q/k"), ("act_kwargs", "has a custom activation"),
                     ("block_type", "has custom blocks"), ("patch_dropout", None)):
        if v.get(key) and why:
            return why
    if v.get("pool_type", "tok") != "tok":
        return f"pools with {v['pool_type']!r}"
    if v.get("pos_embed_type", "learnable") != "learnable":
        return f"has a {v['pos_embed_type']} position embedding"
    return None


def hf_clip_config(snapshot: Path) -> dict | None:
    cfg_path = snapshot / "config.json"
    if not cfg_path.is_file():
        return None
    cfg = read_json(cfg_path)
    return cfg if cfg.get("model_type") == "clip" else None


def _hf_spec(name: str) -> ModelSpec:
    from . import hf_cache
    from .hf_specs import HF_GROUP, preprocess_from

    repo_id, _, revision = name.partition("@")
    snapshot = hf_cache.require_snapshot(repo_id, revision or "main")
    cfg = hf_clip_config(snapshot)
    v = cfg.get("vision_config") or {}
    act = v.get("hidden_act", "quick_gelu")
    if act not in ("quick_gelu", "gelu"):
        raise HubCacheError(f"{name}: the CLIP image tower's activation {act!r} is not supported")
    size = int(v.get("image_size", 224))
    proc = snapshot / "preprocessor_config.json"
    pre = (preprocess_from(read_json(proc), v)[0] if proc.is_file() else
           Preprocess("center_crop", size, resize=size, mean=_OPENAI_MEAN, std=_OPENAI_STD, resample="bicubic",
                      convention="transformers"))
    weights = hf_cache.weights_file(snapshot)
    kw = dict(patch_size=int(v.get("patch_size", 32)), num_layers=int(v.get("num_hidden_layers", 12)),
              num_heads=int(v.get("num_attention_heads", 12)), hidden_dim=int(v.get("hidden_size", 768)),
              mlp_dim=int(v.get("intermediate_size", 3072)), embed_dim=int(cfg.get("projection_dim", 512)),
              quick_gelu=act == "quick_gelu", layer_norm_eps=float(v.get("layer_norm_eps", 1e-5)),
              image_size=pre.size, library="transformers", arch=str(snapshot),
              weights_file=str(weights) if weights else None)
    return ModelSpec(name, "vit", f"{repo_id} (CLIP image tower)", CLIP_BUILDER, pre, weights=None,
                     builder_kwargs=kw, classes="none", group=f"{HF_GROUP}: CLIP", source="clip")


def cached_specs() -> list:
    """(spec, cache entry) of every transformers CLIP model in the hub cache, for the model picker and
    `vitviz models` (hf_specs.cached_specs lists the other families). Offline, file reads only."""
    from . import hf_cache

    out = []
    for entry in hf_cache.list_cached():
        if entry.library == "transformers" and entry.model_type == "clip":
            try:
                out.append((_hf_spec(entry.repo_id), entry))
            except HubCacheError:
                continue
    return out


def accepts(name) -> bool:
    """open_clip:NAME, or a hub id whose cached snapshot is a transformers CLIPModel."""
    if not isinstance(name, str):
        return False
    if name.startswith(PREFIX):
        return len(name) > len(PREFIX)
    from . import hf_cache

    repo_id, _, revision = name.partition("@")
    if not hf_cache.looks_like_repo_id(repo_id):
        return False
    snap = hf_cache.snapshot_dir(repo_id, revision or "main")
    try:
        return snap is not None and hf_clip_config(snap) is not None
    except HubCacheError:
        return False


def spec_for(name: str) -> ModelSpec:
    return _open_clip_spec(name) if name.startswith(PREFIX) else _hf_spec(name)


def clip_state(spec: ModelSpec, module):
    """(image-tower state in `module`'s keys or None, source label, notes) for external.py."""
    from .clip_vit import image_state

    kw = spec.builder_kwargs
    notes = _activation_note(spec)
    path = kw.get("weights_file")
    if not path:
        notes.append(f"The weights of {spec.label} are not on disk (the hub cache: {_where(spec)}); running "
                     "UNTRAINED random weights. vitviz never downloads them on its own.")
        return None, None, notes
    return image_state(kw["library"], read_clip_state(path), module), Path(path).name, notes


def read_clip_state(path) -> dict:
    """The checkpoint's tensors (safe readers only), training wrappers ("state_dict", "module.") off."""
    from .state_files import read_state_dict

    state = read_state_dict(path)
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def _where(spec: ModelSpec) -> str:
    if spec.builder_kwargs["library"] == "transformers":
        return f"`huggingface-cli download {spec.name}`"
    arch, _, tag = spec.name[len(PREFIX):].partition("/")
    return f"open_clip.create_model({arch!r}, pretrained={tag!r}) fetches them"


def weights_on_disk(spec: ModelSpec) -> str:
    """"cached" or "downloadable", looked up again (the weights may have arrived since the spec)."""
    if spec.builder_kwargs.get("weights_file"):
        return "cached"
    try:
        return "cached" if spec_for(spec.name).builder_kwargs.get("weights_file") else "downloadable"
    except LookupError:
        return "downloadable"


register_resolver(accepts, spec_for)
