"""The process runtime every layer may use: device choice, seeding, CPU threads, determinism, git info.

It imports nothing of lipspeech's, so the stages, the models, the training loops and the evaluation
take these from here rather than from each other (one device resolver, not one per package). torch
is imported only inside the functions that need it: importing this module (as the CLI does for every
command) must not cost a stage that never touches torch its ~200 MB.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

if TYPE_CHECKING:
    import torch

import numpy as np


class DeviceError(RuntimeError):
    """A device was asked for that this machine does not have (one line)."""


def resolve_device(name: "str | torch.device", what: str = "device") -> "torch.device":
    """``auto`` -> CUDA when available, else the CPU; ``cpu``, ``cuda``, ``cuda:N`` as torch reads them.

    Raises:
        DeviceError: CUDA asked for (``what`` names the config key) but no CUDA device is visible.
    """
    import torch

    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{what} is {name} but no CUDA device is available")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Use ``n`` torch intra-op threads for the block (0: leave as is), then restore."""
    import torch

    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Turn on torch's deterministic algorithms (warn-only) for the block, then restore.

    Without filling new memory: torch's deterministic mode also fills every uninitialised
    tensor with NaN (``torch.utils.deterministic.fill_uninitialized_memory``), a debugging
    aid that changes no correct result and cost a CPU training step of the ``small``
    preset 5 % of its time (every ``torch.empty``, autograd's buffers among them).
    """
    import torch
    import torch.utils.deterministic

    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_bench = torch.backends.cudnn.benchmark
    previous_fill = torch.utils.deterministic.fill_uninitialized_memory
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)
        torch.utils.deterministic.fill_uninitialized_memory = previous_fill
        torch.backends.cudnn.benchmark = previous_bench


def git_commit(cwd: Optional[str | os.PathLike] = None) -> str:
    """``git rev-parse HEAD`` of the repository holding lipspeech (or ``cwd``); "unknown" if none."""
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else "unknown"
