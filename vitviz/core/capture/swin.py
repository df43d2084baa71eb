"""Capture every block's window attention from a torchvision SwinTransformer (v1 and v2).

torchvision computes window attention inside the module-level function `shifted_window_attention`,
so there is no attention submodule to hook. Instead a TorchFunctionMode, entered in a forward
pre-hook of each ShiftedWindowAttention(V2) module and left in its forward hook, keeps the output
of its one F.softmax call: the very tensor the model multiplies with v. Nothing is re-implemented
(a hand copy of the v2 attention drifted), and outputs stay bit-identical.

The window layout (padding, effective shift) is derived from the block's input size the way
torchvision does it, and checked against what the forward actually did (the torch.roll it called,
the softmax's shape), so a change in torchvision fails loudly instead of mislabelling windows.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..analysis.swin import SwinBlock
from ..analysis.windows import WindowLayout, bias_table
from .host import to_host

_SOFTMAX = (F.softmax, torch.softmax, Tensor.softmax)


@dataclass
class BlockCapture:
    block: int  # index into swin_blocks(model)
    layout: WindowLayout  # effective layout of this forward
    attn: np.ndarray  # (windows, heads, N, N) of batch item 0, rows = queries


@dataclass
class SwinCapture:
    blocks: list[SwinBlock]
    attn: list[np.ndarray]  # per block (windows, heads, N, N)
    rel_bias: list[np.ndarray]  # per block (heads, 2Mh-1, 2Mw-1) float32
    logits: np.ndarray  # (classes,) float32, batch item 0
    version: int  # 1 or 2
    forward_seconds: float


class SoftmaxRecorder(TorchFunctionMode):
    """Sees every torch call made while one attention module runs; keeps softmax outputs and the
    first torch.roll's shift (the cyclic shift; the second roll undoes it)."""

    def __init__(self) -> None:
        super().__init__()
        self.softmax: list[Tensor] = []
        self.shift: tuple[int, ...] | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _SOFTMAX:
            self.softmax.append(out)
        elif func is torch.roll and self.shift is None:
            shifts = kwargs["shifts"] if "shifts" in kwargs else args[1]
            self.shift = tuple(-int(s) for s in shifts)
        return out


def swin_blocks(model: nn.Module) -> list[tuple[int, int, nn.Module]]:
    """(stage, block within stage, ShiftedWindowAttention module) of every block, in forward order."""
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    found: list[tuple[int, int, nn.Module]] = []
    stage = 0
    for child in getattr(model, "features", ()):
        attns = [m.attn for m in child.children() if isinstance(getattr(m, "attn", None), ShiftedWindowAttention)]
        if attns:
            found += [(stage, i, a) for i, a in enumerate(attns)]
            stage += 1
    if not found:
        raise TypeError(f"{type(model).__name__} is not a torchvision SwinTransformer")
    return found


def checked_layout(index: int, module: nn.Module, x: Tensor, rec: SoftmaxRecorder) -> WindowLayout:
    """The block's window layout, after checking that the recorded softmax and shift are the ones
    torchvision's shifted_window_attention is known to compute (a changed torchvision fails loudly)."""
    b, h, w, _ = x.shape  # NHWC
    layout = WindowLayout.for_block(h, w, module.window_size, module.shift_size)
    n = layout.tokens_per_window
    expected = (b * layout.num_windows, module.num_heads, n, n)
    got = [tuple(t.shape) for t in rec.softmax]
    if got != [expected] or (rec.shift or (0, 0)) != layout.shift:
        raise RuntimeError(
            f"torchvision's shifted_window_attention no longer works as vitviz expects (block {index}: "
            f"softmax shapes {got}, expected [{expected}]; shift {rec.shift or (0, 0)}, expected {layout.shift})")
    return layout


def _record(index: int, module: nn.Module, x: Tensor, rec: SoftmaxRecorder, dtype) -> BlockCapture:
    layout = checked_layout(index, module, x, rec)
    # windows are batch-major
    return BlockCapture(index, layout, to_host(rec.softmax[0][: layout.num_windows], dtype))


@contextmanager
def recording_blocks(model: nn.Module, on_block) -> Iterator[None]:
    """Within the block, every Swin block's forward runs under a SoftmaxRecorder and then calls
    on_block(index, module, x, recorder). Hooks are removed (and recorders left) on any exit."""
    active: list[SoftmaxRecorder] = []
    handles = []

    def hooks(index: int):
        def pre_hook(module, args):
            rec = SoftmaxRecorder()
            rec.__enter__()
            active.append(rec)

        def hook(module, args, output):
            rec = active.pop()
            rec.__exit__(None, None, None)
            on_block(index, module, args[0], rec)

        return pre_hook, hook

    try:
        for index, (_, _, module) in enumerate(swin_blocks(model)):
            pre_hook, hook = hooks(index)
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        while active:  # a forward that raised never reached its forward hook
            active.pop().__exit__(None, None, None)
        for h in handles:
            h.remove()


