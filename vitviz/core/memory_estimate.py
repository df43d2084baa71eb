"""How much memory running a model on an image will take, before it runs: so the app can refuse
with a message (and say what would fit) instead of the process being killed.

    estimate = weights + runtime overhead
             + kept attention x copies      (layers x heads x N^2 x bytes; DETR: its encoder at the
                                              input size, the decoder's self- and cross-attention)
             + one attention in float32 x 2 (logits and softmax of the largest layer, transient)
             + the largest activation + the convolution weights once more (CPU convolutions work
               on a reordered copy of their weights: DETR's ResNet)

The shapes come from the model itself, built on torch's "meta" device (no memory, no weights
read) and run once there with hooks on its attention modules, so N is what the model really
sees (class and register tokens, Swin's padded windows, DETR's stride-32 feature map). Checked
against the peak RSS growth of a fresh process (tests/test_memory_estimate.py). No Qt; torch is
imported inside the functions that build the model.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

MiB = 2 ** 20
OVERHEAD = 48 * MiB  # torch's first forward: kernels, thread pools, allocator arenas (demo ViT: 47 MiB)
OVERHEAD_PER_WEIGHT = 0.08  # building the module: initialisation temporaries, allocator slack
# Copies of the kept attention at the peak: ViT appends one array per layer, then np.stack()s them
# (core/capture/vit.py); Swin keeps the per-block list; DETR fills preallocated arrays.
KEPT_COPIES = {"vit": 2, "swin": 1, "detr": 1}
ITEMSIZE = {"float16": 2, "float32": 4}


def attention_elements(layers: int, heads: int, queries: int, keys: int | None = None, count: int = 1) -> int:
    """layers x heads x queries x keys (x count: Swin's windows per image)."""
    return layers * heads * queries * (queries if keys is None else keys) * count


@dataclass(frozen=True)
class Attention:
    """One attention module's weights per forward: count x heads x queries x keys. `grows` says which
    of (count, queries, keys) are image tokens, i.e. scale with the image area: ViT (False, True,
    True), Swin (True, False, False: more windows of the same size), DETR's decoder cross-attention
    (False, False, True), its decoder self-attention none."""

    heads: int
    queries: int
    keys: int
    count: int = 1
    grows: tuple[bool, bool, bool] = (False, True, True)

    @property
    def elements(self) -> int:
        return attention_elements(1, self.heads, self.queries, self.keys, self.count)

    def scaled(self, ratio: float) -> "Attention":
        c, q, k = (max(1, round(n * ratio)) if g else n for n, g in zip((self.count, self.queries, self.keys), self.grows))
        return replace(self, count=c, queries=q, keys=k)


@dataclass(frozen=True)
class Architecture:
    family: str
    weight_bytes: int  # parameters and buffers
    conv_weight_bytes: int
    attention: tuple[Attention, ...]
    largest_activation: int  # bytes of the largest module output (float32)
    input_hw: tuple[int, int]

    def scaled(self, area_ratio: float) -> "Architecture":
        """The same model on an input with `area_ratio` times the pixels (an approximation: token
        counts scale with the area, prefix tokens included)."""
        h, w = self.input_hw
        s = math.sqrt(area_ratio)
        return replace(self, attention=tuple(a.scaled(area_ratio) for a in self.attention),
                       largest_activation=int(self.largest_activation * area_ratio),
                       input_hw=(max(1, round(h * s)), max(1, round(w * s))))


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    overhead: int
    attention_kept: int  # what the analysis holds afterwards
    attention_peak: int  # kept x copies + the largest attention in float32, twice
    activations: int
    attention_dtype: str
    input_hw: tuple[int, int]

    @property
    def total(self) -> int:
        return self.weights + self.overhead + self.attention_peak + self.activations

    def describe(self) -> str:
        return (f"about {fmt_bytes(self.total)} (weights {fmt_bytes(self.weights)}, attention "
                f"{fmt_bytes(self.attention_peak)} in {self.attention_dtype} at {self.input_hw[1]}x{self.input_hw[0]} "
                f"input, activations and runtime {fmt_bytes(self.activations + self.overhead)})")


def fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / MiB:.0f} MiB"


def estimate(arch: Architecture, attention_dtype: str = "float16", weights_resident: bool = False) -> MemoryEstimate:
    """The peak memory of analysing one image. weights_resident: the model is loaded already (the
    app's last model): its weights and the runtime are not counted again."""
    kept = sum(a.elements for a in arch.attention) * ITEMSIZE[attention_dtype]
    transient = 2 * 4 * max((a.elements for a in arch.attention), default=0)
    copies = KEPT_COPIES.get(arch.family, 2)
    weights = 0 if weights_resident else arch.weight_bytes
    overhead = 0 if weights_resident else int(OVERHEAD + OVERHEAD_PER_WEIGHT * arch.weight_bytes)
    return MemoryEstimate(weights, overhead, kept, kept * copies + transient,
                          arch.largest_activation + arch.conv_weight_bytes, attention_dtype, arch.input_hw)


# -- the model's shapes, from a forward on the meta device ------------------------------------------
_ARCH_CACHE: dict = {}  # per model: the shapes at the first input size asked for


