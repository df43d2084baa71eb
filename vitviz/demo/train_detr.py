"""Train the demo DETR on the procedural detection scenes (``python -m vitviz.demo.train demo_detr``).

Deterministic for a given seed and thread count, like the classifiers (vitviz.demo.train): a fixed,
seeded pool of detection scenes (``detection_dataset(pool, TRAIN_SEED)``) rendered once at the
model's input size, per-step batches and augmentations (the 8 flips / quarter turns with their
boxes, and a colour-channel permutation) drawn from a ``torch.Generator`` seeded with ``--seed``.
The loss is DETR's own (vitviz.demo.detr_loss): Hungarian matching, class + L1 + GIoU, on every
decoder layer.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .train_kit import augment, cached_arrays, finish_card, fmt_time, lr_at, normalise, save_weights, seeded_model


@dataclass
class DetrTrainConfig:
    model: str = "demo_detr"
    steps: int = 8000  # the bundled model's recipe (resources/demo/demo_detr.md)
    seed: int = 0
    threads: int = 1
    batch: int = 8
    lr: float = 4e-4
    weight_decay: float = 1e-4
    warmup: float = 0.03
    clip: float = 0.1  # DETR's gradient clipping
    pool: int = 16000
    log_every: int = 25
    save_every: int = 0
    save_path: str | None = None
    cache_dir: str | None = None
    init: str | None = None
    # Auxiliary dense loss (training only, like the classifiers' box head): a 1x1 convolution on
    # the encoder's output names, per feature cell, the class of the object whose box holds the
    # cell's centre (or background), cross-entropy at this weight. It stands in for the pretrained
    # backbone DETR normally starts from; the head is dropped, nothing supervises attention.
    dense_loss: float = 2.0


@dataclass
class DetrTrainResult:
    model: object
    config: DetrTrainConfig
    wall_time: float
    pool_time: float
    history: list[dict] = field(default_factory=list)


def detection_pool(n: int, size: int, seed: int, cache_dir: str | os.PathLike | None = None):
    """The first ``n`` detection scenes from ``seed`` at ``size`` px: images uint8 [n, size, size, 3],
    labels int64 [total objects], boxes float32 [total, 4] (x0, y0, x1, y1 pixels), offsets [n + 1]
    (scene i owns objects offsets[i]:offsets[i+1]); cached as .npz in ``cache_dir``."""
    from .scenes import detection_scene

    def render():
        images = np.empty((n, size, size, 3), dtype=np.uint8)
        labels, boxes, offsets = [], [], [0]
        for i in range(n):
            img, lab, box = detection_scene(seed + i, size)
            images[i] = np.asarray(img)
            labels += list(lab)
            boxes.append(box)
            offsets.append(offsets[-1] + len(lab))
        return {"images": images, "labels": np.asarray(labels, np.int64),
                "boxes": np.concatenate(boxes).astype(np.float32), "offsets": np.asarray(offsets, np.int64)}

    z = cached_arrays(cache_dir, f"shapes_det_{size}px_seed{seed}_n{n}", render)
    return z["images"], z["labels"], z["boxes"], z["offsets"]


def forward_with_memory(model, x):
    """DETR.forward(x, return_aux=True) unrolled from the model's own modules, also returning the
    encoder output (n, d, h, w) that the auxiliary dense head reads."""
    mask = x.new_zeros(x.shape[0], *x.shape[-2:], dtype=bool)
    feats, feat_mask, pos = model.backbone(x, mask)
    hs, memory = model.transformer(model.input_proj(feats), feat_mask, model.query_embed.weight, pos)
    logits, boxes = model.class_embed(hs), model.bbox_embed(hs).sigmoid()
    out = {"pred_logits": logits[-1], "pred_boxes": boxes[-1],
           "aux_outputs": [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])]}
    return out, memory


def cell_targets(targets: list[dict], h: int, w: int, background: int):
    """(n, h, w) long: per feature cell, the label of the smallest target box (cx, cy, w, h
    fractions) that holds the cell's centre, else `background`."""
    import torch

    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    out = torch.full((len(targets), h, w), background, dtype=torch.long)
    for i, t in enumerate(targets):
        b = t["boxes"]
        for k in torch.argsort(b[:, 2] * b[:, 3], descending=True).tolist():  # small ones on top
            cx, cy, bw, bh = b[k].tolist()
            inside = ((ys - cy).abs() <= bh / 2)[:, None] & ((xs - cx).abs() <= bw / 2)[None, :]
            out[i][inside] = t["labels"][k]
    return out


