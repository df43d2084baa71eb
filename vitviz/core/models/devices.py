"""Where and at what precision a model runs: device choice, GPU autocast, and the move to the CPU
when the GPU runs out of memory."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

# name -> canonical name; float32 is "no autocast"
_PRECISIONS = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
               "float16": "float16", "fp16": "float16", "half": "float16"}
_GPU_TYPES = ("cuda", "mps")


def resolve_device(device: str | None) -> str:
    """"auto" (or None): CUDA, else Apple MPS, else the CPU; otherwise the device asked for, checked."""
    import torch

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"Device {device!r} was asked for, but this machine has no CUDA GPU")
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError("Device 'mps' was asked for, but this machine has no Apple GPU")
    return device


def resolve_precision(precision: str | None, device: str) -> tuple[str, str | None]:
    """(canonical precision, note or None). Reduced precision is for GPUs only: on the CPU it falls
    back to float32 with a note (CPU autocast is slow and changes results for no gain here)."""
    name = _PRECISIONS.get(str(precision or "float32").lower())
    if name is None:
        raise ValueError(f"precision must be one of float32, bfloat16 (bf16), float16 (fp16); got {precision!r}")
    if name != "float32" and device.split(":")[0] not in _GPU_TYPES:
        return "float32", f"{name} autocast runs on GPUs only; running float32 on the {device.upper()}."
    return name, None


@contextlib.contextmanager
def autocast(loaded) -> Iterator[None]:
    """torch.autocast at the model's precision on its device; nothing for float32."""
    import torch

    precision = getattr(loaded, "precision", "float32")
    device_type = loaded.device.split(":")[0]
    if precision == "float32" or device_type not in _GPU_TYPES:
        yield
        return
    with torch.autocast(device_type=device_type, dtype=getattr(torch, precision)):
        yield


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return isinstance(exc, (oom, torch.cuda.OutOfMemoryError)) or (
        isinstance(exc, RuntimeError) and "MPS backend out of memory" in str(exc))


def run_with_oom_fallback(fn: Callable[[object], T], loaded) -> T:
    """fn(loaded); if the GPU runs out of memory, move the model to the CPU (for good: a second try
    would fail the same way), note it, and call fn(loaded) again. fn must read `loaded.device` to
    place its inputs, and start from scratch on each call (fresh capture buffers)."""
    try:
        return fn(loaded)
    except Exception as exc:
        if not is_out_of_memory(exc) or loaded.device == "cpu":
            raise
        gpu = loaded.device
    move_to_cpu(loaded, f"The GPU ({gpu}) ran out of memory; this model now runs on the CPU "
                        "(slower). Free GPU memory and choose the device again to go back.")
    return fn(loaded)


def move_to_cpu(loaded, note: str) -> None:
    import torch

    loaded.module.to("cpu")
    loaded.device = "cpu"
    loaded.precision = "float32"
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if note not in loaded.notes:
        loaded.notes.append(note)
