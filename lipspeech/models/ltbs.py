"""The LTBS model: video -> h_v -> variance adaptor -> x4 -> mel decoder -> coarse mel -> flow post-net.

Shapes below use T video frames; mel runs at 4T (100 Hz), units at 2T (50 Hz).

Training (:meth:`LTBSModel.forward`): the variance adaptor is teacher-forced
with the target units, pitch and energy; losses are

* ``mel_l1``: L1 between coarse and target mel over valid frames,
* ``ling_ce``: cross-entropy of the unit logits,
* ``pitch`` / ``energy``: MSE or L1 on normalised values,
* ``flow_nll``: negative log-likelihood (nats per mel bin and frame) of the
  target under the post-net, with a standard normal prior on z. With
  ``flow_residual`` (default) the flow models ``target - coarse``, i.e. z lives
  in the decoder's frame of reference and the post-net only adds what the coarse
  mel misses,
* ``total`` = mel_l1 + lambda_ling ling_ce + lambda_pitch pitch
  + lambda_energy energy + lambda_flow flow_nll (disabled parts left out).

Inference (:meth:`LTBSModel.infer`): predicted units (argmax), pitch and energy
are embedded instead; z ~ N(0, t^2) is run through the post-net in reverse,
conditioned on the decoder states and the coarse mel.

Streaming mode (``streaming``, off by default; docs/live.md): causal convolutions, no absolute positions,
chunked attention (C frames, L before, the first encoder block A after; the decoder 4C, 4L; its states read
out over 4D mel frames after each), so chunk c's mel depends on video frames up to (c + 1 + ceil(D / C)) C
+ A - 1 only. Training draws the chunk size per batch from ``train_chunks``; ``infer(chunk_frames=C)`` equals
:class:`lipspeech.models.streaming.StreamDecoder`; z is drawn frame-major, as offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
from torch import nn
from torch.nn import functional as F

from lipspeech.core.settings import ModelConfig
from lipspeech.core.timing import MEL_PER_FRAME
from lipspeech.models.batch import Batch, lengths_to_mask
from lipspeech.models.causal import Lookahead
from lipspeech.models.conformer import Conformer
from lipspeech.models.flow import FlowPostNet, gaussian_nll
from lipspeech.models.frontend import build_frontend
from lipspeech.models.presets import StreamingConfig, check_model_config, streaming_config
from lipspeech.models.variance import VarianceAdaptor


@dataclass
class ModelOutput:
    """What :meth:`LTBSModel.forward` returns.

    Attributes:
        coarse_mel: (B, 4T, n_mels), zero on padded frames.
        mel_mask: (B, 4T) bool.
        post_mel: (B, 4T, n_mels) refined mel, when sampled (``sample_post=True``).
        unit_logits: (B, 2T, n_units), when the linguistic predictor is on.
        pitch: (B, T) predicted normalised log-F0, when the pitch predictor is on.
        energy: (B, T) predicted normalised energy, when the energy predictor is on.
        losses: scalar tensors "mel_l1", "ling_ce", "pitch", "energy", "flow_nll"
            (enabled parts only) and "total"; empty when the batch has no targets.
    """

    coarse_mel: torch.Tensor
    mel_mask: torch.Tensor
    post_mel: Optional[torch.Tensor] = None
    unit_logits: Optional[torch.Tensor] = None
    pitch: Optional[torch.Tensor] = None
    energy: Optional[torch.Tensor] = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, T, ...) over the True entries of ``mask`` (B, T)."""
    m = mask.to(values.dtype)
    while m.dim() < values.dim():
        m = m.unsqueeze(-1)
    per_frame = values[0, 0].numel() if values.dim() > 2 else 1
    return (values * m).sum() / (m.sum() * per_frame).clamp_min(1.0)


