"""Folder runs: which files to analyse, a result file per image written atomically (so an interrupted
run resumes where it stopped), and stats.json (per-image rows, failures, means) at the end.

Output folder layout:
    run.json            the job (model, weights, statistics); a re-run with another job is refused
    rows/<key>.json     one image's row: {"source", "ok", "values"} or {"source", "ok": false, "error"}
    stats.json          everything: rows, failures and summaries (reducers.summarize)
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable


def image_extensions() -> set[str]:
    """Every extension Pillow can open (lower case, with the dot)."""
    from PIL import Image

    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def is_remote(source: str) -> bool:
    """s3://, gs://, hdfs://... : listed and read by the engine (Ray), not here."""
    return "://" in str(source) and not str(source).startswith("file://")


def list_images(sources: Iterable[str | os.PathLike]) -> list[str]:
    """Files given, plus every image file (by extension) under each folder given, sorted, no repeats.
    Files named explicitly are kept whatever their extension: a bad one is reported, not ignored."""
    exts = image_extensions()
    out: list[str] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            out += sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
        else:
            out.append(str(p))
    seen: set[str] = set()
    return [s for s in out if not (s in seen or seen.add(s))]


@dataclass(frozen=True)
class Job:
    """What to compute: the same for every engine."""

    model: str | None = None
    weights: str | None = None
    stats: tuple[str, ...] = ()  # reducer names; () = every reducer of the model's family
    batch_size: int = 16
    device: str | None = "cpu"
    attention_dtype: str = "float16"
    precision: str | None = None

    def identity(self) -> dict:
        """What must match for results to be reused (not batch size or device)."""
        from ..api import DEFAULT_MODEL
        from ..models.loading import is_checkpoint_path

        model = self.model or (None if is_checkpoint_path(self.weights) else DEFAULT_MODEL)
        return {"model": model, "weights": self.weights, "stats": list(self.stats),
                "attention_dtype": self.attention_dtype}

    def keep(self):
        return list(self.stats) if self.stats else "stats"

    def to_dict(self) -> dict:
        return asdict(self)


def atomic_write_json(path: Path, data) -> None:
    """Write to a temporary file beside `path` and rename it in place: a reader (or a resumed run)
    sees the old file or the whole new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class RunFolderError(ValueError):
    pass


@dataclass
class RunFolder:
    out: Path
    job: Job
    rows_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.rows_dir = self.out / "rows"

    @staticmethod
    def key(source: str) -> str:
        """File name of a source's row: readable stem + hash of the full source (names repeat)."""
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(str(source)).stem)[:40]
        return f"{stem}-{hashlib.sha1(str(source).encode()).hexdigest()[:12]}"

    def open(self, force: bool = False) -> None:
        """Create the folder, or check it holds results of the same job (force: start afresh)."""
        run_file = self.out / "run.json"
        if run_file.exists() and not force:
            try:
                old = json.loads(run_file.read_text()).get("identity")
            except (OSError, ValueError):
                old = None
            if old != self.job.identity():
                raise RunFolderError(
                    f"{self.out} holds results of another run ({old}); give --force to replace them, "
                    "or another --out")
        if force and self.rows_dir.exists():
            for f in self.rows_dir.glob("*.json"):
                f.unlink()
        atomic_write_json(run_file, {"identity": self.job.identity(), "job": self.job.to_dict()})

    def row_path(self, source: str) -> Path:
        return self.rows_dir / f"{self.key(source)}.json"

    def done(self, source: str) -> bool:
        """An image with a successful row is not analysed again (failed ones are retried)."""
        p = self.row_path(source)
        if not p.exists():
            return False
        try:
            return bool(json.loads(p.read_text()).get("ok"))
        except (OSError, ValueError):
            return False  # unreadable: analyse again

    def write(self, row: dict) -> None:
        atomic_write_json(self.row_path(row["source"]), row)

    def rows(self, sources: list[str] | None = None) -> list[dict]:
        """The rows of `sources` in their order (those with a row), or every row in the folder."""
        if sources is None:
            paths = sorted(self.rows_dir.glob("*.json"))
        else:
            paths = [self.row_path(s) for s in sources]
        out = []
        for p in paths:
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, ValueError):
                continue
        return out

    def write_stats(self, rows: list[dict], extra: dict | None = None) -> dict:
        from .reducers import summarize

        ok = [r for r in rows if r.get("ok")]
        failed = [{"source": r["source"], "error": r.get("error", "")} for r in rows if not r.get("ok")]
        stats = {"job": self.job.to_dict(), "images": len(ok), "failed": failed,
                 **summarize(ok), "rows": ok, **(extra or {})}
        atomic_write_json(self.out / "stats.json", stats)
        return stats


def row_of(result, model_name: str = "", weights: str = "") -> dict:
    """An ImageResult or ImageFailure as a JSON row."""
    from .many import ImageFailure

    if isinstance(result, ImageFailure):
        return {"source": result.source, "ok": False, "error": result.error}
    return {"source": result.source, "ok": True, "model": result.model_name or model_name,
            "family": result.family, "values": result.values,
            "seconds": {k: round(float(v), 6) for k, v in result.timings.items()}}
