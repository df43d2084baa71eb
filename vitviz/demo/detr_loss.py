"""DETR's set loss, for training the demo DETR: Hungarian matching, then class + box losses.

As in the paper (Carion et al. 2020, section 3.1): each image's predictions are matched one-to-one
to its ground-truth objects by the assignment minimising

    cost = w_class * (-p(target class)) + w_l1 * |box - target|_1 + w_giou * (-GIoU(box, target))

(scipy's linear_sum_assignment solves it); matched queries learn the target class and box,
unmatched ones learn "no object" (its cross-entropy weighted by `eos_coef`, since most queries are
unmatched). The same loss is applied to every decoder layer's output (the auxiliary losses), which
is what makes DETR's intermediate layers readable in the app too.

Boxes are (cx, cy, w, h) as fractions of the image side, DETR's convention.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou


@dataclass(frozen=True)
class SetLossWeights:
    """DETR's defaults: the same weights price the matching and the loss."""

    cls: float = 1.0
    l1: float = 5.0
    giou: float = 2.0
    eos_coef: float = 0.1  # relative weight of the "no object" class in the cross-entropy


def _xyxy(boxes: Tensor) -> Tensor:
    return box_convert(boxes, "cxcywh", "xyxy")


@torch.no_grad()
def hungarian_match(logits: Tensor, boxes: Tensor, targets: list[dict],
                    w: SetLossWeights = SetLossWeights()) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image, (query indices, target indices) of the cheapest one-to-one assignment.

    logits (n, q, classes + 1), boxes (n, q, 4); targets[i] = {"labels": (k,) long, "boxes": (k, 4)}.
    """
    out = []
    prob = logits.float().softmax(-1)
    for i, t in enumerate(targets):
        if len(t["labels"]) == 0:
            out.append((np.empty(0, np.int64), np.empty(0, np.int64)))
            continue
        cost = (-w.cls * prob[i][:, t["labels"]]
                + w.l1 * torch.cdist(boxes[i].float(), t["boxes"], p=1)
                - w.giou * generalized_box_iou(_xyxy(boxes[i].float()), _xyxy(t["boxes"])))
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        out.append((rows.astype(np.int64), cols.astype(np.int64)))
    return out


def set_loss(logits: Tensor, boxes: Tensor, targets: list[dict],
             w: SetLossWeights = SetLossWeights()) -> tuple[Tensor, dict[str, float]]:
    """DETR's loss for one decoder layer's predictions; returns (loss, parts for logging)."""
    n, q, c1 = logits.shape
    match = hungarian_match(logits, boxes, targets, w)
    target_classes = torch.full((n, q), c1 - 1, dtype=torch.long, device=logits.device)
    batch_idx, query_idx, tgt_boxes = [], [], []
    for i, (rows, cols) in enumerate(match):
        rows_t = torch.as_tensor(rows, device=logits.device)
        target_classes[i, rows_t] = targets[i]["labels"][cols]
        batch_idx.append(torch.full_like(rows_t, i))
        query_idx.append(rows_t)
        tgt_boxes.append(targets[i]["boxes"][cols])
    class_weight = torch.ones(c1, device=logits.device)
    class_weight[-1] = w.eos_coef
    loss_cls = F.cross_entropy(logits.transpose(1, 2), target_classes, class_weight)
    num_boxes = max(1, sum(len(r) for r, _ in match))
    matched = boxes[torch.cat(batch_idx), torch.cat(query_idx)]
    target = torch.cat(tgt_boxes)
    loss_l1 = F.l1_loss(matched, target, reduction="sum") / num_boxes
    loss_giou = (1 - torch.diag(generalized_box_iou(_xyxy(matched), _xyxy(target)))).sum() / num_boxes
    loss = w.cls * loss_cls + w.l1 * loss_l1 + w.giou * loss_giou
    return loss, {"cls": float(loss_cls.detach()), "l1": float(loss_l1.detach()),
                  "giou": float(loss_giou.detach())}


def detr_loss(outputs: dict, targets: list[dict], w: SetLossWeights = SetLossWeights()
              ) -> tuple[Tensor, dict[str, float]]:
    """set_loss on the final output plus every "aux_outputs" entry (DETR(return_aux=True));
    the parts logged are the final layer's."""
    loss, parts = set_loss(outputs["pred_logits"], outputs["pred_boxes"], targets, w)
    for aux in outputs.get("aux_outputs", []):
        loss = loss + set_loss(aux["pred_logits"], aux["pred_boxes"], targets, w)[0]
    return loss, parts
