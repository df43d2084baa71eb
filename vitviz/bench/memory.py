"""Row group 6: peak resident memory after analysing one image, one fresh process per model so the
peaks do not mix, and the bytes the analysis holds for attention.

ViT-L/16 runs at 384 x 384: the registry has it at 224 only, so the child builds the same spec with
Preprocess("center_crop", 384, resize=384); the loader then passes image_size=384 to torchvision's
builder (random weights: no 384 checkpoint is read). The child goes through get_model() + analyze().
"""
from __future__ import annotations

import json
import sys

from .metrics import Row, missing

GOAL_BYTES = "<= 2"
# (label, registry name, input size)
MODELS = (("ViT-B/16", "vit_b_16", 224), ("ViT-L/16 @384", "vit_l_16", 384))


def rss_metric(label: str) -> str:
    return f"Peak RSS after analysing one image, {label}"


def bytes_metric(label: str) -> str:
    return f"Attention bytes per weight, {label}"


def metrics() -> list[tuple[str, str, str | None]]:
    """(metric, unit, goal) of every row, in order."""
    return [row for label, _, _ in MODELS for row in ((rss_metric(label), "MiB", None),
                                                      (bytes_metric(label), "B", GOAL_BYTES))]


def peak_rss_bytes() -> int:
    """This process' peak resident set. Linux: VmHWM, which starts afresh at exec (ru_maxrss does
    not: a child spawned by a big parent reports the parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB elsewhere


def child_main(argv: list[str]) -> int:
    """`python -m vitviz.bench.memory NAME SIZE IMAGE DEVICE`: JSON of the figures."""
    import dataclasses

    name, size, image, device = argv[0], int(argv[1]), argv[2], argv[3]
    from vitviz.core.api import analyze, get_model
    from vitviz.core.models.registry import Preprocess, get_spec

    from .capture import attention_arrays

    spec = get_spec(name)
    if size != spec.preprocess.size:
        spec = dataclasses.replace(spec, name=f"{name}@{size}", label=f"{spec.label} @{size}",
                                   preprocess=Preprocess("center_crop", size, resize=size),
                                   pretrained_preprocess=None)
    import torch  # noqa: F401 (so `before` counts the imports, not the model)
    import torchvision  # noqa: F401

    before = peak_rss_bytes()
    loaded = get_model(spec, "random", device)
    analysis = analyze(image, model=loaded)
    arrays = attention_arrays(analysis)
    out = {"peak_rss": peak_rss_bytes(), "rss_before_model": before,
           "attn_bytes": sum(a.nbytes for a in arrays), "attn_weights": sum(a.size for a in arrays),
           "dtypes": sorted({str(a.dtype) for a in arrays}), "shape": list(analysis.attn.shape),
           "params": sum(p.numel() for p in loaded.module.parameters())}
    if loaded.device.startswith("cuda"):
        import torch

        out["cuda_peak"] = torch.cuda.max_memory_allocated()
    print(json.dumps(out))
    return 0


def run(ctx) -> list[Row]:
    import subprocess

    rows = []
    for label, name, size in MODELS:
        cmd = [sys.executable, "-m", "vitviz.bench.memory", name, str(size), str(ctx.image_path), ctx.device]
        try:
            proc = subprocess.run(cmd, env=ctx.child_env(), capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                raise RuntimeError(" | ".join(proc.stderr.strip().splitlines()[-3:]))
            d = json.loads(proc.stdout.strip().splitlines()[-1])
        except Exception as exc:
            why = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
            rows += [missing(rss_metric(label), "MiB", None, why), missing(bytes_metric(label), "B", GOAL_BYTES, why)]
            continue
        L, H, N, _ = d["shape"]
        gpu = f"; CUDA peak allocated {d['cuda_peak'] / 2**20:.0f} MiB" if "cuda_peak" in d else ""
        rows.append(Row(rss_metric(label), d["peak_rss"] / 2**20, "MiB", None, note=(
            f"fresh process, {name} at {size}x{size}, random weights ({d['params'] / 1e6:.0f} M parameters), "
            f"{ctx.device}: peak resident set (VmHWM) after get_model() + analyze(); "
            f"{d['rss_before_model'] / 2**20:.0f} MiB before, after the imports{gpu}")))
        rows.append(Row(bytes_metric(label), d["attn_bytes"] / d["attn_weights"], "B", GOAL_BYTES, note=(
            f"{d['attn_bytes'] / 2**20:.0f} MiB held for {L} layers x {H} heads x {N}x{N} weights "
            f"({', '.join(d['dtypes'])}; default attention_dtype float16)")))
    return rows


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
