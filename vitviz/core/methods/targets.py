"""The parameters every class-specific method shares: what score it explains."""
from __future__ import annotations

from dataclasses import dataclass

from . import Param


# --- text targets (CLIP): the target may be a prompt; y = cos(image, prompt) -------------------
@dataclass(frozen=True)
class ClassOrText(Param):
    """An int parameter (class index) that also takes a text: a CLIP prompt ("a photo of a dog")."""

    def check(self, value):
        if isinstance(value, str) and not _is_int(value):
            if not value.strip():
                raise ValueError(f"{self.name} must be a class index or a non-empty prompt")
            return value.strip()
        return super().check(value)


def _is_int(text: str) -> bool:
    try:
        int(text.strip())
    except ValueError:
        return False
    return True


def is_text(target) -> bool:
    return isinstance(target, str)


def check_text_target(analysis, contrast) -> None:
    """A prompt is a target of CLIP ViTs only, without a contrast class."""
    if analysis.family != "vit":
        raise ValueError(f"a text target needs a CLIP model (a ViT), not a {analysis.family} model")
    if contrast != -1:
        raise ValueError("a text target takes no contrast class")
# --- end of text targets ------------------------------------------------------------------------


TARGET = ClassOrText("target", -1, min=-1, label="Target",
                     help="class index (-1: the top-1 class); for DETR the detection's object query (-1: "
                          "the most confident); for CLIP models a text prompt (relevance, gradient rollout)")
CONTRAST = Param("contrast", -1, min=-1, label="Contrast",
                 help="class subtracted from the target ('why target rather than this'); -1: none")


def target_info(analysis, target: int = -1, contrast: int = -1):
    """The Target a gradient method explains for these parameters (its index, name, score)."""
    from ..gradients import class_target

    if is_text(target):  # text target
        from ..models.clip_text import text_target

        check_text_target(analysis, contrast)
        return text_target(analysis, target)
    if analysis.family == "detr":
        from ..capture.grad_detr import detection_target

        return detection_target(analysis, target)
    return class_target(analysis, target, contrast)


def target_text(analysis, method, params: dict) -> str:
    """' · target: tabby (281), logit 9.12' for a class-specific method, '' for any other."""
    if not method.needs_grad or "target" not in params:
        return ""
    t = target_info(analysis, params["target"], params.get("contrast", -1))
    what = "cosine" if is_text(params["target"]) else "score" if t.contrast >= 0 or t.cls >= 0 else "logit"
    return f" · target: {t.label}, {what} {t.score:.3g}"


def target_meta(analysis, method, params: dict) -> dict:
    """For the sidecar: {"target_info": {...}} for a class-specific method."""
    if not method.needs_grad or "target" not in params:
        return {}
    return {"target_info": target_info(analysis, params["target"], params.get("contrast", -1)).to_json()}
