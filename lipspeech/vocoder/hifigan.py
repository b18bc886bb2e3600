"""HiFi-GAN (Kong, Kim & Bae, NeurIPS 2020) for the pipeline's 16 kHz, hop-160 log-mel.

Generator
    ``conv_pre`` (kernel 7) on the (B, n_mels, T) log-mel, then one stage per
    upsampling factor: leaky ReLU, a transposed conv (stride ``u``), and the sum
    of multi-receptive-field residual blocks (one per kernel size, averaged);
    finally leaky ReLU, ``conv_post`` (kernel 7) and tanh. The factors multiply
    to the hop (160), so ``T`` mel frames give exactly ``160 T`` samples, and the
    samples of mel frame ``k`` are ``[160 k, 160 (k + 1))``, the hop that frame is
    centred on (see :mod:`lipspeech.features.audio`).

    Upsampling (ours; the paper's 8x8x2x2 is for hop 256): 5x4x4x2 with kernels
    11, 8, 8, 4. Four stages as in the paper, so the channel halving
    (e.g. 512 -> 32 for V1) is the paper's; the first, odd factor needs an odd
    kernel (11 = 2 u + 1) for ``(k - u) / 2`` to be a whole padding.

Presets
    ``v1`` and ``v2``: the paper's V1 (512 initial channels, ResBlock1 with
    kernels 3, 7, 11 and dilations 1, 3, 5) and V2 (128 channels, same blocks)
    with our upsampling; ``tiny``: 32 channels, two ResBlock2 kernels, for CPU
    tests and the demo (ours). Each preset also sizes its discriminators:
    ``v1``/``v2`` use the paper's widths, ``tiny`` divides them by 16.

Discriminators and losses
    Multi-period (periods 2, 3, 5, 7, 11; weight norm) and multi-scale (raw,
    x2 and x4 average-pooled audio; spectral norm on the first scale, weight norm
    on the others) discriminators, each returning its score and its feature maps;
    LSGAN losses, feature matching (L1 over all feature maps), and mel L1 on the
    shared :class:`~lipspeech.features.audio.MelSpectrogram`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from lipspeech.core.config import ConfigError, check_flat, preset_config, preset_names
from lipspeech.core.settings import HifiganConfig
from lipspeech.core.timing import HOP_LENGTH

LRELU_SLOPE = 0.1

#: the HiFi-GAN presets (lipspeech/resources/vocoder_presets.yaml: v1, v2, tiny; the schema's
#: definitions.hifigan_keys describes and checks each key)
PRESETS: dict[str, dict[str, Any]] = {name: preset_config("vocoder", name) for name in preset_names("vocoder")}


def hifigan_config(preset: str, overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The checked generator + discriminator sizes of ``preset`` with ``overrides``.

    Raises:
        ConfigError: unknown preset or key, or upsampling that does not give the hop.
    """
    return _check_relations(preset_config("vocoder", preset, overrides))  # preset_config checked each key


def check_hifigan_config(cfg: Mapping[str, Any], hop: int = HOP_LENGTH) -> dict[str, Any]:
    """Check a complete generator config (see :data:`PRESETS`); returns a copy."""
    return _check_relations(check_flat("definitions/hifigan_keys", cfg, "vocoder"), hop)  # each key: the schema's


def _check_relations(cfg: dict[str, Any], hop: int = HOP_LENGTH) -> dict[str, Any]:
    """What the schema cannot say: the upsampling must give the hop, and the sizes must fit each other.
    Returns ``cfg`` itself: the checkpoints store this mapping."""
    sizes = HifiganConfig.from_section(cfg)
    rates, kernels = sizes.upsample_rates, sizes.upsample_kernels
    product = 1
    for r in rates:
        product *= r
    if product != hop:
        raise ConfigError(f"vocoder config key upsample_rates: {rates} multiply to {product}, not the hop {hop}")
    if len(kernels) != len(rates) or any((k - u) % 2 or k < u for k, u in zip(kernels, rates)):
        raise ConfigError(f"vocoder config key upsample_kernels: {kernels} must match {rates} with k >= u and k - u even")
    if sizes.upsample_initial_channel % (2 ** len(rates)):
        raise ConfigError("vocoder config key upsample_initial_channel: must be divisible by 2 ** len(upsample_rates)")
    if len(sizes.resblock_dilations) != len(sizes.resblock_kernels):
        raise ConfigError("vocoder config key resblock_dilations: one list per resblock kernel")
    return cfg


