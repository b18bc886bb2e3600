"""Causal 1D convolutions, whole sequences and streamed chunks (the streaming mode's convolutions).

A causal convolution is an unpadded ``nn.Conv1d`` fed ``dilation * (k - 1)`` frames of zeros (a whole
sequence) or of the previous chunk's last inputs (a stream) before its input, so frame t reads frames
up to t only. Both give the same outputs for the same frames. :class:`Lookahead` is the one convolution
that reads ahead: a bounded number of the decoder's own later states (the decoder's look-ahead).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


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


class Lookahead(nn.Module):
    """x + a convolution over each frame and the ``frames`` after it (zeros past the end): a streaming
    decoder's look-ahead over its own output states (``stream_decoder_lookahead_frames``). Its
    weights start at zero, so it starts as the identity (a model trained without it, unchanged).

    Args:
        dim: channels D.
        frames: frames after each frame it reads (mel frames).
    """

    def __init__(self, dim: int, frames: int):
        super().__init__()
        self.frames = frames
        self.conv = nn.Conv1d(dim, dim, frames + 1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D), (B, T) bool, ``x`` zero on padded frames -> (B, T, D), zero on padded frames."""
        y = self.conv(nn.functional.pad(x.transpose(1, 2), (0, self.frames))).transpose(1, 2)
        return (x + y) * mask[..., None].to(x.dtype)

    def step(self, x: torch.Tensor, final: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """A stream's states so far, not yet read out (B, n, D) -> the outputs of the frames whose
        look-ahead is in (all of them when ``final``: zeros past the end), and the states kept."""
        if final:
            return self.forward(x, x.new_ones(x.shape[:2], dtype=torch.bool)), x[:, :0]
        ready = max(x.shape[1] - self.frames, 0)
        if not ready:
            return x[:, :0], x
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return x[:, :ready] + y, x[:, ready:]