@dataclass(frozen=True)
class LTBSOptions:
    """The model's settings beside its parts; no defaults here: the model presets hold them
    (:mod:`lipspeech.models.presets`), and :meth:`from_config` reads them from a checked config.

    Attributes:
        d_model: D.
        n_mels: mel bins.
        upsample: "repeat" (each frame's state copied 4 times) or "transposed"
            (stride-4, kernel-4 transposed conv: no overlap, so padding cannot leak).
        n_speakers: speaker embedding table size; 0 for none.
        lambda_ling, lambda_pitch, lambda_energy, lambda_flow: loss weights.
        variance_loss: "mse" or "l1" for pitch and energy.
        pitch_voiced_only: pitch loss on voiced frames only.
        flow_residual: the flow models target - coarse (else the target).
        flow_detach: stop flow gradients into the decoder.
        temperature: default std of z at inference.
        streaming: the streaming mode's sizes (the modules must then be causal); None: offline model.
    """

    d_model: int
    n_mels: int
    upsample: str
    n_speakers: int
    lambda_ling: float
    lambda_pitch: float
    lambda_energy: float
    lambda_flow: float
    variance_loss: str
    pitch_voiced_only: bool
    flow_residual: bool
    flow_detach: bool
    temperature: float
    streaming: Optional[StreamingConfig]

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> LTBSOptions:
        """The options of a checked flat model config (:func:`lipspeech.models.presets.check_model_config`):
        each field is the config key of its name, ``streaming`` its ``stream_*`` keys."""
        return cls(
            d_model=cfg.d_model, n_mels=cfg.n_mels, upsample=cfg.upsample, n_speakers=cfg.n_speakers,
            lambda_ling=cfg.lambda_ling, lambda_pitch=cfg.lambda_pitch, lambda_energy=cfg.lambda_energy,
            lambda_flow=cfg.lambda_flow, variance_loss=cfg.variance_loss, pitch_voiced_only=cfg.pitch_voiced_only,
            flow_residual=cfg.flow_residual, flow_detach=cfg.flow_detach, temperature=cfg.temperature,
            streaming=streaming_config(cfg),
        )


