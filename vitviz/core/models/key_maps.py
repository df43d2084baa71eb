"""Building the key tables that translate checkpoint layouts (Hugging Face, timm) into the modules
vitviz runs: most parameters come as a .weight and .bias pair, written once here."""
from __future__ import annotations


def weight_and_bias(pairs: dict[str, str], single: dict[str, str] | None = None) -> dict[str, str]:
    """{"a.norm": "b.ln"} -> {"a.norm.weight": "b.ln.weight", "a.norm.bias": "b.ln.bias"}, plus the
    `single` entries as they are (lone tensors: a weight without a bias, a token, a scale)."""
    out = {f"{src}.{p}": f"{dst}.{p}" for src, dst in pairs.items() for p in ("weight", "bias")}
    out.update(single or {})
    return out
