"""Causal 1D convolutions, whole sequences and streamed chunks (the streaming mode's convolutions).

A causal convolution is an unpadded ``nn.Conv1d`` fed ``dilation * (k - 1)`` frames of zeros (a whole
sequence) or of the previous chunk's last inputs (a stream) before its input, so frame t reads frames
up to t only. Both give the same outputs for the same frames.
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
