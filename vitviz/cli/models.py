"""`vitviz models`: the built-in models with the state of their weights, and the Hugging Face
hub-cache models vitviz can open (by id, offline)."""
from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="vitviz models", description=__doc__).parse_args(argv)
    from ..core.models.hf_cache import hub_cache_dir
    from ..core.models.hf_specs import cached_specs
    from ..core.models.registry import all_specs
    from ..core.models.weights import weights_state

    print(f"{'name':<22}{'family':<7}{'weights':<14}label")
    for spec in all_specs():
        if spec.group.startswith("Test") or spec.source:
            continue
        state = "bundled" if spec.bundled else weights_state(spec)
        print(f"{spec.name:<22}{spec.family:<7}{state:<14}{spec.label}")
    hub = cached_specs()
    print(f"\nHugging Face hub cache ({hub_cache_dir()}): " + (f"{len(hub)} model(s) vitviz opens" if hub else "none"))
    for spec, entry in hub:
        state = "cached" if entry.has_weights else "config only"
        print(f"{spec.name:<40}{spec.family:<7}{state:<13}{entry.size_bytes / 1e6:8.1f} MB")
    print("\ntimm ViTs open as timm:NAME (pip install 'vitviz[timm]').")
    return 0