def _padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


def _init_weights(module: nn.Module, std: float = 0.01) -> None:
    # the paper's N(0, 0.01) initialisation of the generator's convolutions
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        module.weight.data.normal_(0.0, std)


class ResBlock1(nn.Module):
    """Per dilation: lrelu -> dilated conv -> lrelu -> conv, added back (V1/V2).

    Args:
        channels: width.
        kernel: conv kernel.
        dilations: one dilation per pair of convs.
    """

    def __init__(self, channels: int, kernel: int, dilations: Sequence[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, dilation=d, padding=_padding(kernel, d))) for d in dilations
        )
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, padding=_padding(kernel))) for _ in dilations
        )
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, N) -> (B, C, N)."""
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    """Per dilation: lrelu -> dilated conv, added back (the paper's V3 block; our tiny preset)."""

    def __init__(self, channels: int, kernel: int, dilations: Sequence[int]):
        super().__init__()
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, dilation=d, padding=_padding(kernel, d))) for d in dilations
        )
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, N) -> (B, C, N)."""
        for c in self.convs:
            x = x + c(F.leaky_relu(x, LRELU_SLOPE))
        return x


class Generator(nn.Module):
    """Log-mel (B, n_mels, T) -> waveform (B, 1, hop * T) in [-1, 1].

    Args:
        cfg: the sizes (:func:`hifigan_config`; checked again here).
        n_mels: mel bins of the input.
    """

    def __init__(self, cfg: Mapping[str, Any], n_mels: int):
        super().__init__()
        sizes = HifiganConfig.from_section(check_hifigan_config(cfg))
        self.hop = 1
        for r in sizes.upsample_rates:
            self.hop *= r
        ch = sizes.upsample_initial_channel
        self.conv_pre = weight_norm(nn.Conv1d(n_mels, ch, 7, padding=3))
        block = ResBlock1 if sizes.resblock == 1 else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(sizes.upsample_rates, sizes.upsample_kernels)):
            c_in, c_out = ch // 2**i, ch // 2 ** (i + 1)
            self.ups.append(weight_norm(nn.ConvTranspose1d(c_in, c_out, k, stride=u, padding=(k - u) // 2)))
            for kernel, dil in zip(sizes.resblock_kernels, sizes.resblock_dilations):
                self.resblocks.append(block(c_out, kernel, dil))
        self.n_kernels = len(sizes.resblock_kernels)
        self.conv_post = weight_norm(nn.Conv1d(c_out, 1, 7, padding=3))
        self.ups.apply(_init_weights)
        self.conv_post.apply(_init_weights)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) log-mel -> (B, 1, hop * T) audio."""
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.n_kernels : (i + 1) * self.n_kernels]
            x = sum(b(x) for b in blocks) / self.n_kernels
        # the paper's generator ends in a plain leaky ReLU (slope 0.01) before conv_post
        return torch.tanh(self.conv_post(F.leaky_relu(x)))

    def remove_weight_norm(self) -> "Generator":
        """Fold the weight-norm parametrisations into plain weights (faster inference); returns self."""
        for module in self.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        return self


def _score_and_features(x: torch.Tensor, convs: nn.ModuleList, conv_post: nn.Module
                        ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A sub-discriminator's stack (the period and the scale ones alike): each conv then a leaky ReLU, then
    ``conv_post``; the flattened last output is the score (B, M), every output a feature map."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        features.append(x)
    x = conv_post(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    """Audio folded to (B, 1, N / p, p): 2-D convs with (k, 1) kernels along the time axis.

    Args:
        period: fold period p.
        channels: widths of the five (5, 1) convs (strides 3, 3, 3, 3, 1).
    """

    def __init__(self, period: int, channels: Sequence[int]):
        super().__init__()
        self.period = period
        widths = [1, *channels]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(widths[i], widths[i + 1], (5, 1), (3 if i < 4 else 1, 1), padding=(2, 0)))
            for i in range(5)
        )
        self.conv_post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 1, N) -> score (B, M) and the feature maps."""
        b, c, n = x.shape
        if n % self.period:
            x = F.pad(x, (0, self.period - n % self.period), "reflect")
        x = x.view(b, c, -1, self.period)
        return _score_and_features(x, self.convs, self.conv_post)


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period."""

    def __init__(self, periods: Sequence[int], channels: Sequence[int]):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """(B, 1, N) -> per discriminator: scores and feature maps."""
        scores, features = zip(*(d(x) for d in self.discriminators))
        return list(scores), list(features)


