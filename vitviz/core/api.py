"""analyze(): the one entry point to the analysis pipeline, for scripts, the CLI, the GUI worker,
the benchmark and the tests alike."""
from __future__ import annotations

import os

import numpy as np

from .image import ImageSource, load_image
from .models.registry import ModelSpec

DEFAULT_MODEL = "demo_vit"  # bundled, trained, offline: vitviz works with no network

_model_cache: dict = {}


def get_model(model: str | ModelSpec | None = DEFAULT_MODEL, weights: str | os.PathLike | None = "pretrained",
              device: str | None = "cpu", *, cache: bool = True, precision: str | None = None,
              download: bool = False):
    """Load (or reuse) a model: a LoadedModel. The last model used stays loaded for the next call.
    model None with a checkpoint path as weights: the model is inferred from the file (see notes).
    precision: "bfloat16" / "float16" autocast on GPUs. download: fetch missing pretrained weights
    into the torch hub cache first (otherwise random weights run, with a RandomWeightsWarning)."""
    from .models.loading import load_model, resolve_device

    name = model.name if isinstance(model, ModelSpec) else model
    stamp = None
    if weights not in (None, "pretrained", "random") and os.path.isfile(weights):
        st = os.stat(weights)
        stamp = (st.st_mtime_ns, st.st_size)  # a checkpoint rewritten in place is reloaded
    key = (name, str(weights), stamp, resolve_device(device), precision)
    if cache and key in _model_cache:
        hit = _model_cache[key]
        if not (hit.weights_missing and (download or _pretrained_on_disk(hit.spec))):
            return hit
        # it ran untrained because its weights were missing; they have been downloaded since
    loaded = load_model(model, weights, device, precision=precision, download=download)
    if loaded.weights_missing:
        import warnings

        from .models.errors import RandomWeightsWarning

        warnings.warn(RandomWeightsWarning(
            f"{loaded.spec.label}: pretrained weights are not downloaded, so it runs with RANDOM weights "
            f"(the maps show an untrained network). Fetch them with download=True (analyze, get_model) or "
            f"`vitviz export IMAGE --model {loaded.name} --download`."),
            stacklevel=3)
    if cache:
        _model_cache.clear()  # one model resident: they are hundreds of MB each
        _model_cache[key] = loaded
    return loaded


def model_for(model, weights, device, precision, download: bool = False):
    """What analyze() and analyze_many() run: a LoadedModel as given, or get_model() (the default
    model unless a checkpoint path names one)."""
    from .models.loading import LoadedModel, is_checkpoint_path

    if isinstance(model, LoadedModel):
        return model
    if model is None and not is_checkpoint_path(weights):
        model = DEFAULT_MODEL
    return get_model(model, weights, device, precision=precision, download=download)


def _pretrained_on_disk(spec) -> bool:
    from .models.weights import weights_state

    return weights_state(spec) == "cached"


def analyze(image: ImageSource, model=None, weights: str | os.PathLike | None = None,
            device: str | None = "cpu", attention_dtype: str = "float16", precision: str | None = None,
            download: bool = False):
    """Run `model` on `image` with attention capture.

    image: a path, bytes or PIL image. model: a registry name, or a LoadedModel from get_model().
    weights: "pretrained" (torch hub cache; if absent random weights, a note and a RandomWeightsWarning,
    unless download=True fetches them), "random", or a checkpoint path; with a path and no model, the
    model is inferred from the file. attention_dtype:
    "float16" (default, half the memory) or "float32". precision: "bfloat16"/"float16" GPU autocast.
    Returns the family's analysis (ViTAnalysis, SwinAnalysis, DetrAnalysis...; see core.families)."""
    img = load_image(image)
    loaded = model_for(model, weights, device, precision, download)
    dtype = {"float16": np.float16, "float32": np.float32}[str(attention_dtype)]
    from .families import get_family

    from .gradients import attach_model

    result = get_family(loaded.spec.family).runner()(loaded, img, dtype)
    attach_model(result, loaded)  # gradient methods run the model again (explain("relevance", ...))
    return result
