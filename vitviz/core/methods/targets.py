"""The parameters every class-specific method shares: what score it explains."""
from __future__ import annotations

from . import Param

TARGET = Param("target", -1, min=-1, label="Target",
               help="class index (-1: the top-1 class); for DETR the detection's object query (-1: the "
                    "most confident)")
CONTRAST = Param("contrast", -1, min=-1, label="Contrast",
                 help="class subtracted from the target ('why target rather than this'); -1: none")


def target_info(analysis, target: int = -1, contrast: int = -1):
    """The Target a gradient method explains for these parameters (its index, name, score)."""
    from ..gradients import class_target

    if analysis.family == "detr":
        from ..capture.grad_detr import detection_target

        return detection_target(analysis, target)
    return class_target(analysis, target, contrast)


def target_text(analysis, method, params: dict) -> str:
    """' · target: tabby (281), logit 9.12' for a class-specific method, '' for any other."""
    if not method.needs_grad or "target" not in params:
        return ""
    t = target_info(analysis, params["target"], params.get("contrast", -1))
    what = "score" if t.contrast >= 0 or t.cls >= 0 else "logit"
    return f" · target: {t.label}, {what} {t.score:.3g}"


def target_meta(analysis, method, params: dict) -> dict:
    """For the sidecar: {"target_info": {...}} for a class-specific method."""
    if not method.needs_grad or "target" not in params:
        return {}
    return {"target_info": target_info(analysis, params["target"], params.get("contrast", -1)).to_json()}
