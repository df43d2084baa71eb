"""Engines run one Job over many image sources and yield one JSON row per image, in any order.

    local   analyze_many in this process: DataLoader workers for decoding, batched forwards
    ray     Ray Data: files read by Ray (local folders, s3://, gs://...), the same batch function
            in actors that load the model once each (`pip install vitviz[ray]`)

An engine is anything with run(job, sources, *, cancel=None, progress=None) -> iterator of rows;
the folder run (vitviz.core.batch.folder) writes the rows and reduces them on the driver, so every
engine gives the same stats.json.
"""
from __future__ import annotations

from typing import Iterator, Protocol


class Engine(Protocol):
    name: str

    def run(self, job, sources: list[str], *, cancel=None, progress=None) -> Iterator[dict]:
        ...


def get_engine(name: str, **options) -> Engine:
    if name == "local":
        from .local import LocalEngine

        return LocalEngine(**options)
    if name == "ray":
        from .ray import RayEngine

        return RayEngine(**options)
    raise ValueError(f"unknown engine {name!r}; known: local, ray")
