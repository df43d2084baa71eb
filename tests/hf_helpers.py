"""Hub-cache folders written by the tests: tiny random transformers models saved with
save_pretrained into <cache>/models--ORG--NAME/snapshots/REV/ (files as links into blobs/, as
huggingface_hub lays them out) with refs/main naming REV. Never downloads."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image


def write_snapshot(cache: Path, repo_id: str, save, revision: str = "0123456789abcdef0123456789abcdef01234567"
                   ) -> Path:
    """save(folder) writes the files (model.save_pretrained, processor.save_pretrained); they are
    moved into blobs/ and linked from the snapshot, and refs/main points at `revision`."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / revision
    tmp = repo / "tmp-save"
    tmp.mkdir(parents=True, exist_ok=True)
    save(tmp)
    (repo / "blobs").mkdir(exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for f in sorted(tmp.iterdir()):
        blob = repo / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        os.replace(f, blob)
        os.symlink(os.path.relpath(blob, snap), snap / f.name)
    tmp.rmdir()
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snap


def noise_image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((w, h), Image.NEAREST)  # blocks: resampling matters, not noise
    return img


def save_all(*objs):
    def save(folder):
        for o in objs:
            o.save_pretrained(folder)
    return save
