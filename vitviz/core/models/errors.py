"""The error a checkpoint that cannot be used raises, and the warning random weights give: shared by
the loader and the layout readers (apart from both so neither imports the other)."""
from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint file could not be used; the message says which file and why. `missing`,
    `unexpected` and `mismatched` ((key, checkpoint shape, model shape)) list the keys that did
    not fit, when that was the reason."""

    def __init__(self, message: str, missing: list[str] | None = None, unexpected: list[str] | None = None,
                 mismatched: list[tuple[str, tuple, tuple]] | None = None) -> None:
        super().__init__(message)
        self.missing = missing or []
        self.unexpected = unexpected or []
        self.mismatched = mismatched or []


class RandomWeightsWarning(UserWarning):
    """Pretrained weights were asked for but are not on disk, so the model runs with random weights
    (its maps show an untrained network). Filter it with warnings.filterwarnings if that is meant."""
