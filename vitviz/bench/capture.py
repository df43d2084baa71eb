"""Row group 1: the cost of attention capture, and the memory the captured attention holds.

The captured forward is the model's own forward call INSIDE analyze() (the pipeline the app runs),
timed by hooks on the top-level module; the plain forward replays the very same module call with
the very same inputs, without capture, under no_grad. The two alternate run by run.
"""
from __future__ import annotations

import time
import traceback
from importlib import import_module

import numpy as np

from .context import BenchContext
from .metrics import Row, median, missing, sync

GOAL_OVERHEAD = "<= 1.05"
GOAL_BYTES = "<= 2"

# (label, how to find the model in the registry)
MODELS = (("ViT-B/16", "vit_b_16"), ("Swin-T", "swin_t"), ("DETR-R50", "detr"))
BYTES_ROWS = ("Swin-T", "DETR-R50")  # the ViTs' attention bytes are rows of the memory group
QUICK_DETR_SHORT = 320  # --quick: DETR's input shorter side (800 in a full run)


def overhead_metric(label: str) -> str:
    return f"Capture overhead, {label} (captured / plain forward)"


def bytes_metric(label: str) -> str:
    return f"Attention bytes per weight, {label}"


def metrics() -> list[tuple[str, str, str | None]]:
    """(metric, unit, goal) of every row, in order."""
    rows = []
    for label, _ in MODELS:
        rows.append((overhead_metric(label), "x", GOAL_OVERHEAD))
        if label in BYTES_ROWS:
            rows.append((bytes_metric(label), "B", GOAL_BYTES))
    return rows


def resolve_model(key: str) -> str:
    """Registry name for `key`; "detr" means the DETR-R50 entry, whatever it is called.
    Raises LookupError with a plain reason when the model is not available in this tree."""
    from ..core.models.registry import all_specs

    specs = all_specs()
    if key != "detr":
        if not any(s.name == key for s in specs):
            raise LookupError(f"{key} is not in the model registry")
        return key
    detr = [s for s in specs if s.family == "detr" and "50" in s.name and "dc5" not in s.name
            and not s.group.startswith("Test")]
    if not detr:
        raise LookupError("no DETR-R50 model is registered (vitviz/core/models/detr_specs.py is "
                          "missing or registers none)")
    from ..core.families import get_family

    try:
        get_family("detr").runner()
    except ModuleNotFoundError as exc:
        raise LookupError(f"analyze() cannot run DETR yet: {exc.name} is missing") from None
    return detr[0].name


