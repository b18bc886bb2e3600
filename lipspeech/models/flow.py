"""Glow post-net: refines the coarse mel by a conditional normalising flow.

Every flow layer has the signature ``forward(x, mask, g=None, reverse=False)``
with ``x`` (B, C, T), ``mask`` (B, 1, T) float and ``g`` (B, G, T) conditioning;
forward it returns ``(y, logdet)`` with ``logdet`` (B,), the log-determinant of
the Jacobian summed over valid frames; in reverse it returns ``(x, None)``.
Padded frames are kept at zero and add nothing to ``logdet``.

A flow step is ActNorm -> invertible 1x1 conv -> affine coupling. The coupling's
last convolution is zero-initialised, so each coupling starts as the identity.

In the model's streaming mode the couplings' WaveNets are causal (``causal=True``): every
other part of a flow step is per frame, so the flow then reads no frame after the one it
computes, and :meth:`FlowPostNet.step` runs it in reverse one chunk at a time.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from lipspeech.models.causal import causal_conv, causal_conv_step
from lipspeech.models.dropout import Dropout


def _lengths(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, T) mask -> (B,) number of valid frames."""
    return mask.sum(dim=(1, 2))


def _sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the processes of data-parallel training (in place); ``t`` itself otherwise."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


class ActNorm(nn.Module):
    """Per-channel affine map ``y = bias + exp(logs) * x``.

    With data-dependent init (``ddi``), the first forward pass in training mode
    sets ``bias``/``logs`` so that the output has zero mean and unit variance
    per channel over the valid frames of that batch. Whether that happened is a
    buffer, so it survives checkpoints.

    Args:
        channels: C.
        ddi: data-dependent initialisation on the first training batch.
    """

    def __init__(self, channels: int, ddi: bool = True):
        super().__init__()
        self.logs = nn.Parameter(torch.zeros(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))
        self.register_buffer("initialized", torch.tensor(not ddi))

    @torch.no_grad()
    def _init_from(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        # in data-parallel training the statistics are those of the whole batch, over all ranks
        n = _sum_over_ranks(mask.sum()).clamp_min(1.0)
        mean = _sum_over_ranks((x * mask).sum(dim=(0, 2), keepdim=True)) / n
        var = _sum_over_ranks((((x - mean) * mask) ** 2).sum(dim=(0, 2), keepdim=True)) / n
        logs = -0.5 * torch.log(var.clamp_min(1e-6))
        self.logs.copy_(logs)
        self.bias.copy_(-mean * torch.exp(logs))
        self.initialized.fill_(True)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, g: Optional[torch.Tensor] = None, reverse: bool = False
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B, C, T) -> (B, C, T), logdet (B,) forward / None reverse."""
        if not reverse and self.training and not bool(self.initialized):
            self._init_from(x, mask)
        if reverse:
            return (x - self.bias) * torch.exp(-self.logs) * mask, None
        y = (self.bias + torch.exp(self.logs) * x) * mask
        return y, self.logs.sum() * _lengths(mask)


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution mixing channels within groups.

    The C channels form C / k groups of k channels; group j holds channels
    ``j, j + C/k, j + 2C/k, ...``, so each group spans both halves the coupling
    splits. One k x k matrix (initialised as a random rotation) mixes every
    group; k = C gives a full 1x1 convolution.

    Args:
        channels: C.
        group_size: k, a divisor of C.
    """

    def __init__(self, channels: int, group_size: int = 4):
        super().__init__()
        if channels % group_size:
            raise ValueError(f"invertible 1x1 conv: group size {group_size} does not divide {channels} channels")
        self.channels = channels
        self.group_size = group_size
        w = torch.linalg.qr(torch.randn(group_size, group_size))[0]
        if torch.det(w) < 0:
            w[:, 0] = -w[:, 0]
        self.weight = nn.Parameter(w)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, g: Optional[torch.Tensor] = None, reverse: bool = False
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B, C, T) -> (B, C, T), logdet (B,) forward / None reverse."""
        b, c, t = x.shape
        k = self.group_size
        w = self.weight.to(torch.promote_types(self.weight.dtype, torch.float32))
        w = torch.linalg.inv(w) if reverse else w
        y = torch.einsum("ij,bjgt->bigt", w.to(x.dtype), x.reshape(b, k, c // k, t)).reshape(b, c, t) * mask
        if reverse:
            return y, None
        logdet = torch.linalg.slogdet(w)[1] * (c // k) * _lengths(mask)
        return y, logdet


class WaveNet(nn.Module):
    """WaveNet: dilated convs with gated tanh/sigmoid units, conditioned on ``g``; centred
    windows, or causal ones in streaming mode.

    Args:
        hidden: channels H.
        kernel_size: conv kernel (odd).
        dilation_rate: layer i uses dilation ``dilation_rate ** i``.
        layers: number of gated layers.
        cond_channels: channels G of the conditioning ``g`` (0: unconditioned).
        dropout: dropout on the gated activations.
        causal: frame t reads frames up to t only (streaming).
    """

    def __init__(
        self, hidden: int, kernel_size: int, dilation_rate: int, layers: int, cond_channels: int, dropout: float,
        causal: bool = False,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"WaveNet kernel must be odd, got {kernel_size}")
        self.hidden = hidden
        self.layers = layers
        self.causal = causal
        self.in_convs = nn.ModuleList()
        self.res_skip = nn.ModuleList()
        for i in range(layers):
            dilation = dilation_rate**i
            pad = 0 if causal else dilation * (kernel_size - 1) // 2
            self.in_convs.append(nn.Conv1d(hidden, 2 * hidden, kernel_size, dilation=dilation, padding=pad))
            # the last layer only feeds the skip sum
            self.res_skip.append(nn.Conv1d(hidden, 2 * hidden if i < layers - 1 else hidden, 1))
        self.cond = nn.Conv1d(cond_channels, 2 * hidden * layers, 1) if cond_channels > 0 else None
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, H, T), (B, 1, T), (B, G, T) -> (B, H, T) skip sum, zero on padded frames."""
        h = self.hidden
        skip = torch.zeros_like(x)
        cond = self.cond(g) if (self.cond is not None and g is not None) else None
        for i, (conv, rs) in enumerate(zip(self.in_convs, self.res_skip)):
            a = causal_conv(conv, x) if self.causal else conv(x)
            if cond is not None:
                a = a + cond[:, 2 * h * i : 2 * h * (i + 1)]
            acts = self.dropout(torch.tanh(a[:, :h]) * torch.sigmoid(a[:, h:]))
            out = rs(acts)
            if i < self.layers - 1:
                x = (x + out[:, :h]) * mask
                skip = skip + out[:, h:]
            else:
                skip = skip + out
        return skip * mask

    def step(self, x: torch.Tensor, g: Optional[torch.Tensor], states: list[Optional[torch.Tensor]]) -> torch.Tensor:
        """One streamed chunk (eval, causal): (B, H, n), (B, G, n) -> (B, H, n); ``states``
        (one per layer, None at the start) is updated in place."""
        h = self.hidden
        skip = torch.zeros_like(x)
        cond = self.cond(g) if (self.cond is not None and g is not None) else None
        for i, (conv, rs) in enumerate(zip(self.in_convs, self.res_skip)):
            a, states[i] = causal_conv_step(conv, x, states[i])
            if cond is not None:
                a = a + cond[:, 2 * h * i : 2 * h * (i + 1)]
            out = rs(torch.tanh(a[:, :h]) * torch.sigmoid(a[:, h:]))
            if i < self.layers - 1:
                x = x + out[:, :h]
                skip = skip + out[:, h:]
            else:
                skip = skip + out
        return skip


