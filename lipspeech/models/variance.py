"""Variance adaptor: linguistic, pitch and energy predictors on the visual encoding h_v.

One :class:`VariancePredictor` class (a conv stack + linear head whose output
width is a parameter) serves all three predictors. After each predictor, an
embedding of its target (teacher forcing, in training) or of its own prediction
(at inference) is added to the hidden sequence, so the mel decoder is
conditioned on content, pitch and energy.

Order (ours): linguistic -> pitch -> energy, each predictor reading the hidden
sequence *after* the previous embedding was added, so pitch is predicted knowing
the (teacher-forced or predicted) units, and energy knowing both.

Units run at 50 Hz, two per video frame. The linguistic predictor works at
video rate and emits ``2 * n_units`` logits per frame, read as two consecutive
unit distributions: (B, T, 2 * n_units) -> (B, 2T, n_units). The unit
embedding goes the other way: the two units of a frame are embedded, the two
embeddings concatenated (B, T, 2 * D) and projected back to D.

In the model's streaming mode (``causal=True``) every predictor convolution is causal:
frame t reads frames t - k + 1 .. t, and :meth:`VarianceAdaptor.step` runs one chunk with
the convolutions' last inputs carried over.

Pitch and energy are per-frame scalars, normalised per speaker; their
embeddings look up ``n_bins`` linear bins over ``[vmin, vmax]`` (values outside
fall into the end bins).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from lipspeech.core.timing import UNITS_PER_FRAME
from lipspeech.models.causal import causal_conv, causal_conv_step
from lipspeech.models.dropout import Dropout


class VariancePredictor(nn.Module):
    """Conv1d stack (ReLU, LayerNorm, dropout after each conv) + linear head.

    Args:
        in_dim: input width D.
        hidden: conv channels.
        out_dim: output width (e.g. 1 for a scalar, 2 * n_units for unit logits).
        kernel_size: conv kernel (odd, so outputs stay aligned with inputs).
        layers: number of conv layers.
        dropout: dropout rate.
        causal: causal convolutions (streaming).
    """

    def __init__(
        self, in_dim: int, hidden: int, out_dim: int, kernel_size: int = 3, layers: int = 2, dropout: float = 0.5,
        causal: bool = False,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"variance predictor kernel must be odd, got {kernel_size}")
        self.causal = causal
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(layers):
            pad = 0 if causal else kernel_size // 2
            self.convs.append(nn.Conv1d(in_dim if i == 0 else hidden, hidden, kernel_size, padding=pad))
            self.norms.append(nn.LayerNorm(hidden))
        self.act = nn.ReLU()
        self.dropout = Dropout(dropout)
        self.head = nn.Linear(hidden if layers else in_dim, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predict per-frame outputs.

        Args:
            x: (B, T, D) hidden sequence.
            mask: (B, T) bool, True on valid frames.

        Returns:
            (B, T, out_dim), zero on padded frames.
        """
        m = mask[..., None].to(x.dtype)
        for conv, norm in zip(self.convs, self.norms):
            y = (x * m).transpose(1, 2)
            x = (causal_conv(conv, y) if self.causal else conv(y)).transpose(1, 2)
            x = self.dropout(norm(self.act(x)))
        return self.head(x) * m

    def step(self, x: torch.Tensor, states: list[Optional[torch.Tensor]]) -> torch.Tensor:
        """One streamed chunk (eval, causal): (B, n, D) -> (B, n, out_dim); ``states`` (one per
        conv, None at the start) is updated in place."""
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            y, states[i] = causal_conv_step(conv, x.transpose(1, 2), states[i])
            x = norm(self.act(y.transpose(1, 2)))
        return self.head(x)


class BinnedEmbedding(nn.Module):
    """Embedding of a scalar per frame through ``n_bins`` linear bins over ``[vmin, vmax]``.

    Args:
        n_bins: number of bins.
        vmin, vmax: range covered by the inner bin edges.
        dim: embedding width D.
    """

    def __init__(self, n_bins: int, vmin: float, vmax: float, dim: int):
        super().__init__()
        if n_bins < 2 or vmax <= vmin:
            raise ValueError(f"binned embedding needs n_bins >= 2 and vmin < vmax, got {n_bins}, [{vmin}, {vmax}]")
        self.register_buffer("edges", torch.linspace(vmin, vmax, n_bins - 1), persistent=False)
        self.embed = nn.Embedding(n_bins, dim)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """(B, T) values -> (B, T, D) embeddings."""
        return self.embed(torch.bucketize(values.detach().float().contiguous(), self.edges))


