"""The Ray Data engine: files read by Ray, analysed by actors that load the model once each.

Ray reads the files as bytes (`ray.data.read_binary_files`: local folders, and on a cluster whatever
Ray's filesystems read: s3://, gs://, hdfs://...) and vitviz decodes them with the same loader as
the local engine, so EXIF orientation, 16-bit, CMYK and palette files give the same pixels, and a
broken file becomes a failure row instead of failing the whole Ray job (`read_images` would decode
with its own rules and raise on the first bad file). Each batch then goes through the same
function as the local engine (analyze_many + row_of) in a callable class given to `map_batches`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Iterator

INSTALL_HINT = "the Ray engine needs Ray Data: pip install 'vitviz[ray]' (or pip install 'ray[data]')"


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"{INSTALL_HINT} ({exc})") from None
    return ray


class AnalyzeBatch:
    """map_batches callable: one model per actor, loaded in __init__; each call analyses a batch of
    files given as bytes and returns one JSON row per file."""

    def __init__(self, job: dict):
        from ..api import get_model
        from ..batch.folder import Job

        self.job = Job(**{**job, "stats": tuple(job.get("stats") or ())})
        self.loaded = get_model(self.job.model or _default_model(self.job.weights), self.job.weights,
                                self.job.device, precision=self.job.precision)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        from ..batch.folder import row_of
        from ..batch.many import analyze_many

        data, paths = list(batch["bytes"]), [str(p) for p in batch["path"]]
        rows = []
        for result in analyze_many(
                [bytes(d) for d in data], model=self.loaded, batch_size=self.job.batch_size,
                keep=self.job.keep(), attention_dtype=self.job.attention_dtype, workers=0,
                on_error="yield", names=paths):
            rows.append(json.dumps(row_of(result)))
        return {"row": np.array(rows, dtype=object)}


def _cause(exc: BaseException) -> str:
    """The root error of a Ray failure, in one line (Ray wraps it in several layers of traceback)."""
    while getattr(exc, "cause", None) is not None and exc.cause is not exc:
        exc = exc.cause
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _default_model(weights):
    from ..api import DEFAULT_MODEL
    from ..models.loading import is_checkpoint_path

    return None if is_checkpoint_path(weights) else DEFAULT_MODEL


@dataclass
class RayEngine:
    address: str | None = None  # None: start a local Ray (num_cpus of it); "auto" or ray://...: join a cluster
    num_cpus: int | None = None  # for a local Ray only
    actors: int = 1  # model copies running at once
    num_gpus: float = 0  # per actor
    name: str = "ray"

    def start(self):
        ray = import_ray()
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.num_cpus, **kwargs)
        return ray

    def run(self, job, sources: list[str], *, cancel=None, progress=None) -> Iterator[dict]:
        from ..batch.folder import image_extensions, is_remote
        from ..batch.many import ProgressReport

        ray = self.start()
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # vitviz's own bar counts images
        # Ray reports local files by absolute path: map them back to the names the driver uses
        names = {} if all(is_remote(s) for s in sources) else {
            os.path.abspath(s): s for s in sources if not is_remote(s)}
        remote_folders = [s for s in sources if is_remote(s)]
        exts = sorted(e.lstrip(".") for e in image_extensions()) if remote_folders else None
        paths = [os.path.abspath(s) if not is_remote(s) else s for s in sources]
        if not paths:
            return
        ds = ray.data.read_binary_files(paths, include_paths=True, file_extensions=exts)
        device = job.device if job.device not in (None, "auto") else ("cuda" if self.num_gpus else "cpu")
        job_dict = {**job.to_dict(), "device": device, "stats": list(job.stats)}
        out = ds.map_batches(AnalyzeBatch, fn_constructor_kwargs={"job": job_dict},
                             batch_size=job.batch_size,
                             compute=ray.data.ActorPoolStrategy(size=self.actors),
                             num_gpus=self.num_gpus or None, batch_format="numpy")
        total = None if remote_folders else len(paths)
        report = ProgressReport(progress, total, f"{job.identity()['model'] or 'model'} (ray)")
        done = 0
        try:
            rows = iter(out.iter_rows())
            while True:
                try:
                    rec = next(rows)
                except StopIteration:
                    break
                except ray.exceptions.RayError as exc:  # e.g. an actor could not load the model
                    raise RuntimeError(f"the Ray job failed: {_cause(exc)}") from exc
                row = json.loads(rec["row"])
                row["source"] = names.get(row["source"], names.get(os.path.abspath(row["source"]),
                                                                   row["source"]))
                yield row
                done += 1
                report(done)
                if cancel is not None and cancel.is_set():
                    return
        finally:
            report.close()
