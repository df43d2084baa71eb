"""How many images a batched forward can hold: a batch keeps every image's attention until its
results are handed out (whatever `keep` says afterwards), so batch_size x one image's attention
must fit. The per-image figures come from vitviz.core.memory_estimate (the model's shapes on the
meta device); a batch that would take more than half the available memory runs smaller, with a
warning that says why."""
from __future__ import annotations

import warnings

SHARE = 0.5  # of the available memory a batch's attention and activations may take


class BatchMemoryWarning(UserWarning):
    """batch_size was lowered so the batch fits in memory."""


def per_image_bytes(loaded, attention_dtype: str = "float16") -> int | None:
    """Peak bytes one image adds to a batch (its kept attention and copies, the transient float32
    attention, the activations), the weights not counted (loaded already); None if unknown.
    DETR (input follows the image): its largest input, size x max_size."""
    from ..memory_estimate import architecture, estimate

    pre = loaded.spec.preprocess
    long = pre.max_size or pre.size
    arch = architecture(loaded.spec, (long, pre.size) if pre.kind == "resize_short" else (pre.size, pre.size))
    if arch is None:
        return None
    est = estimate(arch, attention_dtype, weights_resident=True)
    return int(est.attention_peak + est.activations - arch.conv_weight_bytes)


def fitting_batch_size(loaded, batch_size: int, attention_dtype: str = "float16",
                       available: int | None = None) -> int:
    """batch_size, or the largest smaller one whose batch fits in SHARE of the available memory
    (a BatchMemoryWarning says so); batch_size itself when no estimate can be made."""
    from ..memory_estimate import available_memory, fmt_bytes

    if batch_size <= 1:
        return batch_size
    try:
        per = per_image_bytes(loaded, attention_dtype)
    except Exception:  # noqa: BLE001 (no estimate: run as asked)
        per = None
    free = available_memory(loaded.device) if available is None else available
    if not per or free is None:
        return batch_size
    fit = max(1, int(free * SHARE // per))
    if fit >= batch_size:
        return batch_size
    warnings.warn(
        f"batch_size {batch_size} of {loaded.spec.label} would hold about {fmt_bytes(per * batch_size)} of "
        f"attention and activations, more than half of the {fmt_bytes(free)} available: running batches of "
        f"{fit} instead", BatchMemoryWarning, stacklevel=3)
    return fit