def architecture(spec, image_size: tuple[int, int], exact: bool = False) -> Architecture | None:
    """Shapes of `spec` (a registry ModelSpec) on an image of (width, height) pixels, or None when
    the model cannot be built on the meta device (Hugging Face / timm layouts, checkpoints).
    A forward on the meta device takes up to a second (DETR-R50: torch runs its Python
    decompositions), so it runs once per model; another input size (DETR keeps the image's aspect)
    is that architecture scaled by the area, unless `exact`."""
    from .preprocess import input_transform

    if spec.source:
        return None
    t = input_transform(int(image_size[0]), int(image_size[1]), spec.preprocess)
    hw = (t.input_h, t.input_w)
    key = (spec.name, spec.family, spec.builder, repr(sorted(spec.builder_kwargs.items())), spec.preprocess)
    if exact or key not in _ARCH_CACHE:
        try:
            arch = _meta_architecture(spec, *hw)
        except Exception:  # noqa: BLE001 (no estimate: the run goes ahead as before)
            arch = None
        if exact:
            return arch
        _ARCH_CACHE[key] = arch
    arch = _ARCH_CACHE[key]
    if arch is None or arch.input_hw == hw:
        return arch
    return replace(arch.scaled(hw[0] * hw[1] / (arch.input_hw[0] * arch.input_hw[1])), input_hw=hw)


def _meta_architecture(spec, h: int, w: int) -> Architecture:
    import torch
    from torch import nn
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    from .models.loading import build_module

    with torch.device("meta"):
        module = build_module(spec, spec.preprocess).eval()
    weights = sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
    conv = sum(m.weight.numel() * m.weight.element_size() for m in module.modules() if isinstance(m, nn.Conv2d))
    seen: list[tuple] = []
    largest = [0]

    def on_attention(mod, args, out):
        if isinstance(mod, nn.MultiheadAttention):
            q, k = args[0], args[1]
            dim = 1 if mod.batch_first else 0
            seen.append(("mha", mod.num_heads, q.shape[dim], k.shape[dim]))
        else:  # Swin: (n, H, W, C), padded up to whole windows
            _, fh, fw, _ = args[0].shape
            wh, ww = mod.window_size
            windows = math.ceil(fh / wh) * math.ceil(fw / ww)
            seen.append(("win", mod.num_heads, wh * ww, windows))

    def on_output(mod, args, out):
        if isinstance(out, torch.Tensor):
            largest[0] = max(largest[0], out.numel() * 4)

    handles = []
    for m in module.modules():
        if isinstance(m, (nn.MultiheadAttention, ShiftedWindowAttention)):
            handles.append(m.register_forward_hook(on_attention))
        elif not list(m.children()):
            handles.append(m.register_forward_hook(on_output))
    try:
        with torch.no_grad():
            module(torch.empty(1, 3, h, w, device="meta"))
    finally:
        for hd in handles:
            hd.remove()
    image_tokens = max((s[2] for s in seen if s[0] == "mha"), default=0)  # the longest sequence
    att = []
    for kind, heads, a, b in seen:
        if kind == "win":
            att.append(Attention(heads, a, a, count=b, grows=(True, False, False)))
        else:
            att.append(Attention(heads, a, b, grows=(False, a == image_tokens, b == image_tokens)))
    return Architecture(spec.family, weights, conv, tuple(att), largest[0], (h, w))


# -- what the machine has ----------------------------------------------------------------------------
def available_memory(device: str = "cpu") -> int | None:
    """Bytes that can be allocated now: CUDA's free memory, else MemAvailable (Linux), else the
    free physical pages (os.sysconf); None when unknown."""
    if str(device).startswith("cuda"):
        try:
            import torch

            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except Exception:  # noqa: BLE001
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


class ModelTooLargeError(MemoryError):
    """Raised before a run that would not fit; the message names the estimate and what fits."""


def check(spec, image_size: tuple[int, int], attention_dtype: str = "float16", device: str = "cpu",
          available: int | None = None, weights_resident: bool = False) -> MemoryEstimate | None:
    """The estimate, or ModelTooLargeError when it exceeds the available memory. None when no
    estimate can be made (the run goes ahead)."""
    arch = architecture(spec, image_size)
    if arch is None:
        return None
    est = estimate(arch, attention_dtype, weights_resident)
    free = available_memory(device) if available is None else available
    if free is None or est.total <= free:
        return est
    fits = []
    if attention_dtype == "float32":
        half = estimate(arch, "float16", weights_resident)
        if half.total <= free:
            fits.append(f"float16 attention ({fmt_bytes(half.total)})")
    if spec.preprocess.kind == "resize_short":  # the input follows the image (DETR): a smaller one fits
        for side in range(9, 0, -1):
            small = estimate(arch.scaled((side / 10) ** 2), attention_dtype, weights_resident)
            if small.total <= free:
                fits.append(f"an input of {small.input_hw[1]}x{small.input_hw[0]} px ({fmt_bytes(small.total)})")
                break
    what = "; ".join(fits) if fits else (
        f"a smaller model: the weights alone need {fmt_bytes(est.weights)}" if est.weights > free else
        "a smaller model (this one's input size is fixed by its crop)")
    raise ModelTooLargeError(
        f"{spec.label} on this image would need {est.describe()}, but only {fmt_bytes(free)} of memory is "
        f"available, so it was not run. What would fit: {what}.")


def check_model(model: str, image_size: tuple[int, int], device: str = "cpu",
                attention_dtype: str = "float16") -> MemoryEstimate | None:
    """check() for a registry name, as the app's worker runs it before loading: a model that is
    resident already (the app's last model, api.get_model's cache) does not count its weights
    twice; names not in the registry are not estimated."""
    from . import api
    from .models.loading import resolve_device
    from .models.registry import get_spec

    try:
        spec = get_spec(model)
    except KeyError:
        return None
    device = resolve_device(device)
    resident = any(k[0] == spec.name and k[3] == device for k in getattr(api, "_model_cache", {}))
    return check(spec, image_size, attention_dtype, device, weights_resident=resident)
