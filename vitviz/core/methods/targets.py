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


def check_text_target(analysis, target, contrast=-1) -> None:
    """A prompt is a target of CLIP ViTs only; its contrast is another prompt (or none), never a class."""
    if analysis.family != "vit":
        detr = analysis.family == "detr"
        raise ValueError(f"a text target needs a CLIP model (a ViT), not a {'DETR' if detr else analysis.family} "
                         f"model: its targets are {'object query indices' if detr else 'class indices'}")
    if not is_text(target):
        raise ValueError("a contrast prompt needs a prompt as the target (the score is the difference of "
                         "two image-text similarities)")
    if not is_text(contrast) and contrast != -1:
        raise ValueError("a text target takes no contrast class: its contrast is a second prompt")
    if is_text(contrast) and contrast.strip() == target.strip():
        raise ValueError("the contrast prompt is the target itself: the contrast would be 0 everywhere")


def takes_text(analysis) -> bool:
    """True when `analysis` came from a CLIP model (its targets are prompts); no torch."""
    from ..gradients import has_model, model_of

    return analysis.family == "vit" and has_model(analysis) and model_of(analysis).spec.source == "clip"
# --- end of text targets ------------------------------------------------------------------------


TARGET = ClassOrText("target", -1, min=-1, label="Target",
                     help="class index (-1: the top-1 class); for DETR the detection's object query (-1: "
                          "the most confident); for CLIP models a text prompt")
CONTRAST = ClassOrText("contrast", -1, min=-1, label="Contrast",
                       help="class subtracted from the target ('why target rather than this'); -1: none; for "
                            "CLIP models a second prompt whose similarity is subtracted")


def target_info(analysis, target: int = -1, contrast: int = -1):
    """The Target a gradient method explains for these parameters (its index, name, score)."""
    from ..gradients import class_target

    if is_text(target) or is_text(contrast):  # text target
        from ..models.clip_text import text_target

        check_text_target(analysis, target, contrast)
        return text_target(analysis, target, contrast)
    if analysis.family == "detr":
        from ..capture.grad_detr import detection_target

        return detection_target(analysis, target)
    return class_target(analysis, target, contrast)


def target_text(analysis, method, params: dict) -> str:
    """' · target: tabby (281), logit 9.12' for a class-specific method, '' for any other."""
    if not method.needs_grad or "target" not in params:
        return ""
    t = target_info(analysis, params["target"], params.get("contrast", -1))
    if is_text(params["target"]):
        what = "cosine difference" if is_text(params.get("contrast")) else "cosine"
    else:
        what = "score" if t.contrast >= 0 or t.cls >= 0 else "logit"
    return f" · target: {t.label}, {what} {t.score:.3g}"


def target_meta(analysis, method, params: dict) -> dict:
    """For the sidecar: {"target_info": {...}} for a class-specific method."""
    if not method.needs_grad or "target" not in params:
        return {}
    return {"target_info": target_info(analysis, params["target"], params.get("contrast", -1)).to_json()}
