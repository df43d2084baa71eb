"""analyze_many(): one analysis per image, in order, from batched forwards.

Decoding and preprocessing run in a torch DataLoader (worker processes for files; in the main
process for in-memory images, where shipping pixels to workers costs more than it saves), the
forward in batches (vitviz.core.batch.forward), and `keep` decides what each result holds, so
memory stays bounded over any number of images.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .forward import Prepared, prepare_item, run_batch
from .memory import fitting_batch_size


@dataclass
class ImageFailure:
    """An image that could not be read or preprocessed (yielded in its place with on_error="yield")."""

    index: int
    source: str
    error: str
    reason: str = ""  # the error without the source's name (for lists that name it already)


@dataclass
class ImageResult:
    """What `keep` asked for of one image: {reducer: {field: value}} (JSON-able)."""

    index: int
    source: str
    values: dict[str, Any]
    family: str = ""
    model_name: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def source_label(source, index: int) -> str:
    """How a source is named in rows and messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, bytes):
        return f"<bytes #{index}>"
    return f"<{type(source).__name__} #{index}>"


def _load_and_prepare(index: int, source, pre, family: str, label: str | None = None
                      ) -> Prepared | ImageFailure:
    from ..image import ImageLoadError, load_image

    label = label or source_label(source, index)
    try:
        return prepare_item(index, label, load_image(source, name=label), pre, family)
    except ImageLoadError as exc:
        return ImageFailure(index, label, str(exc), exc.reason)
    except Exception as exc:  # a decoder or preprocessing failure: one bad image must not end the run
        why = f"{type(exc).__name__}: {exc}"
        return ImageFailure(index, label, why, why)


def _datasets():
    import torch.utils.data as tud

    class MapDataset(tud.Dataset):
        def __init__(self, sources, pre, family, names):
            self.sources, self.pre, self.family, self.names = sources, pre, family, names

        def __len__(self):
            return len(self.sources)

        def __getitem__(self, i):
            name = self.names[i] if self.names is not None else None
            return _load_and_prepare(i, self.sources[i], self.pre, self.family, name)

    class StreamDataset(tud.IterableDataset):
        def __init__(self, sources, pre, family, names):
            self.sources, self.pre, self.family, self.names = sources, pre, family, names

        def __iter__(self):
            names = iter(self.names) if self.names is not None else None
            for i, src in enumerate(self.sources):
                yield _load_and_prepare(i, src, self.pre, self.family, next(names) if names else None)

    return MapDataset, StreamDataset


def as_sources(images) -> Sequence | Iterable:
    """A single path / array / tensor batch given where many are expected: a 4-D array or tensor is
    a batch of images (N x H x W x C numpy, N x C x H x W torch); a str is one path."""
    from ..image_arrays import is_tensor

    if isinstance(images, (str, bytes, os.PathLike)):
        return [images]
    if (isinstance(images, np.ndarray) or is_tensor(images)) and images.ndim in (2, 3):
        return [images]
    return images


def default_workers(sources, batch_size: int) -> int:
    """Worker processes for decoding: none for in-memory images or a single batch; for files, the
    cores less one for the forward (at most 4)."""
    try:
        n = len(sources)
    except TypeError:
        return 0
    if n <= batch_size or not all(isinstance(s, (str, os.PathLike)) for s in sources):
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _resolve_keep(keep, family: str) -> Callable | None:
    """None = keep whole analyses; else a function analysis -> values dict."""
    from .reducers import default_reducers, get_reducer, reduce

    if keep in (None, "all"):
        return None
    if callable(keep):
        return keep
    names = default_reducers(family) if keep == "stats" else [keep] if isinstance(keep, str) else list(keep)
    for n in names:
        get_reducer(n)  # unknown names fail before any image is read
    return lambda a: reduce(a, names)


