"""The Hugging Face hub cache, read offline: which models are there and where their files are.

The layout (huggingface_hub's, shared by transformers, timm and open_clip):
    <cache>/models--ORG--NAME/refs/main            the commit hash "main" points at
    <cache>/models--ORG--NAME/snapshots/<hash>/    config.json, model.safetensors, ... (links to blobs/)
<cache> is $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
~/.cache/huggingface/hub, as huggingface_hub resolves it. Plain file reads: no huggingface_hub, no
torch, no network, so the model list can show the cache before anything heavy is imported.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

# config.json "model_type" -> vitviz family (the converters in hf_convert handle these)
HF_FAMILIES: dict[str, str] = {
    "vit": "vit", "deit": "vit", "dinov2": "vit", "dinov2_with_registers": "vit",
    "swin": "swin", "swinv2": "swin", "detr": "detr",
}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HubCacheError(KeyError):
    """A hub id that is not (usably) in the cache; the message says where vitviz looked. A KeyError,
    as for any unknown model name, but printed as plain text."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def hub_cache_dir() -> Path:
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HUGGINGFACE_HUB_CACHE"):  # the older name huggingface_hub still honours
        return Path(env["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "hub"


def looks_like_repo_id(name: str) -> bool:
    """"ORG/NAME" (one slash, hub characters): how a model id differs from a registry name."""
    return isinstance(name, str) and bool(_REPO_ID.match(name)) and ".." not in name


def repo_folder(repo_id: str, cache: Path | None = None) -> Path:
    return (cache or hub_cache_dir()) / ("models--" + repo_id.replace("/", "--"))


def snapshot_dir(repo_id: str, revision: str = "main", cache: Path | None = None) -> Path | None:
    """The snapshot folder of `repo_id` at `revision` (a ref such as "main", or a commit hash);
    None when it is not in the cache. With no refs/ file, the only (or newest) snapshot."""
    folder = repo_folder(repo_id, cache)
    snaps = folder / "snapshots"
    if not snaps.is_dir():
        return None
    ref = folder / "refs" / revision
    if ref.is_file():
        commit = ref.read_text().strip()
        return snaps / commit if (snaps / commit).is_dir() else None
    if (snaps / revision).is_dir():
        return snaps / revision
    found = sorted((p for p in snaps.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return found[-1] if found and revision == "main" else None


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HubCacheError(f"Cannot read {path}: {exc}") from None


def weights_file(snapshot: Path) -> Path | None:
    for name in WEIGHT_FILES:
        if (snapshot / name).is_file():
            return snapshot / name
    return None


@dataclass(frozen=True)
class CachedModel:
    """One model in the hub cache."""

    repo_id: str
    snapshot: Path
    model_type: str  # config.json "model_type" ("" for timm / open_clip repositories)
    family: str | None  # vitviz family, None when vitviz cannot run it
    library: str  # "transformers", "timm" or "open_clip"
    size_bytes: int  # of the files in the snapshot (weights mostly)
    has_weights: bool


def _snapshot_size(snapshot: Path) -> int:
    total = 0
    for p in snapshot.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size  # follows the link into blobs/
        except OSError:
            pass
    return total


def describe(repo_id: str, snapshot: Path) -> CachedModel:
    config = snapshot / "config.json"
    cfg = read_json(config) if config.is_file() else {}
    if (snapshot / "open_clip_config.json").is_file():
        library, model_type = "open_clip", ""
    elif "architecture" in cfg and "model_type" not in cfg:  # timm's hub config
        library, model_type = "timm", ""
    else:
        library, model_type = "transformers", str(cfg.get("model_type", ""))
    family = HF_FAMILIES.get(model_type) if library == "transformers" else None
    has = weights_file(snapshot) is not None or (snapshot / "open_clip_model.safetensors").is_file()
    return CachedModel(repo_id, snapshot, model_type, family, library, _snapshot_size(snapshot), has)


def list_cached(cache: Path | None = None) -> list[CachedModel]:
    """Every model repository in the cache with a snapshot at "main" (or its only snapshot)."""
    cache = cache or hub_cache_dir()
    if not cache.is_dir():
        return []
    out = []
    for folder in sorted(cache.glob("models--*")):
        parts = folder.name[len("models--"):].split("--", 1)
        if len(parts) != 2:
            continue
        repo_id = "/".join(parts)
        snap = snapshot_dir(repo_id, cache=cache)
        if snap is None:
            continue
        try:
            out.append(describe(repo_id, snap))
        except HubCacheError:
            continue  # a damaged config: not listed, and opening it says why
    return out


def require_snapshot(repo_id: str, revision: str = "main") -> Path:
    """The snapshot folder, or HubCacheError naming the cache and how to fill it."""
    snap = snapshot_dir(repo_id, revision)
    if snap is None:
        raise HubCacheError(
            f"{repo_id!r} is not in the Hugging Face hub cache ({hub_cache_dir()}; set HF_HOME or "
            "HF_HUB_CACHE if yours is elsewhere). vitviz never downloads on its own: fetch it with "
            f"`huggingface-cli download {repo_id}` (pip install 'vitviz[hf]').")
    return snap
