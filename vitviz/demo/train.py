"""Train a demo model on the procedural shapes scenes and write its weights and model card.

    python -m vitviz.demo.train demo_vit [--steps N] [--seed S] [--threads T] [--out PATH]

Deterministic for a given seed and thread count: the training scenes are a fixed, seeded pool
(``classification_dataset(pool, TRAIN_SEED)``), each step draws its batch and its augmentation
(the 8 flips/quarter turns, which keep every shape's class, and a colour-channel permutation,
colour never being a class cue) from a ``torch.Generator`` seeded with ``--seed``, and the model is
initialised after ``torch.manual_seed(seed)``. Metrics in the model card are measured on held-out
scenes from ``TEST_SEED`` through the real ``vitviz.analyze`` pipeline (vitviz.demo.evaluate).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .train_kit import (  # noqa: F401 (augment, normalise...: public here too)
    augment, cached_arrays, finish_card, fmt_time as _fmt_time, lr_at as _lr_at, normalise, save_weights,
    seeded_model, state_for_saving)

DEMO_MODELS = ("demo_vit", "demo_swin", "demo_detr")
# What the bundled weights were trained with (the CLI's defaults per model; for demo_swin its first
# stage: resources/demo/demo_swin.md gives the later ones, distilled from demo_vit).
MODEL_DEFAULTS = {"demo_vit": {"steps": 6000, "lr": 5e-4}, "demo_swin": {"steps": 4500, "lr": 7e-4},
                  "demo_detr": {"steps": 8000, "lr": 4e-4, "batch": 8, "pool": 16000, "dense_loss": 2.0}}


@dataclass
class TrainConfig:
    model: str
    steps: int = 5000
    seed: int = 0
    threads: int = 1
    batch: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of the steps
    label_smoothing: float = 0.1
    # Auxiliary loss: a linear head regresses the salient shape's box (cx, cy, w, h; L1, this weight)
    # from the model's features (see features_and_logits). The head is dropped after training: the
    # shipped model is the plain classifier. Without it neither model left chance level within
    # ~1000 steps on this CPU budget.
    box_loss: float = 2.0
    pool: int = 24000  # training scenes rendered once, then augmented
    log_every: int = 25
    save_every: int = 0  # also write the weights every N steps (0: only at the end)
    save_path: str | None = None
    cache_dir: str | None = None  # where the rendered pool is kept between runs (None: nowhere)
    init: str | None = None  # start from these weights (a second training stage) instead of random
    # Knowledge distillation (as DeiT does): a trained demo model's soft predictions at temperature
    # `distill_temperature` replace `distill` of the hard-label cross-entropy.
    teacher: str | None = None  # a registry name (its bundled weights) or "name=path"
    distill: float = 0.5
    distill_temperature: float = 2.0


@dataclass
class TrainResult:
    model: object  # the trained torch module, in eval mode
    config: TrainConfig
    wall_time: float  # seconds, training only (not pool rendering)
    pool_time: float
    history: list[dict] = field(default_factory=list)  # one entry per progress line


def default_threads() -> int:
    return min(2, os.cpu_count() or 1)


# ----------------------------------------------------------------------------- data


RENDER_SIZE = 96  # training scenes are rendered at this size, then resized to the model's input


def scene_pool(n: int, size: int, seed: int, cache_dir: str | os.PathLike | None = None):
    """The first ``n`` classification scenes from ``seed`` rendered at ``size`` px as uint8 arrays
    (images [n, size, size, 3], labels [n], boxes [n, 4]); cached as .npz in ``cache_dir``."""
    from .scenes import classification_scene

    def render():
        images = np.empty((n, size, size, 3), dtype=np.uint8)
        labels = np.empty(n, dtype=np.int64)
        boxes = np.empty((n, 4), dtype=np.float32)
        for i in range(n):
            img, labels[i], box = classification_scene(seed + i, size)
            images[i] = np.asarray(img)
            boxes[i] = box
        return {"images": images, "labels": labels, "boxes": boxes}

    z = cached_arrays(cache_dir, f"shapes_cls_{size}px_seed{seed}_n{n}", render)
    return z["images"], z["labels"], z["boxes"]


def resize_pool(x_uint8, size: int):
    """(n, 3, h, w) uint8 -> (n, 3, size, size) uint8 with the resize vitviz.core.preprocess.prepare
    uses (bilinear, antialiased), so training inputs are what the app feeds a 96 px scene."""
    from torchvision.transforms import functional as F

    if x_uint8.shape[-1] == size and x_uint8.shape[-2] == size:
        return x_uint8
    out = [F.resize(x_uint8[i:i + 1024], [size, size], interpolation=F.InterpolationMode.BILINEAR,
                    antialias=True) for i in range(0, x_uint8.shape[0], 1024)]
    import torch

    return torch.cat(out)


def features_and_logits(model, x):
    """What the auxiliary box head reads, and the logits, from torchvision's own modules in their
    forward order. ViT: the class token's final feature (n, d). Swin: the whole last-stage map,
    flattened (n, h * w * c): its classifier averages that map, which would throw away where
    things are, and Swin has no absolute position embedding to keep it in the channels."""
    import torch

    if hasattr(model, "class_token"):  # VisionTransformer.forward, unrolled
        t = model._process_input(x)  # (n, 3, H, W) -> (n, hw, d)
        t = torch.cat([model.class_token.expand(t.shape[0], -1, -1), t], dim=1)
        feat = model.encoder(t)[:, 0]
        return feat, model.heads(feat)
    f = model.norm(model.features(x))  # SwinTransformer.forward, unrolled: (n, h, w, c)
    logits = model.head(model.flatten(model.avgpool(model.permute(f))))
    return f.flatten(1), logits


# ----------------------------------------------------------------------------- training


def train_classifier(cfg: TrainConfig, log=print) -> TrainResult:
    """Train demo_vit or demo_swin on the shapes pool; returns the model in eval mode."""
    import torch
    import torch.nn.functional as F

    from vitviz.core.models.registry import get_spec

    from .scenes import TRAIN_SEED

    torch.set_num_threads(max(1, int(cfg.threads)))
    spec = get_spec(cfg.model)
    pre = spec.preprocess
    t0 = time.perf_counter()
    images, labels, boxes = scene_pool(cfg.pool, RENDER_SIZE, TRAIN_SEED, cfg.cache_dir)
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2)  # (n, h, w, 3) -> (n, 3, h, w)
    x_all = resize_pool(x_all, pre.size)
    boxes_all = torch.from_numpy(boxes).float() / RENDER_SIZE  # fractions of the side
    pool_time = time.perf_counter() - t0
    log(f"[{cfg.model}] pool: {cfg.pool} scenes rendered at {RENDER_SIZE} px from seed {TRAIN_SEED}, "
        f"model input {pre.size} px ({_fmt_time(pool_time)})")
    y_all = torch.from_numpy(labels)

    model = seeded_model(cfg, spec, log)
    with torch.no_grad():  # eval: no stochastic depth, so no random numbers are used
        feat_dim = features_and_logits(model.eval(), torch.zeros(1, 3, pre.size, pre.size))[0].shape[1]
    model.train()
    box_head = torch.nn.Linear(feat_dim, 4)  # training only, never saved
    decay = [p for n_, p in model.named_parameters() if p.ndim >= 2 and "pos_embedding" not in n_
             and "relative_position_bias_table" not in n_]
    no_decay = [p for n_, p in model.named_parameters() if not (p.ndim >= 2 and "pos_embedding" not in n_
                and "relative_position_bias_table" not in n_)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0},
                             {"params": list(box_head.parameters()), "weight_decay": 0.0}], lr=cfg.lr)
    teacher = None
    if cfg.teacher:
        from vitviz.core.models.loading import load_model

        t_name, _, t_weights = cfg.teacher.partition("=")
        teacher = load_model(t_name, t_weights or "pretrained", "cpu")
        if teacher.preprocess != pre:
            raise ValueError(f"teacher {t_name} prepares images differently from {cfg.model}")
        teacher = teacher.module.eval()
        log(f"[{cfg.model}] distilling from {cfg.teacher}")
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    win_loss = win_correct = win_seen = 0.0
    t_start = time.perf_counter()
    perm, cursor = torch.randperm(cfg.pool, generator=gen), 0
    for step in range(cfg.steps):
        if cursor + cfg.batch > cfg.pool:  # a new epoch over the pool, in a new seeded order
            perm, cursor = torch.randperm(cfg.pool, generator=gen), 0
        idx = perm[cursor:cursor + cfg.batch]
        cursor += cfg.batch
        x, b = augment(x_all[idx], gen, boxes_all[idx])
        x = normalise(x, pre.mean, pre.std)
        y = y_all[idx]
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        feat, logits = features_and_logits(model, x)
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        if teacher is not None:
            with torch.no_grad():
                soft = (teacher(x) / cfg.distill_temperature).softmax(1)
            kd = F.kl_div((logits / cfg.distill_temperature).log_softmax(1), soft, reduction="batchmean")
            loss = (1 - cfg.distill) * loss + cfg.distill * cfg.distill_temperature ** 2 * kd
        if cfg.box_loss > 0:
            target = torch.cat([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], dim=1)  # cx, cy, w, h
            loss = loss + cfg.box_loss * F.l1_loss(box_head(feat).sigmoid(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(box_head.parameters()), 1.0)
        opt.step()
        win_loss += float(loss.detach()) * len(y)
        win_correct += float((logits.argmax(1) == y).sum())
        win_seen += len(y)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            elapsed = time.perf_counter() - t_start
            eta = elapsed / (step + 1) * (cfg.steps - step - 1)
            entry = {"step": step + 1, "loss": win_loss / win_seen, "acc": win_correct / win_seen,
                     "lr": _lr_at(step, cfg), "elapsed": elapsed}
            history.append(entry)
            log(f"[{cfg.model}] step {step + 1}/{cfg.steps}  loss {entry['loss']:.4f}  "
                f"acc {100 * entry['acc']:.1f}%  lr {entry['lr']:.2e}  "
                f"{elapsed / (step + 1):.2f} s/step  elapsed {_fmt_time(elapsed)}  ETA {_fmt_time(eta)}")
            win_loss = win_correct = win_seen = 0.0
        if cfg.save_every and cfg.save_path and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            model.eval()
            save_weights(model, cfg.save_path, {"model": cfg.model, "seed": cfg.seed,
                                                "step": step + 1, "of_steps": cfg.steps})
            model.train()
    model.eval()
    return TrainResult(model, cfg, time.perf_counter() - t_start, pool_time, history)


# ----------------------------------------------------------------------------- output


def write_model_card(path: str | os.PathLike, result: TrainResult, command: str,
                     weights_path: Path, metrics: dict) -> Path:
    from .models import SWIN_CONFIG, VIT_CONFIG, VIT_STEM
    from .scenes import CLASSES, TEST_SEED, TRAIN_SEED
    from vitviz.core.models.registry import get_spec

    cfg = result.config
    spec = get_spec(cfg.model)
    arch = (dict(VIT_CONFIG, conv_stem=[dict(out_channels=c, kernel_size=k, stride=st, norm="GroupNorm(4)") for c, k, st in VIT_STEM])
            if spec.family == "vit" else SWIN_CONFIG)
    n_params = sum(p.numel() for p in result.model.parameters())
    size_mb = weights_path.stat().st_size / 1e6
    lines = [
        f"# {spec.label} (`{cfg.model}`)",
        "",
        "A small vision transformer trained from scratch, on CPU, on vitviz's procedural shapes "
        "scenes (`vitviz.demo.scenes`): one large salient shape (the label) among 0-3 small "
        "distractor shapes on a textured background. It exists so that vitviz shows real, trained "
        "attention with no network access.",
        "",
        "## Model",
        f"- Architecture: torchvision `{'VisionTransformer' if spec.family == 'vit' else 'SwinTransformer'}`"
        f", builder `{spec.builder}`",
        f"- Config: `{json.dumps(arch)}`",
        f"- Parameters: {n_params:,}; weights file `{weights_path.name}` {size_mb:.2f} MB (safetensors, float32)",
        f"- Input: plain resize to {spec.preprocess.size} x {spec.preprocess.size} px (aspect not kept), "
        f"ImageNet mean/std normalisation",
        f"- Classes ({len(CLASSES)}): {', '.join(CLASSES)}",
        "",
        "## Data",
        f"- Training: a pool of {cfg.pool} scenes rendered at {RENDER_SIZE} px (resized to the input as the "
        f"app does) from seeds "
        f"{TRAIN_SEED}..{TRAIN_SEED + cfg.pool - 1} (`classification_dataset(n, TRAIN_SEED)`), "
        "augmented per sample with one of the 8 flips / quarter turns and a colour-channel permutation.",
        f"- Evaluation: held-out scenes from seed {TEST_SEED} (`TEST_SEED`), never seen in training.",
        "",
        "## Training",
        f"- Command: `{command}`",
        f"- Seed {cfg.seed}; {cfg.steps} steps of batch {cfg.batch} "
        f"({cfg.steps * cfg.batch:,} samples); AdamW lr {cfg.lr:g} (warm-up {cfg.warmup:.0%}, cosine to 0), "
        f"weight decay {cfg.weight_decay:g}, label smoothing {cfg.label_smoothing:g}, gradient clip 1.0",
        "- Loss: cross-entropy" + (f" + {cfg.box_loss:g} x L1 of an auxiliary linear head on the model's "
        "features (ViT: the class token's; Swin: the last-stage map) regressing the salient shape's box (cx, cy, w, h as fractions of the side). The box head is "
        "used only during training and is not part of the shipped weights; nothing supervises attention."
        if cfg.box_loss > 0 else " only"),
        *([f"- Initialised from `{cfg.init}` (the previous training stage)"] if cfg.init else []),
        *([f"- Distilled from `{cfg.teacher}` (DeiT-style soft distillation: KL to its predictions at "
           f"temperature {cfg.distill_temperature:g}, weight {cfg.distill:g}; hard labels the rest)"]
          if cfg.teacher else []),
        f"- Hardware: CPU, {cfg.threads} thread(s); wall time {_fmt_time(result.wall_time)} training "
        f"+ {_fmt_time(result.pool_time)} rendering the pool",
    ]
    if result.history:
        last = result.history[-1]
        lines.append(f"- Final training window: loss {last['loss']:.4f}, accuracy {100 * last['acc']:.1f}%")
    return finish_card(path, lines, _metrics_lines(metrics) if metrics else None)


def _metrics_lines(metrics: dict) -> list[str]:
    out = [f"Measured through `vitviz.analyze` on {metrics['n']} scenes from `TEST_SEED` "
           f"rendered at {metrics['size']} px:", ""]
    out.append(f"- Accuracy: {100 * metrics['accuracy']:.1f}%")
    out.append(f"- Attention peak inside the salient shape's box ({metrics['attention']}): "
               f"{100 * metrics['peak_in_box']:.1f}% of scenes")
    if metrics.get("per_class"):
        out.append("- Per-class accuracy: " + ", ".join(
            f"{k} {100 * v:.1f}%" for k, v in metrics["per_class"].items() if v is not None))
    return out


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitviz.demo.train", description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=DEMO_MODELS)
    parser.add_argument("--steps", type=int, default=None, help="default: what the bundled model used")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="torch CPU threads (default: min(2, cores))")
    parser.add_argument("--batch", type=int, default=None, help="default: per model")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: per model)")
    parser.add_argument("--box-loss", type=float, default=TrainConfig.box_loss,
                        help="weight of the auxiliary salient-box L1 loss (0: classification only)")
    parser.add_argument("--dense-loss", type=float, default=None,
                        help="demo_detr: weight of the auxiliary per-cell class loss on the encoder output "
                             "(default: what the bundled model used)")
    parser.add_argument("--pool", type=int, default=None, help="training scenes rendered once (default: per model)")
    parser.add_argument("--log-every", type=int, default=TrainConfig.log_every)
    parser.add_argument("--save-every", type=int, default=0,
                        help="also write the weights every N steps (a partial model, to inspect)")
    parser.add_argument("--teacher", default=None,
                        help="distil from this trained demo model (registry name, or name=weights path)")
    parser.add_argument("--init", default=None, help="start from these weights instead of random ones")
    parser.add_argument("--cache-dir", default=None, help="keep the rendered pool here between runs")
    parser.add_argument("--out", default=None,
                        help="weights file (default: resources/demo/MODEL.safetensors; the model card goes beside it)")
    parser.add_argument("--eval", type=int, default=1000, help="held-out scenes for the model card (0: skip)")
    args = parser.parse_args(argv)

    from vitviz.core.resources import resource_path

    defaults = MODEL_DEFAULTS[args.model]
    args.batch = args.batch if args.batch is not None else defaults.get("batch", TrainConfig.batch)
    args.pool = args.pool if args.pool is not None else defaults.get("pool", TrainConfig.pool)
    out = Path(args.out) if args.out else resource_path("demo", f"{args.model}.safetensors")
    command = "python -m vitviz.demo.train " + " ".join(shlex.quote(a) for a in
                                                        (sys.argv[1:] if argv is None else argv))
    if args.model == "demo_detr":
        return _main_detr(args, defaults, out, command)
    cfg = TrainConfig(model=args.model, steps=args.steps if args.steps is not None else defaults["steps"],
                      seed=args.seed, threads=args.threads, batch=args.batch,
                      lr=args.lr if args.lr is not None else defaults["lr"], pool=args.pool, log_every=args.log_every,
                      cache_dir=args.cache_dir, save_every=args.save_every,
                      box_loss=args.box_loss, init=args.init,
                      teacher=args.teacher)
    cfg.save_path = str(out.with_suffix(".partial.safetensors"))
    from .evaluate import evaluate_classifier

    return _save_and_describe(train_classifier(cfg), out, command, args.eval, evaluate_classifier,
                              write_model_card)


def _save_and_describe(result, out: Path, command: str, n_eval: int, evaluate, write_card) -> int:
    """Write the weights, measure them on `n_eval` held-out scenes, write the model card."""
    cfg = result.config
    save_weights(result.model, out, {"model": cfg.model, "seed": cfg.seed, "steps": cfg.steps,
                                     "command": command})
    print(f"[{cfg.model}] wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    metrics = None
    if n_eval > 0:
        metrics = evaluate(cfg.model, weights=str(out), n=n_eval)
        print(f"[{cfg.model}] held-out metrics: {json.dumps(metrics)}")
    card = write_card(out.with_suffix(".md"), result, command, out, metrics)
    print(f"[{cfg.model}] wrote {card}")
    return 0


def _main_detr(args, defaults: dict, out: Path, command: str) -> int:
    from .evaluate import evaluate_detector
    from .train_detr import DetrTrainConfig, train_detector, write_detr_model_card

    if args.teacher:
        raise SystemExit("--teacher applies to the classifiers only")
    cfg = DetrTrainConfig(model=args.model, steps=args.steps if args.steps is not None else defaults["steps"],
                          seed=args.seed, threads=args.threads, batch=args.batch,
                          lr=args.lr if args.lr is not None else defaults["lr"], pool=args.pool,
                          log_every=args.log_every, save_every=args.save_every,
                          save_path=str(out.with_suffix(".partial.safetensors")),
                          cache_dir=args.cache_dir, init=args.init,
                          dense_loss=args.dense_loss if args.dense_loss is not None else defaults["dense_loss"])
    return _save_and_describe(train_detector(cfg), out, command, args.eval, evaluate_detector,
                              write_detr_model_card)


if __name__ == "__main__":
    raise SystemExit(main())
