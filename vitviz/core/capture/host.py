"""Captured attention leaves the model as numpy, in the dtype the caller asked for."""
from __future__ import annotations

import numpy as np
import torch

_TORCH_DTYPES = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32}


def attention_dtype(dtype) -> np.dtype:
    """float16 or float32 as a numpy dtype; anything else is refused."""
    dtype = np.dtype(dtype)
    if dtype not in _TORCH_DTYPES:
        raise ValueError(f"attention dtype must be float16 or float32, not {dtype}")
    return dtype


def to_host(x: torch.Tensor, dtype) -> np.ndarray:
    """A numpy copy of `x` (never a view of the model's memory), cast in torch: numpy's float16
    cast cost ~5x more than the forward's own share (measured by vitviz bench)."""
    return x.detach().to("cpu", _TORCH_DTYPES[attention_dtype(dtype)], copy=True).numpy()
