"""The local engine: analyze_many in this process."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator


@dataclass
class LocalEngine:
    workers: int | None = None  # DataLoader decoding processes (None: analyze_many's default)
    name: str = "local"

    def run(self, job, sources: list[str], *, cancel=None, progress=None) -> Iterator[dict]:
        from ..batch.folder import row_of
        from ..batch.many import analyze_many

        for result in analyze_many(
                sources, model=job.model, weights=job.weights, device=job.device,
                batch_size=job.batch_size, keep=job.keep(), attention_dtype=job.attention_dtype,
                precision=job.precision, workers=self.workers, on_error="yield", cancel=cancel,
                progress=progress):
            yield row_of(result)
