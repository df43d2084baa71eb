"""`vitviz models`: the built-in models with the state of their weights."""
from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="vitviz models", description=__doc__).parse_args(argv)
    from ..core.models.registry import all_specs
    from ..core.models.weights import weights_state

    print(f"{'name':<22}{'family':<7}{'weights':<14}label")
    for spec in all_specs():
        if spec.group.startswith("Test"):
            continue
        state = "bundled" if spec.bundled else weights_state(spec)
        print(f"{spec.name:<22}{spec.family:<7}{state:<14}{spec.label}")
    return 0
