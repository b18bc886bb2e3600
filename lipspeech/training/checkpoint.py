"""Checkpoints: atomic save, exact resume (model, optimiser, scheduler, RNGs, data position).

A checkpoint is a dict of tensors and plain Python values only, so it loads with
``torch.load(weights_only=True)``:

``format, step, epoch, batch_in_epoch, best, model, optimizer, scheduler, rng,
model_cfg, train_cfg, git_commit, lipspeech_version`` and, for the LTBS model, ``bundle``
(what using the model needs: :mod:`lipspeech.training.bundle`, which also upgrades
format 1 checkpoints on load). Vocoder checkpoints carry their mel definition and
generator config instead (:func:`lipspeech.vocoder.load_hifigan`).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from lipspeech.core.store import atomic_path

FORMAT = 2
#: formats :func:`load_checkpoint` still reads (1: LTBS checkpoints before bundles)
READABLE_FORMATS = (1, 2)


def capture_rng() -> dict[str, Any]:
    """The states of Python's, numpy's and torch's (CPU and CUDA) global generators."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Put the global generators back to a state from :func:`capture_rng`.

    Its tensors may be on any device: a checkpoint loaded with ``map_location`` a GPU (as the loop
    resumes a CUDA run) has them there, and torch and numpy take generator states from the CPU only.
    """
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file + rename).

    Saved through a file object: given a path, torch names the zip archive inside after
    the (random) temporary file name, and the same state would give different bytes.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save({"format": FORMAT, **state}, fh)


def load_checkpoint(path: str | os.PathLike, map_location: Optional[str | torch.device] = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if ckpt.get("format") not in READABLE_FORMATS:
        raise ValueError(f"{path}: checkpoint format {ckpt.get('format')!r}, this lipspeech reads "
                         f"{', '.join(map(str, READABLE_FORMATS))} (a newer lipspeech wrote it?)")
    return ckpt