class ScaleDiscriminator(nn.Module):
    """Strided, grouped 1-D convs over the waveform (MelGAN's discriminator).

    Args:
        channels: the seven conv widths (paper: 128, 128, 256, 512, 1024, 1024, 1024).
        spectral: spectral norm (the first, raw-audio scale) instead of weight norm.
    """

    #: (kernel, stride, groups, padding) of the seven convs (paper)
    LAYOUT = ((15, 1, 1, 7), (41, 2, 4, 20), (41, 2, 16, 20), (41, 4, 16, 20), (41, 4, 16, 20), (41, 1, 16, 20),
              (5, 1, 1, 2))

    def __init__(self, channels: Sequence[int], spectral: bool = False):
        super().__init__()
        norm = spectral_norm if spectral else weight_norm
        widths = [1, *channels]
        convs = []
        for i, (k, s, g, p) in enumerate(self.LAYOUT):
            groups = g
            while widths[i] % groups or widths[i + 1] % groups:  # narrow (tiny) widths: fewer groups
                groups //= 2
            convs.append(norm(nn.Conv1d(widths[i], widths[i + 1], k, s, groups=groups, padding=p)))
        self.convs = nn.ModuleList(convs)
        self.conv_post = norm(nn.Conv1d(widths[-1], 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 1, N) -> score (B, M) and the feature maps."""
        return _score_and_features(x, self.convs, self.conv_post)


class MultiScaleDiscriminator(nn.Module):
    """Three :class:`ScaleDiscriminator` on the raw, x2- and x4-average-pooled audio."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.discriminators = nn.ModuleList(
            [ScaleDiscriminator(channels, spectral=True), ScaleDiscriminator(channels), ScaleDiscriminator(channels)]
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """(B, 1, N) -> per scale: scores and feature maps."""
        scores, features = [], []
        for i, d in enumerate(self.discriminators):
            if i > 0:
                x = self.pool(x)
            s, f = d(x)
            scores.append(s)
            features.append(f)
        return scores, features


class Discriminators(nn.Module):
    """The multi-period and multi-scale discriminators together (one optimiser), sized by the
    HiFi-GAN config ``cfg`` (checked here)."""

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__()
        sizes = HifiganConfig.from_section(check_hifigan_config(cfg))
        self.mpd = MultiPeriodDiscriminator(sizes.mpd_periods, sizes.mpd_channels)
        self.msd = MultiScaleDiscriminator(sizes.msd_channels)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """(B, 1, N) -> scores and feature maps of every sub-discriminator (MPD first)."""
        s1, f1 = self.mpd(x)
        s2, f2 = self.msd(x)
        return s1 + s2, f1 + f2


# --------------------------------------------------------------------------- losses
def discriminator_loss(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """LSGAN: sum over sub-discriminators of mean((1 - D(x))^2) + mean(D(G(s))^2)."""
    return sum(torch.mean((1 - r) ** 2) + torch.mean(f**2) for r, f in zip(real, fake))  # type: ignore[return-value]


def generator_adv_loss(fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """LSGAN: sum over sub-discriminators of mean((1 - D(G(s)))^2)."""
    return sum(torch.mean((1 - f) ** 2) for f in fake)  # type: ignore[return-value]


def feature_matching_loss(real: Sequence[Sequence[torch.Tensor]], fake: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """Sum over every feature map of every sub-discriminator of the mean L1 distance (real maps detached)."""
    return sum(  # type: ignore[return-value]
        torch.mean(torch.abs(r.detach() - f)) for rs, fs in zip(real, fake) for r, f in zip(rs, fs)
    )
