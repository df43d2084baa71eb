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