class LTBSModel(nn.Module):
    """Video-to-mel model of "Let There Be Sound" (AAAI 2024).

    Args:
        frontend: visual front-end, (B, T, 1, H, W), (B, T) mask -> (B, T, F); has ``out_dim``.
        encoder: conformer over (B, T, D).
        adaptor: variance adaptor over (B, T, D).
        decoder: conformer over (B, 4T, D).
        postnet: flow post-net over (B, n_mels, 4T) conditioned on D + n_mels channels, or None.
        options: :class:`LTBSOptions` (kept as ``options``; its settings are also the attributes of their
            names that the training and streaming code read: ``temperature``, ``streaming``, ...).
    """

    def __init__(
        self,
        frontend: nn.Module,
        encoder: Conformer,
        adaptor: VarianceAdaptor,
        decoder: Conformer,
        postnet: Optional[FlowPostNet],
        options: LTBSOptions,
    ):
        super().__init__()
        o = self.options = options
        d_model = o.d_model
        self.streaming = o.streaming
        self.frontend = frontend
        self.visual_proj = nn.Linear(frontend.out_dim, d_model)
        self.speaker_embed = nn.Embedding(o.n_speakers, d_model) if o.n_speakers > 0 else None
        self.encoder = encoder
        self.adaptor = adaptor
        if o.upsample not in ("repeat", "transposed"):
            raise ValueError(f"unknown upsample {o.upsample!r} (known: repeat, transposed)")
        self.upsampler: Optional[nn.ConvTranspose1d] = nn.ConvTranspose1d(
            d_model, d_model, MEL_PER_FRAME, stride=MEL_PER_FRAME) if o.upsample == "transposed" else None
        self.decoder = decoder
        self.mel_proj = nn.Linear(d_model, o.n_mels)
        ahead = o.streaming.decoder_lookahead_frames * MEL_PER_FRAME if o.streaming else 0
        self.lookahead = Lookahead(d_model, ahead) if ahead else None  # over the decoder's states
        self.postnet = postnet
        self.n_mels = o.n_mels
        self.weights = {"ling_ce": o.lambda_ling, "pitch": o.lambda_pitch, "energy": o.lambda_energy,
                        "flow_nll": o.lambda_flow}
        self.variance_loss = o.variance_loss
        self.pitch_voiced_only = o.pitch_voiced_only
        self.flow_residual = o.flow_residual
        self.flow_detach = o.flow_detach
        self.temperature = o.temperature

    # ----------------------------------------------------------------- pieces
    def _chunk(self, chunk_frames: Optional[int] = None) -> Optional[int]:
        """The chunk size of this pass: None (whole clip) for the offline model; in streaming
        mode a size drawn from ``train_chunks`` in training, ``chunk_frames`` otherwise
        (default: the configured one in eval passes of :meth:`forward`)."""
        if self.streaming is None or not self.streaming.chunked:
            if chunk_frames is not None:
                raise ValueError("decoding in chunks needs a model trained in streaming mode (model.streaming)"
                                 " with chunked attention")
            return None
        if self.training and chunk_frames is None:
            choices = self.streaming.train_chunks
            drawn = choices[int(torch.randint(len(choices), (1,)))]
            return drawn or None
        return chunk_frames

    def video_features(
        self, video: torch.Tensor, mask: torch.Tensor, speakers: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """(B, T, 1, H, W) video (context frames outside ``mask`` are read by the stem), (B, T)
        mask -> encoder inputs (B, T, D): front-end, projection, speaker embedding."""
        h = self.visual_proj(self.frontend(video, mask))
        if self.speaker_embed is not None:
            if speakers is None:
                raise ValueError("this model has a speaker embedding (n_speakers > 0) but the batch has no speaker ids")
            h = h + self.speaker_embed(speakers)[:, None, :]
        return h

    def encode(
        self,
        video: torch.Tensor,
        mask: torch.Tensor,
        speakers: Optional[torch.Tensor] = None,
        chunk: Optional[int] = None,
    ) -> torch.Tensor:
        """(B, T, 1, H, W) video, (B, T) mask -> h_v (B, T, D), zero on padded frames.

        ``chunk``: chunked attention with this many frames per chunk (streaming mode; None: whole clip).
        """
        m = mask[..., None].to(video.dtype)
        video = video * m[..., None, None]  # padded frames must be exactly zero for the 3D conv
        h = self.video_features(video, mask, speakers)
        if chunk is None:
            return self.encoder(h * m.to(h.dtype), mask)
        s = self.streaming
        assert s is not None
        return self.encoder(h * m.to(h.dtype), mask, chunk, s.left_context_frames, s.lookahead_frames)

    def upsample(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, 4T, D) (each frame on its own: no overlap between frames)."""
        if self.upsampler is None:
            return h.repeat_interleave(MEL_PER_FRAME, dim=1)
        return self.upsampler(h.transpose(1, 2)).transpose(1, 2)

    def decode(
        self, h: torch.Tensor, mask: torch.Tensor, chunk: Optional[int] = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Upsample x4 and decode.

        Args:
            h: (B, T, D) adapted hidden sequence.
            mask: (B, T) bool.
            chunk: video frames per attention chunk (streaming mode; None: whole clip).

        Returns:
            coarse mel (B, 4T, n_mels), decoder states (B, 4T, D), mel mask (B, 4T) bool.
        """
        mel_mask = mask.repeat_interleave(MEL_PER_FRAME, dim=1)
        up = self.upsample(h)
        if chunk is None:
            states = self.decoder(up * mel_mask[..., None].to(up.dtype), mel_mask)
        else:
            assert self.streaming is not None
            left = self.streaming.left_context_frames * MEL_PER_FRAME
            states = self.decoder(up * mel_mask[..., None].to(up.dtype), mel_mask, chunk * MEL_PER_FRAME, left)
        if self.lookahead is not None:
            states = self.lookahead(states, mel_mask)
        coarse = self.mel_proj(states).float() * mel_mask[..., None]
        return coarse, states, mel_mask

    def _flow_inputs(
        self, coarse: torch.Tensor, states: torch.Tensor, mel_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Channel-first float32 (coarse (B, n_mels, 4T), g (B, D + n_mels, 4T), mask (B, 1, 4T))."""
        coarse = coarse.float().transpose(1, 2)
        g = torch.cat([states.float().transpose(1, 2), coarse], dim=1)
        if self.flow_detach:
            coarse, g = coarse.detach(), g.detach()
        return coarse, g, mel_mask[:, None, :].float()

    def sample_post(
        self,
        coarse: torch.Tensor,
        states: torch.Tensor,
        mel_mask: torch.Tensor,
        temperature: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Refined mel: z ~ N(0, t^2) through the post-net in reverse. Returns (B, 4T, n_mels)."""
        assert self.postnet is not None
        t = self.temperature if temperature is None else temperature
        with torch.autocast(device_type=coarse.device.type, enabled=False):
            base, g, m = self._flow_inputs(coarse, states, mel_mask)
            if self.streaming is None:
                z = torch.randn(base.shape, generator=generator, device=base.device, dtype=base.dtype) * t * m
            else:  # frame-major, as the chunked decoder draws it
                shape = (base.shape[0], base.shape[2], base.shape[1])
                z = torch.randn(shape, generator=generator, device=base.device, dtype=base.dtype).transpose(1, 2) * t * m
            y, _ = self.postnet(z, m, g, reverse=True)
            post = (base + y) if self.flow_residual else y
        return (post * m).transpose(1, 2)

    # ---------------------------------------------------------------- public
    def forward(self, batch: Batch, teacher_forcing: bool = True, sample_post: bool = False) -> ModelOutput:
        """Run the model on a batch and compute the losses its targets allow.

        Args:
            batch: padded batch; targets (mel, units, pitch, energy) may be None.
            teacher_forcing: embed target units/pitch/energy (training, validation);
                False embeds the predictions, as at inference, while losses are
                still computed against the targets.
            sample_post: also sample the refined mel (``post_mel``) at the model's temperature.

        Returns:
            :class:`ModelOutput`.
        """
        mask = batch.frame_mask()
        s = self.streaming  # eval passes of a chunked model decode in chunks of chunk_frames
        chunk = self._chunk(s.chunk_frames if (s is not None and s.chunked and not self.training) else None)
        h = self.encode(batch.video, mask, batch.speakers, chunk)
        h, preds = self.adaptor(
            h,
            mask,
            units=batch.units if teacher_forcing else None,
            pitch=batch.pitch if teacher_forcing else None,
            energy=batch.energy if teacher_forcing else None,
        )
        coarse, states, mel_mask = self.decode(h, mask, chunk)
        out = ModelOutput(
            coarse_mel=coarse,
            mel_mask=mel_mask,
            unit_logits=preds.get("unit_logits"),
            pitch=preds.get("pitch"),
            energy=preds.get("energy"),
        )
        if sample_post and self.postnet is not None:
            out.post_mel = self.sample_post(coarse, states, mel_mask)
        if batch.mel is not None:
            out.losses = self._losses(batch, out, states, mask)
        return out

    def _losses(self, batch: Batch, out: ModelOutput, states: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        mel_mask = out.mel_mask
        losses = {"mel_l1": masked_mean((out.coarse_mel - batch.mel).abs(), mel_mask)}
        if out.unit_logits is not None and batch.units is not None:
            umask = batch.unit_mask()
            losses["ling_ce"] = F.cross_entropy(out.unit_logits[umask].float(), batch.units[umask])
        losses.update(self.variance_losses(batch, out, mask, batch.pitch, batch.energy))
        if self.postnet is not None:
            with torch.autocast(device_type=batch.mel.device.type, enabled=False):
                base, g, m = self._flow_inputs(out.coarse_mel, states, mel_mask)
                target = batch.mel.float().transpose(1, 2)
                y = (target - base) * m if self.flow_residual else target * m
                z, logdet = self.postnet(y, m, g)
                losses["flow_nll"] = gaussian_nll(z, logdet, m)
        total = losses["mel_l1"]
        for name, weight in self.weights.items():
            if name in losses:
                total = total + weight * losses[name]
        losses["total"] = total
        return losses

    def variance_losses(self, batch: Batch, out: ModelOutput, mask: torch.Tensor, pitch: Optional[torch.Tensor],
                        energy: Optional[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``pitch``/``energy``: the variance loss of ``out``'s predictions against these (B, T) values
        (the batch's targets, or a teacher's) over the valid frames ``mask`` (pitch: voiced ones if set)."""
        losses: dict[str, torch.Tensor] = {}
        reg = F.mse_loss if self.variance_loss == "mse" else F.l1_loss
        if out.pitch is not None and pitch is not None:
            pmask = mask & batch.voiced if (self.pitch_voiced_only and batch.voiced is not None) else mask
            losses["pitch"] = masked_mean(reg(out.pitch.float(), pitch, reduction="none"), pmask)
        if out.energy is not None and energy is not None:
            losses["energy"] = masked_mean(reg(out.energy.float(), energy, reduction="none"), mask)
        return losses

    @torch.no_grad()
    def infer(
        self,
        video: torch.Tensor,
        video_lengths: torch.Tensor,
        temperature: Optional[float] = None,
        speakers: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
        chunk_frames: Optional[int] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Synthesise mels from video alone (call ``model.eval()`` first).

        Args:
            video: (B, T, 1, 88, 88) normalised frames (as :func:`~lipspeech.models.batch.collate` makes them).
            video_lengths: (B,) valid frames.
            temperature: std of z; None uses the model's default; 0 gives the post-net's mode.
            speakers: (B,) speaker ids, for models with a speaker embedding.
            generator: random generator for z (reproducible sampling).
            chunk_frames: streaming models: decode in chunks of this many frames, as the
                chunk-by-chunk decoder would; None: the whole clip at once.

        Returns:
            coarse mel (B, 4T, n_mels) and refined mel (B, 4T, n_mels), zero on
            padded frames; the refined mel is the coarse one when the post-net is off.
        """
        mask = lengths_to_mask(video_lengths.to(video.device), video.shape[1])
        chunk = self._chunk(chunk_frames)
        h = self.encode(video, mask, speakers, chunk)
        h, _ = self.adaptor(h, mask)
        coarse, states, mel_mask = self.decode(h, mask, chunk)
        if self.postnet is None:
            return coarse, coarse
        return coarse, self.sample_post(coarse, states, mel_mask, temperature, generator)


def build_model(cfg: Mapping[str, Any]) -> LTBSModel:
    """Build an :class:`LTBSModel` from a flat model config (see :func:`lipspeech.models.presets.model_config`)."""
    m = ModelConfig.from_section(check_model_config(cfg))
    d = m.d_model
    options = LTBSOptions.from_config(m)
    streaming = options.streaming
    on = streaming.restrictions if streaming else frozenset()  # all of them, unless a study model leaves some out
    relative = "relative_positions" in on
    frontend = build_frontend(m.frontend, m.frontend_channels, m.frontend_downsample, "causal_frontend" in on)
    encoder = Conformer(d, m.enc_layers, m.enc_heads, m.enc_ffn, m.enc_kernel, m.dropout, "causal_encoder" in on,
                        relative)
    adaptor = VarianceAdaptor(
        d,
        n_units=m.n_units,
        hidden=m.var_hidden,
        kernel_size=m.var_kernel,
        layers=m.var_layers,
        dropout=m.var_dropout,
        pitch_bins=m.pitch_bins,
        pitch_min=m.pitch_min,
        pitch_max=m.pitch_max,
        energy_bins=m.energy_bins,
        energy_min=m.energy_min,
        energy_max=m.energy_max,
        use_linguistic=m.use_linguistic,
        use_pitch=m.use_pitch,
        use_energy=m.use_energy,
        causal="causal_predictors" in on,
    )
    decoder = Conformer(d, m.dec_layers, m.dec_heads, m.dec_ffn, m.dec_kernel, m.dropout, "causal_decoder" in on,
                        relative)
    postnet = None
    if m.use_postnet:
        postnet = FlowPostNet(
            m.n_mels,
            hidden=m.flow_hidden,
            kernel_size=m.flow_kernel,
            dilation_rate=m.flow_dilation_rate,
            wn_layers=m.flow_wn_layers,
            blocks=m.flow_blocks,
            cond_channels=d + m.n_mels,
            group_size=m.flow_group_size,
            dropout=m.flow_dropout,
            causal="causal_postnet" in on,
        )
    return LTBSModel(frontend, encoder, adaptor, decoder, postnet, options)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
