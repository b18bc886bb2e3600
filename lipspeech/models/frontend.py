"""Visual front-ends: mouth-crop video (B, T, 1, H, W) -> per-frame features (B, T, D).

Both front-ends share one shape: a 3D convolution over (time, height, width)
gives each frame a short temporal context, then a 2D trunk runs on each frame
independently. The 2D trunk sees only the *valid* frames of the batch (they are
packed into one (N, C, H, W) tensor), which keeps padded frames out of the
BatchNorm statistics and saves their compute. The 3D convolution does see the
padded frames, which collate leaves at exactly zero, the same value as the
convolution's own zero padding, so an utterance's features do not depend on what
it is batched with.

* :class:`PaperFrontEnd`: 3D conv (5x7x7, stride 1x2x2) + max-pool + a ResNet-18
  trunk per frame, global average pooled to 512 features (the paper's front-end,
  the usual one of lip reading).
* :class:`TinyFrontEnd`: the same pattern, shrunk to train on a laptop CPU.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _pack_valid(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) and (B, T) mask -> (N, C, H, W) valid frames, N = mask.sum()."""
    return x.transpose(1, 2)[mask]


def _unpack_valid(feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, D) valid-frame features -> (B, T, D), zeros on padded frames."""
    out = feats.new_zeros(mask.shape + feats.shape[1:])
    out[mask] = feats
    return out


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with a residual connection.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the first convolution (and of the shortcut).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.shortcut(x))


class PaperFrontEnd(nn.Module):
    """3D conv stem + ResNet-18 trunk applied per frame.

    Args:
        channels: [stem, stage1, stage2, stage3, stage4] widths; ResNet-18 is
            [64, 64, 128, 256, 512].
        blocks_per_stage: basic blocks per stage (2 for ResNet-18).
    """

    def __init__(self, channels: Sequence[int] = (64, 64, 128, 256, 512), blocks_per_stage: int = 2):
        super().__init__()
        if len(channels) != 5:
            raise ValueError(f"PaperFrontEnd needs 5 channel widths (stem + 4 stages), got {list(channels)}")
        stem = channels[0]
        self.conv3d = nn.Conv3d(1, stem, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False)
        self.stem_post = nn.Sequential(
            nn.BatchNorm2d(stem), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        )
        layers: list[nn.Module] = []
        in_ch = stem
        for i, out_ch in enumerate(channels[1:]):
            for j in range(blocks_per_stage):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(in_ch, out_ch, stride))
                in_ch = out_ch
        self.trunk = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = in_ch

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-frame visual features.

        Args:
            video: (B, T, 1, H, W) normalised frames, zero on padded frames.
            mask: (B, T) bool, True on valid frames.

        Returns:
            (B, T, out_dim) features, zero on padded frames.
        """
        x = self.conv3d(video.transpose(1, 2))  # (B, C, T, H/2, W/2)
        x = self.stem_post(_pack_valid(x, mask))
        x = self.pool(self.trunk(x)).flatten(1)
        return _unpack_valid(x, mask)


class TinyFrontEnd(nn.Module):
    """A small front-end for CPU experiments and tests.

    A 3D conv (3x5x5, stride 1x2x2) stem, then one strided 3x3 conv per further
    width (BatchNorm + ReLU each), then global average pooling.

    Args:
        channels: [stem, conv1, conv2, ...] widths, e.g. [16, 32, 64, 64].
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 64)):
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"TinyFrontEnd needs at least 2 channel widths, got {list(channels)}")
        self.conv3d = nn.Conv3d(1, channels[0], kernel_size=(3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False)
        layers: list[nn.Module] = [nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
        self.trunk = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = channels[-1]

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-frame visual features.

        Args:
            video: (B, T, 1, H, W) normalised frames, zero on padded frames.
            mask: (B, T) bool, True on valid frames.

        Returns:
            (B, T, out_dim) features, zero on padded frames.
        """
        x = self.conv3d(video.transpose(1, 2))
        x = self.pool(self.trunk(_pack_valid(x, mask))).flatten(1)
        return _unpack_valid(x, mask)


class InputDownsample(nn.Module):
    """Average-pool each frame by ``factor`` before a front-end (cheaper CPU training).

    Pooling is per frame, so zero (padded) frames stay exactly zero and the
    front-end's padding invariance is kept.

    Args:
        frontend: the front-end that receives the smaller frames.
        factor: spatial pooling factor (>= 2).
    """

    def __init__(self, frontend: nn.Module, factor: int):
        super().__init__()
        self.factor = int(factor)
        self.inner = frontend
        self.out_dim = frontend.out_dim

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, 1, H, W), (B, T) -> (B, T, out_dim); H and W are pooled by ``factor`` first."""
        b, t = video.shape[:2]
        small = nn.functional.avg_pool2d(video.flatten(0, 1), self.factor, ceil_mode=True)
        return self.inner(small.unflatten(0, (b, t)), mask)


def build_frontend(kind: str, channels: Sequence[int], downsample: int = 1) -> nn.Module:
    """The front-end named ``kind`` ("paper" or "tiny") with the given widths, fed frames
    average-pooled by ``downsample`` (1: full resolution)."""
    if kind == "paper":
        frontend: nn.Module = PaperFrontEnd(channels)
    elif kind == "tiny":
        frontend = TinyFrontEnd(channels)
    else:
        raise ValueError(f"unknown front-end {kind!r} (known: paper, tiny)")
    return InputDownsample(frontend, downsample) if downsample > 1 else frontend
