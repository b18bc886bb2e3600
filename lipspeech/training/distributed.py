"""Data-parallel training (DDP): the launcher, the process group and what the trainer needs.

One process per GPU (or several CPU processes with gloo) each take a slice of
every global batch; DDP averages their gradients, so with ``world_size``
processes a step is the step of one process on the whole batch:

* the data order is the single process's (:func:`~lipspeech.training.data.epoch_batches`
  with the same seed): rank ``r`` takes items ``r, r + W, r + 2W, ...`` of each
  batch, and augmentation is keyed by the global (epoch, batch, item), so every
  item is cropped and flipped as in the single-process run;
* BatchNorm statistics are over the whole batch (torch's SyncBatchNorm on GPU,
  :class:`AllReduceBatchNorm` with gloo, where torch has none);
* ActNorm's data-dependent initialisation sums over all ranks
  (:func:`sum_over_ranks`).

What is not the single process's: a loss that is a mean over frames is averaged
per rank and then over ranks, which weights the ranks' frames equally only when
their slices have as many frames (equal lengths, or ``bucket`` for nearly so);
dropout draws differ (each rank has its own generator). Batches smaller than the
number of processes are dropped (a rank would get nothing), which renumbers the
later batches of that epoch; ``drop_last`` or a multiple of the batch size avoids it.

``lipspeech train --nproc N`` starts N processes under torchrun
(``python -m torch.distributed.run --standalone``); inside each, the usual
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` variables are set and
:func:`process_group` joins them (nccl on CUDA, gloo on CPU).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn

#: how long a rank waits for the others at a collective (rank 0 validates alone meanwhile)
TIMEOUT = datetime.timedelta(minutes=int(os.environ.get("LIPSPEECH_DDP_TIMEOUT_MIN", "60")))


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the process group."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> Optional[DistInfo]:
    """This process's place when a process group of more than one is running, else None."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local)


def launched_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def process_group(device: str) -> Iterator[Optional[DistInfo]]:
    """Join the process group torchrun describes in the environment, for the block.

    Nothing happens (yields None) outside torchrun or with one process. The
    backend is nccl when the training device is CUDA, gloo otherwise; on CUDA
    each process takes the GPU of its ``LOCAL_RANK``.
    """
    if launched_world_size() < 2 or (dist.is_available() and dist.is_initialized()):
        yield dist_info()
        return
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    try:
        yield dist_info()
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist_info() is not None:
        dist.barrier()


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The command that runs ``lipspeech <argv>`` in ``nproc`` processes under torchrun on this node."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc-per-node", str(nproc), "-m", "lipspeech.cli", *argv]


def shard_batches(batches: Sequence[Sequence[int]], info: DistInfo) -> list[list[int]]:
    """This rank's slice of every global batch.

    A batch with fewer items than ranks (an epoch's partial last batch) joins a neighbouring batch,
    so every rank takes the same number of steps, the ranks' items are disjoint, and together they
    are every item of the epoch (only an epoch with fewer items than ranks is dropped whole).
    """
    merged: list[list[int]] = []
    pending: list[int] = []
    for b in batches:
        b = pending + list(b)
        if len(b) >= info.world_size:
            merged.append(b)
            pending = []
        elif merged:
            merged[-1] = merged[-1] + b
            pending = []
        else:
            pending = b
    return [b[info.rank :: info.world_size] for b in merged]


def all_true(flag: bool) -> bool:
    """True when ``flag`` holds on every rank."""
    t = torch.tensor([0 if flag else 1], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return int(t.item()) == 0


def mean_over_ranks(values: dict[str, float], names: Sequence[str]) -> dict[str, float]:
    """Each of ``values`` averaged over the ranks (to log the global batch's losses).

    ``names`` fixes the order (every rank sends all of them, NaN for one it lacks),
    so ranks whose batches gave different loss terms still exchange equal tensors.
    """
    t = torch.tensor([float(values.get(k, float("nan"))) for k in names], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    mean = (t.cpu() / dist.get_world_size()).tolist()
    return {k: v for k, v in zip(names, mean) if k in values}


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (a collective: all ranks must call it), in rank order."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class _SumOverRanks(torch.autograd.Function):
    """Differentiable all-reduce (sum): the gradient of a sum over ranks is the sum of the gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def sum_over_ranks(tensor: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
    """``tensor`` summed over all ranks; ``tensor`` itself in a single process."""
    if dist_info() is None:
        return tensor
    if differentiable:
        return _SumOverRanks.apply(tensor)
    out = tensor.clone()
    dist.all_reduce(out)
    return out


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm (any input rank, (N, C, ...)) whose training statistics cover every rank's batch.

    torch's :class:`~torch.nn.SyncBatchNorm` runs on GPUs only; this one all-reduces
    the per-channel sums (differentiably) over any backend, gloo included. In a
    single process, or in eval mode, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or dist_info() is None:
            return super().forward(input)
        dims = [0] + list(range(2, input.dim()))
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = torch.tensor([input.numel() / max(1, input.shape[1])], dtype=input.dtype, device=input.device)
        stats = sum_over_ranks(torch.cat([input.sum(dims), count]), differentiable=True)
        n = stats[-1].detach().clamp_min(1.0)
        mean = stats[:-1] / n
        centered = input - mean.view(shape)
        var = sum_over_ranks((centered * centered).sum(dims), differentiable=True) / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp_min(1.0))
                self.running_mean.mul_(1 - factor).add_(factor * mean.detach())
                self.running_var.mul_(1 - factor).add_(factor * unbiased.detach())
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def sync_batchnorm(module: nn.Module, cuda: bool) -> nn.Module:
    """``module`` with every BatchNorm computing its statistics over all ranks (same parameters, buffers, keys)."""
    if cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, AllReduceBatchNorm):
        out = AllReduceBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats, device=module.running_mean.device
                                 if module.running_mean is not None else None)
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out
    for name, child in module.named_children():
        module.add_module(name, sync_batchnorm(child, cuda))
    return module
