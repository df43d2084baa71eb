"""Command line: `vitviz [IMAGE...]` opens the app; subcommands run headless.

    vitviz [IMAGE...] [--model NAME] [--weights pretrained|random|PATH] [--device auto|cpu|cuda|mps]
           [--download]
    vitviz models | export ... | bench ... | stats ... | faithfulness ...
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from importlib import import_module

# subcommand -> module with main(argv) -> int
SUBCOMMANDS = {
    "models": "vitviz.cli.models",
    "export": "vitviz.cli.export",
    "bench": "vitviz.cli.bench",
    "stats": "vitviz.cli.batch",
    "faithfulness": "vitviz.cli.faithfulness",
    "analyses": "vitviz.cli.analyses",
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
    parser.add_argument("--device", help="auto, cpu, cuda or mps (default: the last one chosen, else auto)")
    parser.add_argument("--download", action="store_true",
                        help="fetch the model's pretrained weights first if they are missing (progress on "
                             "stderr), and download without asking in the app")
    parser.add_argument("--version", action="version", version=f"vitviz {__version__}")
    args = parser.parse_args(argv)
    if args.download:
        if args.weights not in (None, "pretrained"):
            parser.error("--download fetches pretrained weights: leave out --weights or say --weights pretrained")
        model = args.model or _remembered_model()
        code = fetch_weights(model)
        if code:
            return code
        os.environ["VITVIZ_DOWNLOAD"] = "1"  # the app downloads other models' weights without asking too
    from .gui.app import run_app

    return run_app(args.images, args.model, args.weights, args.device)


def _remembered_model() -> str:
    """The model the app will open with: the last one used, else the default."""
    from PySide6 import QtCore

    from .core.api import DEFAULT_MODEL

    return str(QtCore.QSettings("vitviz", "vitviz").value("model/name", DEFAULT_MODEL))


class ProgressLine:
    """A download's progress on one stderr line (rewritten in place on a terminal; a line per 10%
    otherwise, so logs stay short)."""

    def __init__(self, name: str, stream=None):
        self.name, self.stream = name, stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_time, self._last_step = 0.0, -1

    def __call__(self, done: int, total: int | None) -> None:
        step = int(10 * done / total) if total else int(done / 50e6)
        now = time.monotonic()
        final = total is not None and done >= total
        if self.tty and (final or now - self._last_time >= 0.2):
            self.stream.write("\r" + self.text(done, total))
            self.stream.flush()
            self._last_time = now
        elif not self.tty and (step != self._last_step or final):
            self.stream.write(self.text(done, total) + "\n")
            self.stream.flush()
        self._last_step = step

    def text(self, done: int, total: int | None) -> str:
        if total:
            return f"Downloading {self.name}: {100 * done / total:3.0f}% ({done / 1e6:.1f} of {total / 1e6:.1f} MB)"
        return f"Downloading {self.name}: {done / 1e6:.1f} MB"

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def fetch_weights(model: str, stream=None) -> int:
    """Download `model`'s pretrained weights into the torch hub cache unless they are there or not
    needed, with a progress line on stderr. 0 when the model can run trained, 1 on a failed
    download (the message says what to fetch by hand), 2 for an unknown model. Ctrl+C cancels
    cleanly (no partial file)."""
    from .core.models.download import DownloadError, download_weights, effective_url, file_name_of
    from .core.models.registry import get_spec
    from .core.models.weights import cached_weights_path, weights_url

    stream = stream or sys.stderr
    try:
        spec = get_spec(model)
    except KeyError as exc:
        print(f"vitviz: {exc.args[0]}", file=stream)
        return 2
    if spec.bundled:
        print(f"{spec.label}: trained weights ship with vitviz, nothing to download.", file=stream)
        return 0
    url = weights_url(spec)
    if url is None:
        print(f"{spec.label} has no published weights to download (it runs with random weights; "
              "give a checkpoint file with --weights).", file=stream)
        return 0
    cached = cached_weights_path(spec)
    if cached is not None:
        print(f"{spec.label}: weights already downloaded ({cached}).", file=stream)
        return 0
    print(f"Fetching {spec.label} weights from {effective_url(url)}", file=stream)
    line = ProgressLine(file_name_of(url), stream)
    try:
        path = download_weights(spec, progress=line)
    except DownloadError as exc:
        line.end()
        print(f"vitviz: {exc}", file=stream)
        return 1
    except KeyboardInterrupt:
        line.end()
        print(f"vitviz: download of {file_name_of(url)} cancelled; nothing was saved.", file=stream)
        return 130
    line.end()
    print(f"Saved {path}", file=stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