def analyze_many(images, model=None, weights=None, device: str | None = "cpu", *, batch_size: int = 16,
                 keep="all", attention_dtype: str = "float16", precision: str | None = None,
                 workers: int | None = None, on_error: str = "raise", cancel=None, progress=None,
                 names: Sequence[str] | None = None) -> Iterator:
    """Analyse many images with batched forwards; yields one result per image, in order.

    images: a sequence or iterable of anything analyze() takes (paths, bytes, PIL images, numpy
      arrays, torch tensors), or one 4-D array / tensor holding a batch.
    model, weights, device, precision: as analyze() (model may be a LoadedModel).
    batch_size: images per forward. ViT and Swin inputs all have the model's size; DETR batches runs
      of images whose inputs have the same size (padding would change its results). Lowered, with a
      BatchMemoryWarning, when a batch's attention would not fit in half the available memory.
    keep: "all" (the full ViTAnalysis / SwinAnalysis / DetrAnalysis), "stats" (every reducer that
      applies to the family), reducer names (see vitviz.core.batch.reducers), or a callable
      analysis -> dict. Anything but "all" yields ImageResult and drops the attention.
    workers: DataLoader processes for decoding (None: see default_workers).
    on_error: "raise" (the image's ImageLoadError, after the results before it), "skip", or "yield"
      (an ImageFailure in its place).
    cancel: a threading.Event (or anything with is_set()); checked before each batch.
    progress: None, True (a tqdm bar with ETA on stderr) or a callable(done, total or None).
    names: what to call each image in results and messages (default: its path, or "<bytes #i>").
    """
    from torch.utils.data import DataLoader

    from ..api import model_for
    from ..gradients import attach_model

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if on_error not in ("raise", "skip", "yield"):
        raise ValueError(f"on_error must be 'raise', 'skip' or 'yield', not {on_error!r}")
    dtype = {"float16": np.float16, "float32": np.float32}[str(attention_dtype)]
    loaded = model_for(model, weights, device, precision)
    family = loaded.spec.family
    batch_size = fitting_batch_size(loaded, batch_size, str(attention_dtype))
    reduce_fn = _resolve_keep(keep, family)
    sources = as_sources(images)
    workers = default_workers(sources, batch_size) if workers is None else int(workers)
    MapDataset, StreamDataset = _datasets()
    if hasattr(sources, "__len__") and hasattr(sources, "__getitem__"):
        dataset, total = MapDataset(sources, loaded.preprocess, family, names), len(sources)
    else:  # a generator: read in order in this process (it cannot be split between workers)
        dataset, total, workers = StreamDataset(sources, loaded.preprocess, family, names), None, 0
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=list,
                        shuffle=False, persistent_workers=False)
    report = ProgressReport(progress, total, loaded.name)
    done = 0
    try:
        for batch in loader:
            if cancel is not None and cancel.is_set():
                return
            ok = [p for p in batch if isinstance(p, Prepared)]
            results = iter(run_batch(loaded, ok, dtype))
            for item in batch:
                done += 1
                if isinstance(item, ImageFailure):
                    if on_error == "raise":
                        from ..image import ImageLoadError

                        raise ImageLoadError(item.source, item.error)
                    if on_error == "yield":
                        yield item
                    continue
                a = next(results)
                attach_model(a, loaded)  # for gradient methods (vitviz.core.gradients)
                if reduce_fn is None:
                    yield a
                else:
                    yield ImageResult(item.index, item.source, reduce_fn(a), family, loaded.name,
                                      dict(a.timings))
                    del a  # only the reduced values outlive the batch
            report(done)
    finally:
        report.close()


class ProgressReport:
    """tqdm when progress is True; a plain callback otherwise."""

    def __init__(self, progress, total, name: str):
        self.bar, self.fn, self.done = None, None, 0
        if progress is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=name, unit="img", dynamic_ncols=True)
        elif callable(progress):
            self.fn = progress
        self.total = total

    def __call__(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.done)
        elif self.fn is not None:
            self.fn(done, self.total)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
