"""Visual front-ends: mouth-crop video (B, T, 1, H, W) -> per-frame features (B, T, D).

Both front-ends share one shape (:class:`FrameFrontEnd`): a 3D convolution over (time, height, width)
gives each frame a short temporal context, then a 2D trunk runs on each frame
independently. Both run on the *valid* frames of the batch only (packed into one
(N, C, H, W) tensor), which keeps padded frames out of the BatchNorm statistics and
saves their compute. The 3D convolution's window reaches past an utterance's ends into
padded frames, which collate leaves at exactly zero, the same value as the
convolution's own zero padding, so an utterance's features do not depend on what it
is batched with.

* :class:`PaperFrontEnd`: 3D conv (5x7x7, stride 1x2x2) + max-pool + a ResNet-18
  trunk per frame, global average pooled to 512 features (the paper's front-end,
  the usual one of lip reading).
* :class:`TinyFrontEnd`: the same pattern, shrunk to train on a laptop CPU.

In the model's streaming mode (``causal=True``) the 3D convolution's temporal window is
frame t - k + 1 .. t instead of one centred on t, so a frame's features need no later frame.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _valid_index(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) bool -> flat indices b * T + t of the valid frames, in order."""
    return mask.reshape(-1).nonzero().squeeze(1)


def _stem(conv3d: nn.Conv3d, video: torch.Tensor, index: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """The 3D stem convolution at the valid frames only, as a 2D convolution.

    A 3D convolution of one input channel with a temporal kernel of k frames is a 2D
    convolution whose k input channels are the k neighbouring frames (the conv3d weight
    (C, 1, k, kh, kw) read as (C, k, kh, kw)). Computed that way it runs on the valid frames
    alone, without the (B, C, T, H', W') output of the padded batch and the copy that packed
    its valid frames: the ``small`` preset's CPU training step took 0.8x the time. The frames
    around an utterance's ends are zero, as conv3d's own zero padding (collate pads with
    zeros), so the features are the same up to float rounding. (Channels-last memory order
    would save another 3 %, but torch's CPU batch norm is then ~100x less exact in float32:
    1e-4 against 1e-6 on activations of mean 5.)

    Args:
        conv3d: the stem (one input channel, temporal stride 1, no dilation).
        video: (B, T, 1, H, W) frames, zero on padded frames.
        index: flat indices b * T + t of the valid frames (:func:`_valid_index`).
        causal: the temporal window ends at the frame (streaming) instead of being centred on it.

    Returns:
        (N, C, H', W') features of the N valid frames.
    """
    if conv3d.in_channels != 1 or conv3d.stride[0] != 1 or conv3d.dilation != (1, 1, 1) or conv3d.groups != 1:
        raise ValueError("the stem must be a conv3d of one input channel, temporal stride 1, no dilation")
    k, pad = conv3d.kernel_size[0], conv3d.padding[0]
    if causal:
        pad = k - 1
    t = video.shape[1]
    frames = nn.functional.pad(video[:, :, 0], (0, 0, 0, 0, pad, k - 1 - pad))  # (B, T + k - 1, H, W)
    b, at = index // t, index % t
    x = torch.stack([frames[b, at + j] for j in range(k)], dim=1)  # (N, k, H, W): frame t's k neighbours
    return nn.functional.conv2d(x, conv3d.weight.flatten(1, 2), conv3d.bias, conv3d.stride[1:], conv3d.padding[1:])


def _unpack_valid(feats: torch.Tensor, mask: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, D) features of the valid frames (flat ``index``) -> (B, T, D), zeros on padded frames."""
    b, t = mask.shape
    out = feats.new_zeros((b * t,) + feats.shape[1:]).index_copy(0, index, feats)
    return out.view((b, t) + feats.shape[1:])


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


class FrameFrontEnd(nn.Module):
    """Both front-ends' pass (module docstring): the 3D stem at the valid frames only, then
    :meth:`frame_features` on each frame. A front-end sets ``conv3d`` (the stem), ``causal``,
    ``stem_frames`` (the stem's temporal window) and ``out_dim``."""

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-frame visual features.

        Args:
            video: (B, T, 1, H, W) normalised frames, zero on padded frames.
            mask: (B, T) bool, True on valid frames.

        Returns:
            (B, T, out_dim) features, zero on padded frames.
        """
        index = _valid_index(mask)
        return _unpack_valid(self.frame_features(_stem(self.conv3d, video, index, self.causal)), mask, index)

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H', W') stem output of the N valid frames -> (N, out_dim) features."""
        raise NotImplementedError


class PaperFrontEnd(FrameFrontEnd):
    """3D conv stem + ResNet-18 trunk applied per frame.

    Args:
        channels: [stem, stage1, stage2, stage3, stage4] widths; ResNet-18 is
            [64, 64, 128, 256, 512].
        blocks_per_stage: basic blocks per stage (2 for ResNet-18).
        causal: causal temporal window of the 3D stem (streaming).
    """

    def __init__(
        self, channels: Sequence[int] = (64, 64, 128, 256, 512), blocks_per_stage: int = 2, causal: bool = False
    ):
        super().__init__()
        self.causal = causal
        if len(channels) != 5:
            raise ValueError(f"PaperFrontEnd needs 5 channel widths (stem + 4 stages), got {list(channels)}")
        stem = channels[0]
        self.conv3d = nn.Conv3d(1, stem, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False)
        self.stem_frames = 5  # the temporal window
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

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H/2, W/2) stem output -> (N, out_dim): BN, ReLU, max-pool, the ResNet trunk, average pool."""
        x = self.stem_post(x)  # (N, C, H/4, W/4)
        return self.pool(self.trunk(x)).flatten(1)


class TinyFrontEnd(FrameFrontEnd):
    """A small front-end for CPU experiments and tests.

    A 3D conv (3x5x5, stride 1x2x2) stem, then one strided 3x3 conv per further
    width (BatchNorm + ReLU each), then global average pooling.

    Args:
        channels: [stem, conv1, conv2, ...] widths, e.g. [16, 32, 64, 64].
        causal: causal temporal window of the 3D stem (streaming).
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 64), causal: bool = False):
        super().__init__()
        self.causal = causal
        if len(channels) < 2:
            raise ValueError(f"TinyFrontEnd needs at least 2 channel widths, got {list(channels)}")
        self.conv3d = nn.Conv3d(1, channels[0], kernel_size=(3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False)
        self.stem_frames = 3  # the temporal window
        layers: list[nn.Module] = [nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
        self.trunk = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = channels[-1]

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H/2, W/2) stem output -> (N, out_dim): BN, ReLU, the strided convs, average pool."""
        return self.pool(self.trunk(x)).flatten(1)


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
        self.causal = frontend.causal
        self.stem_frames = frontend.stem_frames

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, 1, H, W), (B, T) -> (B, T, out_dim); H and W are pooled by ``factor`` first."""
        b, t = video.shape[:2]
        small = nn.functional.avg_pool2d(video.flatten(0, 1), self.factor, ceil_mode=True)
        return self.inner(small.unflatten(0, (b, t)), mask)


def build_frontend(kind: str, channels: Sequence[int], downsample: int = 1, causal: bool = False) -> nn.Module:
    """The front-end named ``kind`` ("paper" or "tiny") with the given widths, fed frames
    average-pooled by ``downsample`` (1: full resolution); ``causal``: streaming stem."""
    if kind == "paper":
        frontend: nn.Module = PaperFrontEnd(channels, causal=causal)
    elif kind == "tiny":
        frontend = TinyFrontEnd(channels, causal)
    else:
        raise ValueError(f"unknown front-end {kind!r} (known: paper, tiny)")
    return InputDownsample(frontend, downsample) if downsample > 1 else frontend