def train_detector(cfg: DetrTrainConfig, log=print) -> DetrTrainResult:
    import torch
    from torchvision.ops import box_convert

    from vitviz.core.models.registry import get_spec

    from .detr_loss import detr_loss
    from .scenes import TRAIN_SEED

    torch.set_num_threads(max(1, int(cfg.threads)))
    spec = get_spec(cfg.model)
    pre = spec.preprocess
    size = pre.size  # square scenes: DETR's resize leaves them at exactly this size
    t0 = time.perf_counter()
    images, labels, boxes, offsets = detection_pool(cfg.pool, size, TRAIN_SEED, cfg.cache_dir)
    pool_time = time.perf_counter() - t0
    log(f"[{cfg.model}] pool: {cfg.pool} scenes ({len(labels)} objects) at {size} px from seed "
        f"{TRAIN_SEED} ({fmt_time(pool_time)})")
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2)  # (n, h, w, 3) -> (n, 3, h, w)
    labels_t = torch.from_numpy(labels)
    boxes_t = torch.from_numpy(boxes) / size  # xyxy fractions of the side

    model = seeded_model(cfg, spec, log)
    num_classes = model.config.num_classes
    dense_head = torch.nn.Conv2d(model.config.d_model, num_classes + 1, 1)  # training only
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0},
                             {"params": list(dense_head.parameters()), "weight_decay": 0.0}], lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    window: dict[str, float] = {}
    t_start = time.perf_counter()
    perm, cursor = torch.randperm(cfg.pool, generator=gen), 0
    for step in range(cfg.steps):
        if cursor + cfg.batch > cfg.pool:
            perm, cursor = torch.randperm(cfg.pool, generator=gen), 0
        idx = perm[cursor:cursor + cfg.batch]
        cursor += cfg.batch
        box_lists = [boxes_t[offsets[i]:offsets[i + 1]] for i in idx.tolist()]
        x, box_lists = augment(x_all[idx], gen, box_lists)
        x = normalise(x, pre.mean, pre.std)
        targets = [{"labels": labels_t[offsets[i]:offsets[i + 1]],
                    "boxes": box_convert(b, "xyxy", "cxcywh")} for i, b in zip(idx.tolist(), box_lists)]
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        outputs, memory = forward_with_memory(model, x)
        loss, parts = detr_loss(outputs, targets)
        if cfg.dense_loss > 0:
            cells = cell_targets(targets, *memory.shape[-2:], background=num_classes)
            dense = torch.nn.functional.cross_entropy(dense_head(memory), cells)
            loss = loss + cfg.dense_loss * dense
            parts["dense"] = float(dense.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(dense_head.parameters()), cfg.clip)
        opt.step()
        for k, v in {"loss": float(loss.detach()), **parts}.items():
            window[k] = window.get(k, 0.0) + v
        window["n"] = window.get("n", 0) + 1
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            elapsed = time.perf_counter() - t_start
            eta = elapsed / (step + 1) * (cfg.steps - step - 1)
            n = window.pop("n")
            entry = {"step": step + 1, **{k: v / n for k, v in window.items()},
                     "lr": lr_at(step, cfg), "elapsed": elapsed}
            history.append(entry)
            log(f"[{cfg.model}] step {step + 1}/{cfg.steps}  loss {entry['loss']:.3f} "
                f"(class {entry['cls']:.3f}, L1 {entry['l1']:.3f}, GIoU {entry['giou']:.3f}"
                + (f", dense {entry['dense']:.3f}" if "dense" in entry else "") + ")  "
                f"lr {entry['lr']:.2e}  {elapsed / (step + 1):.2f} s/step  "
                f"elapsed {fmt_time(elapsed)}  ETA {fmt_time(eta)}")
            window = {}
        if cfg.save_every and cfg.save_path and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            save_weights(model.eval(), cfg.save_path, {"model": cfg.model, "seed": cfg.seed,
                                                       "step": step + 1, "of_steps": cfg.steps})
            model.train()
    model.eval()
    return DetrTrainResult(model, cfg, time.perf_counter() - t_start, pool_time, history)


