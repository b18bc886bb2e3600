"""Causal 1D convolutions, whole sequences and streamed chunks (the streaming mode's convolutions).

A causal convolution is an unpadded ``nn.Conv1d`` fed ``dilation * (k - 1)`` frames of zeros (a whole
sequence) or of the previous chunk's last inputs (a stream) before its input, so frame t reads frames
up to t only. Both give the same outputs for the same frames.

A chunk convolution (a streaming decoder's option) is a centred kernel cut at the end of the
frame's chunk: frame t of chunk c (frames cC .. cC + C - 1) reads ``dilation * (k - 1) / 2`` frames
before it and the frames after it up to cC + C - 1, none later. A chunk is decoded once all of it
has arrived, so reading within it adds no latency.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F


def context(conv: nn.Conv1d) -> int:
    """Frames before a frame that ``conv`` reads: dilation * (kernel - 1)."""
    return conv.dilation[0] * (conv.kernel_size[0] - 1)


def causal_conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """(B, C, T) -> (B, C_out, T), zeros before the first frame."""
    return conv(nn.functional.pad(x, (context(conv), 0)))


def causal_conv_step(conv: nn.Conv1d, x: torch.Tensor, state: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of a stream.

    Args:
        conv: the convolution (``padding=0``).
        x: (B, C, n) the chunk's inputs.
        state: (B, C, context) the inputs before it, or None at the start (zeros).

    Returns:
        (B, C_out, n) and the state for the next chunk.
    """
    ctx = context(conv)
    if state is None:
        state = x.new_zeros(x.shape[0], x.shape[1], ctx)
    x = torch.cat([state, x], dim=2)
    return conv(x), x[:, :, x.shape[2] - ctx :]


def half_context(conv: nn.Conv1d) -> int:
    """Frames on each side of a frame that a centred ``conv`` reads: dilation * (kernel - 1) / 2."""
    return conv.dilation[0] * (conv.kernel_size[0] - 1) // 2


def chunk_conv(conv: nn.Conv1d, x: torch.Tensor, chunk: Optional[int]) -> torch.Tensor:
    """(B, C, T) -> (B, C_out, T): ``conv`` (odd kernel, ``padding=0``) centred on each frame, reading
    after it only the frames of its chunk of ``chunk`` frames (chunks start at frame 0); zeros outside
    the sequence. ``chunk`` None: one chunk covers the sequence (the centred convolution)."""
    ctx = half_context(conv)
    if chunk is None or chunk >= x.shape[-1]:
        return conv(F.pad(x, (ctx, ctx)))
    half, d, w = (conv.kernel_size[0] - 1) // 2, conv.dilation[0], conv.weight
    y = F.conv1d(F.pad(x, (ctx, 0)), w[..., : half + 1], conv.bias, dilation=d, groups=conv.groups)  # past, present
    position = torch.arange(x.shape[-1], device=x.device) % chunk
    for j in range(1, half + 1):  # each tap after the frame, where it stays inside the chunk
        offset = d * j
        if offset >= chunk:
            break
        tap = F.conv1d(F.pad(x[..., offset:], (0, offset)), w[..., half + j : half + j + 1], groups=conv.groups)
        y = y + tap * (position + offset < chunk).to(y.dtype)
    return y


def chunk_conv_step(conv: nn.Conv1d, x: torch.Tensor, state: Optional[torch.Tensor]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """One whole chunk of a stream through a chunk convolution: (B, C, n) its inputs and ``state``
    (B, C, half context) the inputs before it, or None at the start (zeros) -> (B, C_out, n) and the
    state for the next chunk. Equals :func:`chunk_conv` with chunks of n frames on those frames."""
    ctx = half_context(conv)
    if state is None:
        state = x.new_zeros(x.shape[0], x.shape[1], ctx)
    x = torch.cat([state, x], dim=2)
    return conv(F.pad(x, (0, ctx))), x[:, :, x.shape[2] - ctx :]


def causal_kernels(module: nn.Module) -> list[tuple[nn.Parameter, int]]:
    """The temporal kernels of one of the model's modules that has a ``causal`` switch, with their
    time axis: a front-end's 3D stem (axis 2), a conformer convolution module's depthwise
    convolution, a variance predictor's convolutions, a WaveNet's dilated convolutions (axis -1)."""
    kernels: list[tuple[nn.Parameter, int]] = []
    if isinstance(getattr(module, "conv3d", None), nn.Conv3d):
        kernels.append((module.conv3d.weight, 2))
    if isinstance(getattr(module, "depthwise", None), nn.Conv1d):
        kernels.append((module.depthwise.weight, -1))
    for name in ("convs", "in_convs"):
        kernels += [(conv.weight, -1) for conv in getattr(module, name, ()) if isinstance(conv, nn.Conv1d)]
    return kernels


def align_centred_kernel(weight: torch.Tensor, axis: int) -> torch.Tensor:
    """A centred convolution's kernel (odd size k along ``axis``, taps at offsets -(k-1)/2 .. (k-1)/2,
    times the dilation) as a causal one (offsets -(k-1) .. 0) that reads the same past and present
    with the same taps and nothing else: its taps for the future are dropped, the oldest (k-1)/2
    are zero. Copied unaligned, a centred kernel used causally reads every input (k-1)/2 frames late."""
    k = weight.shape[axis]
    if k % 2 != 1:
        raise ValueError(f"a centred kernel has an odd size, got {k}")
    s = (k - 1) // 2
    out = torch.zeros_like(weight)
    out.narrow(axis, s, k - s).copy_(weight.narrow(axis, 0, k - s))
    return out