class VarianceAdaptor(nn.Module):
    """Linguistic, pitch and energy predictors with their embeddings; any can be switched off.

    Args:
        dim: hidden width D.
        n_units: unit vocabulary (200 HuBERT k-means clusters in the paper).
        hidden: predictor conv channels.
        kernel_size: predictor conv kernel.
        layers: predictor conv layers.
        dropout: predictor dropout.
        pitch_bins, pitch_min, pitch_max: pitch embedding bins over normalised log-F0.
        energy_bins, energy_min, energy_max: energy embedding bins over normalised energy.
        use_linguistic, use_pitch, use_energy: ablation switches; a disabled part is
            neither built, computed nor added.
        causal: causal predictor convolutions (streaming).
    """

    def __init__(
        self,
        dim: int,
        n_units: int,
        hidden: int,
        kernel_size: int,
        layers: int,
        dropout: float,
        pitch_bins: int,
        pitch_min: float,
        pitch_max: float,
        energy_bins: int,
        energy_min: float,
        energy_max: float,
        use_linguistic: bool,
        use_pitch: bool,
        use_energy: bool,
        causal: bool,
    ):
        super().__init__()
        self.n_units = n_units
        self.linguistic: Optional[VariancePredictor] = None
        self.pitch: Optional[VariancePredictor] = None
        self.energy: Optional[VariancePredictor] = None
        if use_linguistic:
            self.linguistic = VariancePredictor(dim, hidden, UNITS_PER_FRAME * n_units, kernel_size, layers, dropout, causal)
            self.unit_embed = nn.Embedding(n_units, dim)
            self.unit_proj = nn.Linear(UNITS_PER_FRAME * dim, dim)
        if use_pitch:
            self.pitch = VariancePredictor(dim, hidden, 1, kernel_size, layers, dropout, causal)
            self.pitch_embed = BinnedEmbedding(pitch_bins, pitch_min, pitch_max, dim)
        if use_energy:
            self.energy = VariancePredictor(dim, hidden, 1, kernel_size, layers, dropout, causal)
            self.energy_embed = BinnedEmbedding(energy_bins, energy_min, energy_max, dim)

    def embed_units(self, units: torch.Tensor) -> torch.Tensor:
        """(B, 2T) unit ids -> (B, T, D) video-rate embedding."""
        b, t2 = units.shape
        e = self.unit_embed(units).view(b, t2 // UNITS_PER_FRAME, -1)
        return self.unit_proj(e)

    def forward(
        self,
        h: torch.Tensor,
        mask: torch.Tensor,
        units: Optional[torch.Tensor] = None,
        pitch: Optional[torch.Tensor] = None,
        energy: Optional[torch.Tensor] = None,
        embed_logits: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Predict and add variance information.

        Each target given is embedded instead of the prediction (teacher
        forcing); a target left None uses the prediction (unit argmax, pitch and
        energy values).

        Args:
            h: (B, T, D) visual encoding h_v.
            mask: (B, T) bool, True on valid frames.
            units: (B, 2T) long target units, or None.
            pitch: (B, T) target normalised log-F0, or None.
            energy: (B, T) target normalised energy, or None.
            embed_logits: without target units, maps the (B, 2T, n_units) unit logits to the (B, T, D)
                embedding added instead of the argmax's (benchmarks/soft_units.py).

        Returns:
            h: (B, T, D) with the embeddings added, zero on padded frames.
            preds: "unit_logits" (B, 2T, n_units), "pitch" (B, T), "energy" (B, T),
                for the enabled predictors.
        """
        m = mask[..., None].to(h.dtype)
        preds: dict[str, torch.Tensor] = {}
        if self.linguistic is not None:
            b, t, _ = h.shape
            logits = self.linguistic(h, mask).view(b, t * UNITS_PER_FRAME, self.n_units)
            preds["unit_logits"] = logits
            if units is None and embed_logits is not None:
                h = h + embed_logits(logits) * m
            else:
                h = h + self.embed_units(units if units is not None else logits.argmax(-1)) * m
        if self.pitch is not None:
            p = self.pitch(h, mask).squeeze(-1)
            preds["pitch"] = p
            h = h + self.pitch_embed(pitch if pitch is not None else p) * m
        if self.energy is not None:
            e = self.energy(h, mask).squeeze(-1)
            preds["energy"] = e
            h = h + self.energy_embed(energy if energy is not None else e) * m
        return h, preds

    def step(self, h: torch.Tensor, states: dict[str, list[Optional[torch.Tensor]]]) -> torch.Tensor:
        """One streamed chunk at inference (predictions embedded): (B, n, D) -> (B, n, D).

        ``states`` maps each predictor to its convolutions' states (empty at the start of a
        stream); updated in place. Equal to :meth:`forward` without targets on those frames.
        """
        for name in ("linguistic", "pitch", "energy"):
            predictor = getattr(self, name)
            if predictor is None:
                continue
            out = predictor.step(h, states.setdefault(name, [None] * len(predictor.convs)))
            if name == "linguistic":
                b, n, _ = h.shape
                h = h + self.embed_units(out.view(b, n * UNITS_PER_FRAME, self.n_units).argmax(-1))
            elif name == "pitch":
                h = h + self.pitch_embed(out.squeeze(-1))
            else:
                h = h + self.energy_embed(out.squeeze(-1))
        return h