class AffineCoupling(nn.Module):
    """Affine coupling: the second half of the channels is scaled and shifted by a
    WaveNet that reads the first half and ``g``.

    Args:
        channels: C (at least 2).
        hidden: WaveNet channels.
        kernel_size: WaveNet kernel.
        dilation_rate: WaveNet dilation growth.
        layers: WaveNet layers.
        cond_channels: channels of ``g``.
        dropout: WaveNet dropout.
        causal: causal WaveNet (streaming).
    """

    def __init__(
        self,
        channels: int,
        hidden: int,
        kernel_size: int,
        dilation_rate: int,
        layers: int,
        cond_channels: int,
        dropout: float = 0.0,
        causal: bool = False,
    ):
        super().__init__()
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden, 1)
        self.wn = WaveNet(hidden, kernel_size, dilation_rate, layers, cond_channels, dropout, causal)
        self.post = nn.Conv1d(hidden, 2 * (channels - self.half), 1)
        # zero init: the coupling starts as the identity, so a deep flow trains stably
        nn.init.zeros_(self.post.weight)
        nn.init.zeros_(self.post.bias)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, g: Optional[torch.Tensor] = None, reverse: bool = False
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B, C, T) -> (B, C, T), logdet (B,) forward / None reverse."""
        x0, x1 = x[:, : self.half], x[:, self.half :]
        h = self.wn(self.pre(x0) * mask, mask, g)
        shift, logs = (self.post(h) * mask).chunk(2, dim=1)
        if reverse:
            x1 = (x1 - shift) * torch.exp(-logs) * mask
            return torch.cat([x0, x1], dim=1), None
        x1 = (shift + x1 * torch.exp(logs)) * mask
        return torch.cat([x0, x1], dim=1), logs.sum(dim=(1, 2))

    def reverse_step(self, x: torch.Tensor, g: Optional[torch.Tensor], states: list[Optional[torch.Tensor]]) -> torch.Tensor:
        """The reverse pass on one streamed chunk (causal WaveNet): (B, C, n) -> (B, C, n)."""
        x0, x1 = x[:, : self.half], x[:, self.half :]
        shift, logs = self.post(self.wn.step(self.pre(x0), g, states)).chunk(2, dim=1)
        return torch.cat([x0, (x1 - shift) * torch.exp(-logs)], dim=1)


class FlowPostNet(nn.Module):
    """Glow: ``blocks`` x (ActNorm, invertible 1x1 conv, affine coupling).

    Args:
        channels: C (the mel bins).
        hidden: WaveNet channels.
        kernel_size: WaveNet kernel.
        dilation_rate: WaveNet dilation growth.
        wn_layers: WaveNet layers per coupling.
        blocks: flow steps.
        cond_channels: channels of the conditioning ``g``.
        group_size: channels mixed together by each 1x1 conv.
        dropout: WaveNet dropout.
        causal: causal WaveNets (streaming).
    """

    def __init__(
        self,
        channels: int,
        hidden: int,
        kernel_size: int,
        dilation_rate: int,
        wn_layers: int,
        blocks: int,
        cond_channels: int,
        group_size: int = 4,
        dropout: float = 0.0,
        causal: bool = False,
    ):
        super().__init__()
        self.channels = channels
        self.flows = nn.ModuleList()
        for _ in range(blocks):
            self.flows.append(ActNorm(channels))
            self.flows.append(InvConv1x1(channels, group_size))
            self.flows.append(
                AffineCoupling(channels, hidden, kernel_size, dilation_rate, wn_layers, cond_channels, dropout, causal)
            )

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, g: Optional[torch.Tensor] = None, reverse: bool = False
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Run the flow.

        Args:
            x: (B, C, T) data (forward) or latent z (reverse).
            mask: (B, 1, T) float, 1 on valid frames.
            g: (B, G, T) conditioning.
            reverse: run z -> x.

        Returns:
            (B, C, T) z (forward) or x (reverse); logdet (B,) forward, None reverse.
        """
        if reverse:
            for flow in reversed(self.flows):
                x, _ = flow(x, mask, g, reverse=True)
            return x, None
        logdet = x.new_zeros(x.shape[0])
        for flow in self.flows:
            x, ld = flow(x, mask, g)
            logdet = logdet + ld
        return x, logdet

    def step(
        self, z: torch.Tensor, g: Optional[torch.Tensor], states: dict[int, list[Optional[torch.Tensor]]]
    ) -> torch.Tensor:
        """Reverse pass (z -> x) on one streamed chunk of a causal flow: (B, C, n) -> (B, C, n).

        ``states`` maps each coupling's index to its WaveNet states (empty at the start of
        a stream); updated in place. Equal to ``forward(..., reverse=True)`` on those frames.
        """
        ones = z.new_ones(z.shape[0], 1, z.shape[2])
        for i in reversed(range(len(self.flows))):
            flow = self.flows[i]
            if isinstance(flow, AffineCoupling):
                z = flow.reverse_step(z, g, states.setdefault(i, [None] * flow.wn.layers))
            else:
                z, _ = flow(z, ones, g, reverse=True)
        return z


def gaussian_nll(z: torch.Tensor, logdet: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood per valid element (nats), standard normal prior on z.

    Args:
        z: (B, C, T) latents.
        logdet: (B,) flow log-determinants.
        mask: (B, 1, T) float.

    Returns:
        Scalar: ``(0.5 * sum z^2 + 0.5 * log(2 pi) * N - sum logdet) / N``, N = C * valid frames.
    """
    n = mask.sum() * z.shape[1]
    quad = 0.5 * torch.sum(z.float() ** 2 * mask)
    return (quad - logdet.float().sum()) / n + 0.5 * math.log(2 * math.pi)