def write_detr_model_card(path: str | os.PathLike, result: DetrTrainResult, command: str,
                          weights_path: Path, metrics: dict | None) -> Path:
    import json

    from vitviz.core.models.registry import get_spec

    from .models import DETR_CONFIG
    from .scenes import CLASSES, MAX_DETECTION_OBJECTS, TEST_SEED, TRAIN_SEED

    cfg = result.config
    spec = get_spec(cfg.model)
    n_params = sum(p.numel() for p in result.model.parameters())
    lines = [
        f"# {spec.label} (`{cfg.model}`)",
        "",
        "A small DETR trained from scratch, on CPU, on vitviz's procedural detection scenes "
        f"(`vitviz.demo.scenes.detection_scene`): 1-{MAX_DETECTION_OBJECTS} shapes with exact boxes on "
        "a textured background. It exists so that vitviz shows real, trained detection attention "
        "with no network access.",
        "",
        "## Model",
        f"- Architecture: vitviz's DETR (`vitviz.core.models.detr`, the official module layout), builder "
        f"`{spec.builder}`",
        f"- Config: `{json.dumps(dict(DETR_CONFIG, num_classes=len(CLASSES)))}`; the `small_cnn` "
        "backbone is six 3x3 convolutions with GroupNorm (stride 8), so a 128 px scene gives 16 x 16 cells",
        f"- Parameters: {n_params:,}; weights file `{weights_path.name}` "
        f"{weights_path.stat().st_size / 1e6:.2f} MB (safetensors, float32)",
        f"- Input: DETR's resize, short side {spec.preprocess.size} px (long side at most "
        f"{spec.preprocess.max_size}), ImageNet mean/std normalisation",
        f"- Classes ({len(CLASSES)} + no-object): {', '.join(CLASSES)}",
        "",
        "## Data",
        f"- Training: a pool of {cfg.pool} scenes rendered at {spec.preprocess.size} px from seeds "
        f"{TRAIN_SEED}..{TRAIN_SEED + cfg.pool - 1} (`detection_dataset(n, TRAIN_SEED)`), augmented per "
        "sample with one of the 8 flips / quarter turns (boxes moved with the image) and a colour-channel "
        "permutation.",
        f"- Evaluation: held-out scenes from seed {TEST_SEED} (`TEST_SEED`), never seen in training.",
        "",
        "## Training",
        f"- Command: `{command}`",
        f"- Seed {cfg.seed}; {cfg.steps} steps of batch {cfg.batch} ({cfg.steps * cfg.batch:,} samples); "
        f"AdamW lr {cfg.lr:g} (warm-up {cfg.warmup:.0%}, cosine to 0), weight decay {cfg.weight_decay:g}, "
        f"gradient clip {cfg.clip:g}",
        "- Loss: DETR's (`vitviz.demo.detr_loss`): Hungarian matching (scipy `linear_sum_assignment`) "
        "on class + 5 x L1 + 2 x GIoU, then cross-entropy (no-object weighted 0.1) + 5 x L1 + 2 x GIoU, "
        "on every decoder layer's output"
        + (f"; plus {cfg.dense_loss:g} x an auxiliary per-cell cross-entropy: a 1x1 convolution on the "
           "encoder output names the class of the object whose box holds each cell's centre, or "
           "background. That head is used only in training (it stands in for the pretrained backbone "
           "DETR normally starts from) and is not part of the shipped weights; nothing supervises "
           "attention." if cfg.dense_loss > 0 else ""),
        *([f"- Initialised from `{cfg.init}` (a previous training stage)"] if cfg.init else []),
        f"- Hardware: CPU, {cfg.threads} thread(s); wall time {fmt_time(result.wall_time)} training "
        f"+ {fmt_time(result.pool_time)} rendering (or loading) the pool",
    ]
    if result.history:
        last = result.history[-1]
        lines.append(f"- Final training window: loss {last['loss']:.3f} (class {last['cls']:.3f}, "
                     f"L1 {last['l1']:.3f}, GIoU {last['giou']:.3f})")
    return finish_card(path, lines, detr_metrics_lines(metrics) if metrics else None)


def detr_metrics_lines(m: dict) -> list[str]:
    return [
        f"Measured through `vitviz.analyze` on {m['n']} scenes from `TEST_SEED` rendered at {m['size']} px "
        f"({m['objects']} objects), at the app's default score threshold {m['threshold']:g}:",
        "",
        f"- Objects found (a detection of the right class with IoU >= 0.5, one per object): "
        f"{100 * m['recall']:.1f}%",
        f"- Detections that are right (precision): {100 * m['precision']:.1f}%",
        f"- Cross-attention peak inside the object's box ({m['attention']}): "
        f"{100 * m['peak_in_box']:.1f}% of found objects",
        "- Objects found per class: " + ", ".join(
            f"{k} {100 * v:.1f}%" for k, v in m["per_class_recall"].items() if v is not None),
    ]
