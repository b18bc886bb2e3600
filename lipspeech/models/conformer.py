"""Conformer stack with key-padding masks (encoder h_v and the mel decoder).

A block is the usual macaron layout of Gulati et al. (2020): half-step
feed-forward, multi-head self-attention, convolution module, half-step
feed-forward, final LayerNorm. Two deliberate choices (ours):

* absolute sinusoidal positions are added once at the input of the stack
  (relative attention buys little at GRID's 3 s utterances);
* the convolution module normalises with LayerNorm, not BatchNorm, and zeroes
  padded frames before its depthwise convolution, so a padded utterance gives the
  same outputs on its valid frames as the same utterance alone, in training and
  in eval mode.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from lipspeech.models.dropout import Dropout, dropout


def sinusoidal_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(length, dim) sinusoidal position table (sin on even, cos on odd channels)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table.to(dtype)


class FeedForward(nn.Module):
    """LayerNorm -> Linear -> SiLU -> Linear (pre-norm feed-forward).

    Args:
        dim: model width D.
        hidden: inner width.
        dropout: dropout rate.
    """

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden),
            nn.SiLU(),
            Dropout(dropout),
            nn.Linear(hidden, dim),
            Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.net(x)


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention with a key padding mask.

    Args:
        dim: model width D (divisible by ``heads``).
        heads: attention heads.
        dropout: dropout on attention weights and on the output.
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"model width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.attn_dropout = dropout
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attend over valid frames only.

        Args:
            x: (B, T, D).
            mask: (B, T) bool, True on valid frames.

        Returns:
            (B, T, D); rows of padded frames are meaningless (callers mask them).
        """
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        keys = mask[:, None, None, :]
        if self.training and self.attn_dropout > 0 and x.device.type == "cpu":
            # what scaled_dot_product_attention computes, with the cheaper dropout mask
            scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
            weights = torch.softmax(scores.masked_fill(~keys, float("-inf")), dim=-1)
            y = dropout(weights, self.attn_dropout, True) @ v
        else:
            p = self.attn_dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=p)
        return self.dropout(self.out(y.transpose(1, 2).reshape(b, t, d)))


class ConvModule(nn.Module):
    """Conformer convolution module: pointwise + GLU, depthwise conv, LayerNorm, SiLU, pointwise.

    Args:
        dim: model width D.
        kernel_size: depthwise kernel (odd).
        dropout: dropout rate.
    """

    def __init__(self, dim: int, kernel_size: int, dropout: float):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"conformer kernel size must be odd, got {kernel_size}")
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm_mid = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D), (B, T) bool -> (B, T, D)."""
        y = F.glu(self.pointwise_in(self.norm(x)), dim=-1)
        y = y * mask[..., None].to(y.dtype)  # padded frames must not leak into valid ones
        y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)
        y = self.pointwise_out(F.silu(self.norm_mid(y)))
        return self.dropout(y)


class ConformerBlock(nn.Module):
    """One conformer block.

    Args:
        dim: model width D.
        heads: attention heads.
        ffn_dim: feed-forward inner width.
        kernel_size: convolution module kernel (odd).
        dropout: dropout rate.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, kernel_size: int, dropout: float):
        super().__init__()
        self.ff1 = FeedForward(dim, ffn_dim, dropout)
        self.attn = SelfAttention(dim, heads, dropout)
        self.conv = ConvModule(dim, kernel_size, dropout)
        self.ff2 = FeedForward(dim, ffn_dim, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D), (B, T) bool -> (B, T, D), zero on padded frames."""
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, mask)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x) * mask[..., None].to(x.dtype)


class Conformer(nn.Module):
    """A stack of conformer blocks with sinusoidal input positions.

    Args:
        dim: model width D.
        layers: number of blocks.
        heads: attention heads per block.
        ffn_dim: feed-forward inner width.
        kernel_size: convolution module kernel (odd).
        dropout: dropout rate.
    """

    def __init__(self, dim: int, layers: int, heads: int, ffn_dim: int, kernel_size: int, dropout: float):
        super().__init__()
        self.dim = dim
        self.input_dropout = Dropout(dropout)
        self.blocks = nn.ModuleList(ConformerBlock(dim, heads, ffn_dim, kernel_size, dropout) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encode a padded sequence.

        Args:
            x: (B, T, D) inputs.
            mask: (B, T) bool, True on valid frames.

        Returns:
            (B, T, D) outputs, zero on padded frames.
        """
        x = x + sinusoidal_positions(x.shape[1], self.dim, x.device, x.dtype)[None]
        x = self.input_dropout(x) * mask[..., None].to(x.dtype)
        for block in self.blocks:
            x = block(x, mask)
        return x
