"""Reading checkpoint files into tensors: .pth/.pt/.bin through torch's safe unpickler only, or
.safetensors; one clear CheckpointError for anything else."""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import CheckpointError


# Harmless classes found beside the tensors in training checkpoints (DINO, MAE and DeiT save their
# argparse options): allowed so such files load; everything else stays refused.
def _safe_extras() -> list:
    import argparse

    return [argparse.Namespace]


def read_state_dict(path: str | os.PathLike) -> dict:
    """Tensors from a .pth/.pt/.bin (safe unpickling only) or .safetensors file, unwrapping the usual
    containers ("model", "state_dict", "teacher", "student", "model_state")."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"Checkpoint {str(p)!r} does not exist or is not a file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p), device="cpu")
        else:
            with torch.serialization.safe_globals(_safe_extras()):
                state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle refusals, truncation, garbage: one clear message
        raise CheckpointError(f"Cannot read checkpoint {p.name!r}: {_read_failure(exc)}") from None
    for key in ("model", "state_dict", "teacher", "student", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"Checkpoint {p.name!r} holds no tensors (not a model state dict)")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _read_failure(exc: Exception) -> str:
    text = str(exc).strip()
    if "weights_only" in text or "Unsupported global" in text or "Unsupported operand" in text:
        culprit = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" (it asks to run {culprit.group(1)})" if culprit else ""
        return ("it holds Python objects other than tensors" + what + ", and vitviz never unpickles "
                "arbitrary objects (torch.load weights_only=True): nothing in it was run. If you trust "
                "the file, re-save its state_dict or convert it to .safetensors.")
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"the file is damaged, truncated or not a PyTorch/safetensors checkpoint ({first})"
