"""CLIP's text tower, for text targets: y = cos(image embedding, text embedding of a prompt).

Chefer et al.'s rule for CLIP: the score explained is the image-text similarity. The image side is
vitviz's CLIPTokenViT (so the gradient capture is the ViT one, grad_vit); the text side runs the
library's own text tower (open_clip's encode_text, transformers' get_text_features) with the
checkpoint's tokenizer, opened on the first prompt, once per loaded model. The text embedding is a
constant of the target: only the image tower is differentiated.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np

_TOWERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # image module -> TextTower
_LOCK = threading.Lock()


@dataclass(frozen=True)
class TextTarget:
    """A prompt as the target of a gradient method: its cosine similarity with the image, minus the
    contrast prompt's when there is one ("why this prompt rather than that one")."""

    prompt: str
    score: float  # cos(image, prompt) [- cos(image, contrast_prompt)]
    contrast_prompt: str = ""
    contrast: int = -1
    cls: int = -1

    @property
    def label(self) -> str:
        return repr(self.prompt) + (f" − {self.contrast_prompt!r}" if self.contrast_prompt else "")

    def to_json(self) -> dict:
        out = {"prompt": self.prompt, "cosine": self.score}
        if self.contrast_prompt:
            out["contrast_prompt"] = self.contrast_prompt
        return out


class TextTower:
    """encode(prompts) -> (k, D) unit-norm text embeddings; each prompt encoded once."""

    def __init__(self, encode, tokenize) -> None:
        self._encode, self._tokenize = encode, tokenize
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, prompts: list[str]) -> np.ndarray:
        import torch

        todo = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if todo:
            with torch.no_grad():
                emb = self._encode(self._tokenize(todo)).float()
            emb = emb / emb.norm(dim=-1, keepdim=True)
            self._cache.update(zip(todo, emb.cpu().numpy()))
        return np.stack([self._cache[p] for p in prompts])


def _open_clip_tower(kw: dict) -> TextTower:
    import torch

    from .clip_specs import _open_clip, read_clip_state

    open_clip = _open_clip()
    torch.manual_seed(0)
    model = open_clip.create_model(kw["arch"], pretrained=None)
    if kw.get("weights_file"):
        model.load_state_dict(read_clip_state(kw["weights_file"]), strict=True)
    model.visual = None  # the image side is vitviz's; free its copy
    model.eval()
    return TextTower(model.encode_text, open_clip.get_tokenizer(kw["arch"]))


def _transformers_tower(kw: dict) -> TextTower:
    try:
        import transformers
    except ModuleNotFoundError:
        raise ModuleNotFoundError("text targets of Hugging Face CLIP models need transformers: "
                                  "pip install 'vitviz[hf]'") from None
    from pathlib import Path

    from .errors import CheckpointError
    from .hf_cache import read_json

    snapshot = kw["arch"]
    cfg = read_json(Path(snapshot) / "config.json")  # the projection's size is CLIPConfig's, not the text config's
    text_cfg = transformers.CLIPTextConfig(**{**cfg.get("text_config", {}), "projection_dim": cfg.get("projection_dim", 512)})
    if kw.get("weights_file"):
        model, info = transformers.CLIPTextModelWithProjection.from_pretrained(
            snapshot, config=text_cfg, local_files_only=True, output_loading_info=True)
        bad = list(info.get("missing_keys", ())) + [str(k) for k in info.get("mismatched_keys", ())]
        if bad:
            raise CheckpointError(f"{snapshot}: the text tower does not fit its weights ({', '.join(bad[:5])})")
    else:  # random image weights: a random text tower too
        import torch

        torch.manual_seed(0)
        model = transformers.CLIPTextModelWithProjection(text_cfg)
    model.eval()
    tok = transformers.AutoTokenizer.from_pretrained(snapshot, local_files_only=True)

    def tokenize(prompts):
        return tok(prompts, padding=True, return_tensors="pt")

    return TextTower(lambda t: model(**t).text_embeds, tokenize)


def text_tower(loaded) -> TextTower:
    """The text tower of `loaded` (a CLIP model), opened once."""
    from .clip_vit import CLIPTokenViT

    module = loaded.module
    if not isinstance(module, CLIPTokenViT):
        raise ValueError(f"a text target needs a CLIP model (open_clip:NAME or a Hugging Face CLIP id); "
                         f"{loaded.spec.label} has no text tower")
    with _LOCK:
        tower = _TOWERS.get(module)
        if tower is None:
            kw = dict(loaded.spec.builder_kwargs)
            if not loaded.trained:  # random image weights: a random text tower too (open_clip)
                kw["weights_file"] = None
            tower = (_open_clip_tower if kw["library"] == "open_clip" else _transformers_tower)(kw)
            _TOWERS[module] = tower
    return tower


def text_embedding(analysis, prompt: str) -> np.ndarray:
    from ..gradients import model_of

    return text_tower(model_of(analysis)).encode([prompt])[0]


_IMAGE_ATTR = "_vitviz_clip_image_embedding"  # kept apart from the backward LRU: one small vector


def image_embedding(analysis) -> np.ndarray:
    """The analysed image's (unit-norm) embedding, computed once per analysis."""
    from ..gradients import model_of

    e = getattr(analysis, _IMAGE_ATTR, None)
    if e is None:
        import torch

        loaded = model_of(analysis)
        x = torch.from_numpy(np.ascontiguousarray(analysis.model_input)).unsqueeze(0).to(loaded.device)
        with torch.no_grad():
            e = loaded.module.image_embedding(x)[0].float()
        e = (e / e.norm()).cpu().numpy()
        object.__setattr__(analysis, _IMAGE_ATTR, e)
    return e


def text_target(analysis, prompt: str, contrast=-1) -> TextTarget:
    """The target's score: cos(image, prompt), minus cos(image, contrast) for a contrast prompt. Cheap
    once both are known (the gradient methods compute them in the worker before the GUI asks)."""
    y = float(image_embedding(analysis) @ text_embedding(analysis, prompt))
    if isinstance(contrast, str):
        return TextTarget(prompt, y - float(image_embedding(analysis) @ text_embedding(analysis, contrast)), contrast)
    return TextTarget(prompt, y)


def prompt_maps(analysis, prompts, method: str = "relevance", **params) -> np.ndarray:
    """(k, rows, cols): `method`'s map for each prompt, side by side (one backward per prompt)."""
    from ..gradients import model_of

    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    text_tower(model_of(analysis)).encode(prompts)  # one batch through the text tower
    return np.stack([analysis.explain(method, target=p, **params) for p in prompts])
