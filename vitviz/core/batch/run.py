"""run_stats(): a Job over many images with any engine, resumable, ending in stats.json."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .folder import Job, RunFolder, is_remote, list_images


@dataclass
class RunSummary:
    total: int  # images in the run (local sources; remote ones are counted as they arrive)
    analysed: int  # analysed in this run
    skipped: int  # done by an earlier run
    failed: list[dict] = field(default_factory=list)  # {"source", "error"}, of the whole run
    cancelled: bool = False
    stats: dict | None = None  # stats.json's content (None when cancelled)
    out: Path | None = None


def run_stats(sources, out, job: Job, engine=None, *, force: bool = False, cancel=None,
              progress=None) -> RunSummary:
    """Analyse every image of `sources` (files, folders, remote URIs for Ray) with `engine` (default
    local), writing one row per image into `out` as it arrives; images done by an earlier run of the
    same job are skipped unless `force`. Ends by writing out/stats.json, unless cancelled (Ctrl+C
    included: the rows written so far stay, and a re-run resumes)."""
    from ..engines import get_engine

    engine = engine or get_engine("local")
    sources = [str(s) for s in ([sources] if isinstance(sources, (str, Path)) else sources)]
    remote = [s for s in sources if is_remote(s)]
    files = list_images([s for s in sources if not is_remote(s)])
    run = RunFolder(Path(out), job)
    run.open(force=force)
    todo = [f for f in files if force or not run.done(f)]
    summary = RunSummary(total=len(files), analysed=0, skipped=len(files) - len(todo), out=run.out)
    seen_remote: list[str] = []
    try:
        for row in engine.run(job, todo + remote, cancel=cancel, progress=progress):
            run.write(row)
            summary.analysed += 1
            if row["source"] not in files:
                seen_remote.append(row["source"])
    except KeyboardInterrupt:
        summary.cancelled = True
    if cancel is not None and cancel.is_set():
        summary.cancelled = True
    rows = run.rows(files + seen_remote) if not remote else run.rows()
    summary.failed = [{"source": r["source"], "error": r.get("error", "")} for r in rows if not r.get("ok")]
    if not summary.cancelled:
        summary.total = len(files) + len(seen_remote) if not remote else len(rows)
        summary.stats = run.write_stats(rows, {"engine": getattr(engine, "name", type(engine).__name__)})
    return summary
