"""Command line: `vitviz [IMAGE...]` opens the app; subcommands run headless.

    vitviz [IMAGE...] [--model NAME] [--weights pretrained|random|PATH] [--device auto|cpu|cuda|mps]
    vitviz models | export ... | bench ...
"""
from __future__ import annotations

import argparse
import sys
from importlib import import_module

# subcommand -> module with main(argv) -> int
SUBCOMMANDS = {
    "models": "vitviz.cli.models",
    "export": "vitviz.cli.export",
    "bench": "vitviz.cli.bench",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="vitviz", description="See inside vision transformers. Subcommands: "
        + ", ".join(SUBCOMMANDS) + " (vitviz SUBCOMMAND --help).")
    parser.add_argument("images", nargs="*", help="image files to open (the first is shown)")
    parser.add_argument("--model", help="model name (see `vitviz models`)")
    parser.add_argument("--weights", help="pretrained, random, or a checkpoint file")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or mps (default cpu)")
    parser.add_argument("--version", action="version", version=f"vitviz {__version__}")
    args = parser.parse_args(argv)
    from .gui.app import run_app

    return run_app(args.images, args.model, args.weights, args.device)


if __name__ == "__main__":
    sys.exit(main())