def attention_arrays(analysis) -> list[np.ndarray]:
    """Every attention array an analysis holds: attributes named like attn/attention, arrays or
    lists of arrays (ViT attn; Swin attn per block; DETR encoder/decoder attention)."""
    found = []
    for name, value in vars(analysis).items():
        if "attn" not in name and "attention" not in name:
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        found += [a for a in items if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
        for v in items:  # one level of nesting: a capture result inside the analysis
            if not isinstance(v, np.ndarray) and hasattr(v, "__dict__"):
                found += attention_arrays(v)
    if not found:
        for value in vars(analysis).values():  # DETR: the capture result may be a field
            if hasattr(value, "__dict__") and not isinstance(value, np.ndarray) and any(
                    "attn" in k for k in vars(value)):
                found += attention_arrays(value)
    return found


class _ForwardTimer:
    """Hooks on the top-level module: the duration of each call, and the first call's inputs."""

    def __init__(self, module, device: str):
        self.module, self.device = module, device
        self.durations: list[float] = []
        self.inputs = None
        self._t0 = 0.0

        def pre(module, args, kwargs):
            if self.inputs is None:
                self.inputs = (args, dict(kwargs))
            sync(self.device)
            self._t0 = time.perf_counter()

        def post(module, args, kwargs, output):
            sync(self.device)
            self.durations.append(time.perf_counter() - self._t0)

        self.handles = [module.register_forward_pre_hook(pre, with_kwargs=True),
                        module.register_forward_hook(post, with_kwargs=True)]

    def take(self) -> float:
        """Forward seconds since the last take (summed if the pipeline called the model twice)."""
        total, self.durations = sum(self.durations), []
        return total

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def measure_overhead(ctx: BenchContext, label: str, key: str) -> list[Row]:
    import torch

    from ..core.api import analyze, get_model
    from ..core.image import load_image

    try:
        name = resolve_model(key)
    except LookupError as exc:
        why = f"not available: {exc}"
        return [missing(m, unit, goal, why) for m, unit, goal in metrics() if label in m]
    model, quick_note = name, ""
    if ctx.quick and key == "detr":  # a full-size DETR forward takes seconds; the row is what matters
        import dataclasses

        from ..core.models.registry import get_spec

        spec = get_spec(name)
        size = QUICK_DETR_SHORT
        model = dataclasses.replace(spec, name=f"{name}@{size}", preprocess=dataclasses.replace(
            spec.preprocess, size=size, max_size=size * 5 // 3))
        quick_note = f"; --quick: input shorter side {size} instead of {spec.preprocess.size}"
    loaded = get_model(model, "random", ctx.device)
    image = load_image(str(ctx.image_path))
    timer = _ForwardTimer(loaded.module, loaded.device)
    try:
        analysis = analyze(image, model=loaded)  # warm-up; records the inputs the model saw
        timer.take()
        args, kwargs = timer.inputs

        def captured() -> float:
            analyze(image, model=loaded)
            return timer.take()

        def plain() -> float:
            with torch.no_grad():
                loaded.module(*args, **kwargs)
            return timer.take()

        if not ctx.quick:
            plain()  # warm-up of the plain path too
        n = ctx.repeats(8 if key == "detr" else 12, 1)
        pairs = []
        for i in range(n):  # A B, B A, A B ...: drift and order effects hit both alike
            if i % 2 == 0:
                c, p = captured(), plain()
            else:
                p, c = plain(), captured()
            pairs.append((c, p))
    finally:
        timer.remove()
    ratios = [c / p for c, p in pairs]
    cap_ms, plain_ms = median([c for c, _ in pairs]) * 1e3, median([p for _, p in pairs]) * 1e3
    arrays = attention_arrays(analysis)
    nbytes = sum(a.nbytes for a in arrays)
    weights = sum(a.size for a in arrays)
    dtypes = sorted({str(a.dtype) for a in arrays})
    ctx.analyses.setdefault(name, analysis)
    rows = [Row(overhead_metric(label), median(ratios), "x", GOAL_OVERHEAD, note=(
        f"{name}, random weights, {ctx.device}, {ctx.image_path.stem}: median of {n} alternated pairs; "
        f"forward with capture {cap_ms:.0f} ms vs plain {plain_ms:.0f} ms (medians; capture includes "
        f"the per-layer copies to host memory made in the hooks){quick_note}"))]
    if label not in BYTES_ROWS:
        pass
    elif weights:
        rows.append(Row(bytes_metric(label), nbytes / weights, "B", GOAL_BYTES, note=(
            f"{nbytes / 2**20:.1f} MiB for {weights / 1e6:.1f} M attention weights ({', '.join(dtypes)}; "
            f"default attention_dtype float16)")))
    else:
        rows.append(missing(bytes_metric(label), "B", GOAL_BYTES,
                            f"no attention arrays found on {type(analysis).__name__}"))
    return rows


def run(ctx: BenchContext) -> list[Row]:
    rows: list[Row] = []
    for label, key in MODELS:
        try:
            rows += measure_overhead(ctx, label, key)
        except Exception as exc:  # one model failing must not hide the others' rows
            why = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
            traceback.print_exc()
            rows += [missing(m, unit, goal, why) for m, unit, goal in metrics() if label in m]
    return rows
