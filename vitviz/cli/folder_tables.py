"""What the per-folder table commands share (`vitviz analyses`, `vitviz faithfulness`, `vitviz
stats`): the model arguments, the list of images, running with clean interrupts, writing the table."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def table_parser(prog: str, doc: str, sources_help: str) -> argparse.ArgumentParser:
    """A parser with the sources and the model, weights and device arguments every command takes."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=doc.split("\n\n", 1)[1])
    p.add_argument("sources", nargs="+", help=sources_help)
    p.add_argument("--model", help="model name (see `vitviz models`; default demo_vit)")
    p.add_argument("--weights", default="pretrained", help="pretrained, random, or a checkpoint file")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    return p


def names_arg(parser: argparse.ArgumentParser, text: str, option: str, what: str) -> list[str]:
    """The comma-separated names of `option`; none at all is a usage error."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        parser.error(f"{option} names no {what}")
    return names


def images_or_none(prog: str, sources: list[str]) -> list[str] | None:
    """The image files in `sources` (folders recursively); None, said on stderr, if there are none."""
    from ..core.batch.folder import list_images

    images = list_images(sources)
    if not images:
        print(f"{prog}: no images found in " + ", ".join(sources), file=sys.stderr)
        return None
    return images


def run_and_write(prog: str, out: Path, compute, write_csv, print_summary) -> int:
    """table = compute(); written to `out` (.csv through write_csv, else JSON); exit code 0, 2 for a
    bad model/method/input (said on stderr), 130 if interrupted (nothing written)."""
    try:
        table = compute()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing written.", file=sys.stderr)
        return 130
    except (ValueError, KeyError, RuntimeError) as exc:  # unknown model or method, a family without it
        print(f"{prog}: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        write_csv(out, table)
    else:
        out.write_text(json.dumps(table, indent=1))
    print_summary(table, out)
    return 0
