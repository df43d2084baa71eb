"""Where torch.hub keeps downloaded checkpoints (shared with torchvision)."""
from __future__ import annotations

from pathlib import Path


def hub_checkpoint_dir() -> Path:
    """torch.hub's download folder (honours TORCH_HOME), shared with torchvision and torch.hub."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"
