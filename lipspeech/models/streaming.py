"""Chunk-by-chunk decoding of a streaming-mode LTBS model, with caches.

:class:`StreamDecoder` takes video frames as they arrive and returns the mel frames that
no later video frame can change: chunk c (frames cC .. cC + C - 1) is decoded as soon as
frame cC + C + A - 1 (its look-ahead) has arrived. Every module carries what the next
chunk needs instead of recomputing it: the stem's last k - 1 frames, per conformer block
the keys/values of the left context and the depthwise convolution's last inputs, the
variance predictors' and the post-net WaveNets' last convolution inputs. Each video frame
goes through the front-end once, each chunk through the rest once.

The result equals :meth:`LTBSModel.infer` with ``chunk_frames=C`` (the masked
whole-sequence pass that training uses) up to float rounding, for any way the frames
are pushed; with C covering the clip it equals the offline pass (tests/test_streaming_model.py).
At temperature > 0 the post-net's z is drawn chunk by chunk, so the samples equal the
whole-sequence pass's only when one chunk covers the clip; at temperature 0 always.

A model with decoder look-ahead D (``stream_decoder_lookahead_frames``) reads each mel frame's decoder
states out with the states of the 4D mel frames after it (:class:`lipspeech.models.causal.Lookahead`):
a chunk's mels come out once the chunks that hold its next D frames are decoded, and the states whose
look-ahead is not in yet wait in a buffer.

Latency, counted from a frame's arrival: a chunk waits for its last frame and A more, and with
decoder look-ahead for the chunks that hold its next D frames (algorithmic latency
((1 + ceil(D / C)) C + A) frames at worst, for the chunk's first frame: 40 ms each), then its compute.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from lipspeech.core.timing import FPS, MEL_PER_FRAME
from lipspeech.models.ltbs import LTBSModel
from lipspeech.models.presets import STREAM_RESTRICTIONS


def algorithmic_latency_ms(chunk_frames: int, lookahead_frames: int, decoder_lookahead_frames: int = 0) -> float:
    """Worst-case wait (ms) between a frame's arrival and the arrival of the last frame its chunk needs."""
    waited = -(-decoder_lookahead_frames // chunk_frames)  # chunks after its own whose states it reads
    return 1000.0 * ((1 + waited) * chunk_frames + lookahead_frames) / FPS


class StreamDecoder:
    """Decode a streaming-mode model's mels chunk by chunk (see the module docstring).

    Args:
        model: an :class:`LTBSModel` built with ``streaming`` on, in eval mode.
        chunk_frames: video frames per chunk (default: the model's ``stream_chunk_frames``).
        temperature: std of the post-net's z (default: the model's); 0: its mode.
        speaker: speaker id, for models with a speaker embedding.
        generator: random generator for z.
    """

    def __init__(
        self,
        model: LTBSModel,
        chunk_frames: Optional[int] = None,
        temperature: Optional[float] = None,
        speaker: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
    ):
        if model.streaming is None:
            raise ValueError("chunk-by-chunk decoding needs a model trained in streaming mode (model.streaming)")
        if not model.streaming.can_stream:
            missing = sorted(set(STREAM_RESTRICTIONS) - model.streaming.restrictions)
            raise ValueError(f"this streaming-mode model is a study model without {', '.join(missing)}"
                             " (stream_restrictions): it decodes whole clips only")
        if model.training:
            raise ValueError("put the model in eval mode (model.eval()) before streaming")
        self.model = model
        self.chunk = int(chunk_frames or model.streaming.chunk_frames)
        if self.chunk < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {self.chunk}")
        self.lookahead = model.streaming.lookahead_frames
        self.left = model.streaming.left_context_frames
        self.temperature = model.temperature if temperature is None else float(temperature)
        self.generator = generator
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.speakers = None if speaker is None else torch.tensor([int(speaker)], device=self.device)
        self._stem_frames = int(model.frontend.stem_frames)
        self._context: Optional[torch.Tensor] = None  # the last stem_frames - 1 frames (1, k - 1, 1, H, W)
        self._pending: Optional[torch.Tensor] = None  # encoder inputs not yet decoded (1, n, D)
        self._states: Optional[torch.Tensor] = None  # decoder states not yet read out (decoder look-ahead)
        self._enc: list[dict[str, Any]] = [{} for _ in model.encoder.blocks]
        self._dec: list[dict[str, Any]] = [{} for _ in model.decoder.blocks]
        self._var: dict[str, Any] = {}
        self._flow: dict[int, Any] = {}
        self.frames_in = 0
        self.frames_out = 0

    @property
    def ready_frames(self) -> int:
        """Video frames received but not yet decoded."""
        return 0 if self._pending is None else int(self._pending.shape[1])

    @torch.no_grad()
    def push(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add video frames; return the mels of every chunk that is now complete.

        Args:
            frames: (n, 1, H, W) normalised frames (as collate makes them), n >= 0.

        Returns:
            coarse and refined mels (4m, n_mels) for the m frames decoded now (m may be 0).
        """
        if frames.shape[0]:
            self._add(frames.to(self.device, self.dtype))
        return self._decode(final=False)

    @torch.no_grad()
    def flush(self) -> tuple[torch.Tensor, torch.Tensor]:
        """End of stream: decode what is left (the last chunk with the look-ahead there is)."""
        return self._decode(final=True)

    # ------------------------------------------------------------------ internals
    def _add(self, frames: torch.Tensor) -> None:
        k = self._stem_frames
        if self._context is None:  # before the first frame the stem reads zeros, as in the whole pass
            self._context = frames.new_zeros((k - 1,) + tuple(frames.shape[1:]))
        window = torch.cat([self._context, frames])[None]  # (1, k - 1 + n, 1, H, W)
        mask = torch.zeros(window.shape[:2], dtype=torch.bool, device=self.device)
        mask[:, k - 1 :] = True
        feats = self.model.video_features(window, mask, self.speakers)[:, k - 1 :]
        self._context = window[0, window.shape[1] - (k - 1) :]
        self._pending = feats if self._pending is None else torch.cat([self._pending, feats], dim=1)
        self.frames_in += frames.shape[0]

    def _decode(self, final: bool) -> tuple[torch.Tensor, torch.Tensor]:
        coarse_parts, post_parts = [], []
        while self._pending is not None and self._pending.shape[1]:
            n = self._pending.shape[1]
            if n < self.chunk + self.lookahead and not final:
                break
            queries = min(self.chunk, n)
            states = self._chunk(self._pending[:, : queries + self.lookahead], queries)
            self._pending = self._pending[:, queries:]
            self.frames_out += queries
            coarse, post = self._mels(states, False)
            coarse_parts.append(coarse)
            post_parts.append(post)
        if final and self._states is not None and self._states.shape[1]:  # the states held for their look-ahead
            coarse, post = self._mels(None, True)
            coarse_parts.append(coarse)
            post_parts.append(post)
        n_mels = self.model.n_mels
        if not coarse_parts:
            empty = torch.zeros(0, n_mels)
            return empty, empty
        return torch.cat(coarse_parts).cpu(), torch.cat(post_parts).cpu()

    def _chunk(self, x: torch.Tensor, queries: int) -> torch.Tensor:
        """One chunk's decoder states (1, 4 queries, D) from its encoder inputs and look-ahead ``x``."""
        model = self.model
        start = self.frames_out
        h = model.encoder.step(x, queries, self._enc, self.left, start)
        h = model.adaptor.step(h, self._var)
        return model.decoder.step(model.upsample(h), queries * MEL_PER_FRAME, self._dec, self.left * MEL_PER_FRAME,
                                  start * MEL_PER_FRAME)

    def _mels(self, states: Optional[torch.Tensor], final: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Coarse and post-net mels of the states whose decoder look-ahead is in (all at the end of the stream)."""
        model = self.model
        if model.lookahead is not None:
            held = torch.cat([p for p in (self._states, states) if p is not None], dim=1)
            states, self._states = model.lookahead.step(held, final)
        assert states is not None
        if not states.shape[1]:
            empty = states.new_zeros(0, self.model.n_mels)
            return empty, empty
        coarse = model.mel_proj(states).float()
        if model.postnet is None:
            return coarse[0], coarse[0]
        base = coarse.transpose(1, 2)
        g = torch.cat([states.float().transpose(1, 2), base], dim=1)
        z = torch.randn(coarse.shape, generator=self.generator, device=coarse.device).transpose(1, 2)
        y = model.postnet.step(z * self.temperature, g, self._flow)
        post = (base + y) if model.flow_residual else y
        return coarse[0], post.transpose(1, 2)[0]