@contextmanager
def capture_window_attention(model: nn.Module, dtype=np.float16) -> Iterator[list[BlockCapture]]:
    """Within the block, every forward appends one BlockCapture per Swin block to the yielded list."""
    store: list[BlockCapture] = []
    with recording_blocks(model, lambda i, m, x, rec: store.append(_record(i, m, x, rec, dtype))):
        yield store


def attention_of(module: nn.Module, x: Tensor, dtype=np.float32) -> tuple[Tensor, BlockCapture]:
    """Run one ShiftedWindowAttention(V2) module on x (B, H, W, C): (its output, its attention)."""
    rec = SoftmaxRecorder()
    with torch.no_grad(), rec:
        out = module(x)
    return out, _record(0, module, x, rec, dtype)


def relative_position_biases(model: nn.Module) -> list[np.ndarray]:
    """Per block (heads, 2Mh-1, 2Mw-1) float32, from the module's own get_relative_position_bias()
    (v1: the table; v2: 16 * sigmoid of the continuous-position MLP), laid out by offset."""
    out = []
    with torch.no_grad():
        for _, _, m in swin_blocks(model):
            pair = m.get_relative_position_bias()[0].to("cpu", torch.float32).numpy()  # (heads, N, N)
            out.append(bias_table(pair, m.window_size, m.relative_position_index.cpu().numpy()))
    return out


def forward_with_capture(model: nn.Module, batch: Tensor, dtype=np.float16) -> SwinCapture:
    """One forward of `batch` (B, 3, H, W) with capture; attention and logits of item 0."""
    from torchvision.models.swin_transformer import ShiftedWindowAttentionV2

    blocks = swin_blocks(model)
    with torch.no_grad(), capture_window_attention(model, dtype) as store:
        t0 = time.perf_counter()
        logits = model(batch)
        if batch.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    if [c.block for c in store] != list(range(len(blocks))):
        raise RuntimeError("Swin blocks ran in an unexpected order; cannot attribute their attention")
    info = [SwinBlock(stage, block, i, int(m.num_heads), store[i].layout, tuple(int(s) for s in m.shift_size))
            for i, (stage, block, m) in enumerate(blocks)]
    return SwinCapture(info, [c.attn for c in store], relative_position_biases(model),
                       logits[0].float().cpu().numpy(),
                       2 if isinstance(blocks[0][2], ShiftedWindowAttentionV2) else 1, seconds)


def stage0_grid(model: nn.Module, transform):
    """The patch-embedding grid: a stride = kernel convolution keeps floor(size / patch) tokens."""
    from ..geometry import TokenGrid

    kh, kw = model.features[0][0].kernel_size
    return TokenGrid(transform.input_h // kh, transform.input_w // kw, kw, kh, transform)


def run(loaded, image, attention_dtype=np.float16):
    """Preprocess `image`, run the Swin model once with capture, return a SwinAnalysis."""
    from ..analysis.swin import SwinAnalysis
    from ..preprocess import prepare

    t0 = time.perf_counter()
    x, transform = prepare(image, loaded.preprocess)
    from ..models.devices import autocast, run_with_oom_fallback

    t1 = time.perf_counter()

    def forward(lm):  # reads lm.device: after a GPU runs out of memory it runs again on the CPU
        with autocast(lm):
            return forward_with_capture(lm.module, x.unsqueeze(0).to(lm.device), attention_dtype)

    cap = run_with_oom_fallback(forward, loaded)
    grid = stage0_grid(loaded.module, transform)
    for b in cap.blocks:  # the stage grids the views draw on must be the maps the model had
        if b.feature_size != grid.coarsen(2 ** b.stage).shape:
            raise RuntimeError(f"stage {b.stage} feature map {b.feature_size} does not match its token "
                               f"grid {grid.coarsen(2 ** b.stage).shape}")
    return SwinAnalysis(
        image=image, grid=grid, model_name=loaded.name, weights=loaded.weights_label,
        trained=loaded.trained, device=loaded.device, model_input=x.numpy(), blocks=cap.blocks,
        attn=cap.attn, rel_bias=cap.rel_bias, logits=cap.logits, class_names=loaded.class_names,
        version=cap.version, notes=list(loaded.notes),
        timings={"preprocess": t1 - t0, "forward": cap.forward_seconds, "total": time.perf_counter() - t0},
        input_mean=loaded.preprocess.mean, input_std=loaded.preprocess.std)
