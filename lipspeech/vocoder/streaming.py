"""HiFi-GAN on a log-mel that arrives a few frames at a time, with the whole utterance's audio.

The generator is convolutional all the way, so an output sample depends on the mel
frames within its receptive field only: :func:`receptive_frames` bounds it exactly, in
mel frames before and after, from the layers' kernels, dilations, strides and padding.
:class:`HifiGanStream` keeps the frames of the past it needs as left context and waits
for the frames of the future it needs (its look-ahead) before it writes a frame's samples; it runs the generator
on the frames it holds and keeps only the samples its context makes exact. So
the concatenated chunks equal vocoding the whole utterance at once, up to float
rounding (a test checks it), at the price of recomputing the context each call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from lipspeech.vocoder.api import GriffinLimVocoder, HifiGanVocoder
from lipspeech.vocoder.hifigan import Generator, ResBlock1


def _conv_reach(conv: nn.Conv1d) -> int:
    """Output samples a 'same'-padded conv spreads an input sample over, on each side."""
    return (conv.kernel_size[0] - 1) * conv.dilation[0] // 2


def _block_reach(block: nn.Module) -> int:
    """The same for a residual block (its convs run one after another)."""
    convs = [*block.convs1, *block.convs2] if isinstance(block, ResBlock1) else list(block.convs)
    return sum(_conv_reach(c) for c in convs)


def receptive_frames(generator: Generator) -> tuple[int, int]:
    """Which mel frames a frame's audio can depend on: (frames before it, frames after it).

    Follows the audio samples one mel frame can change through the generator's layers:
    a 'same' convolution widens them by its reach on each side, the widest of a stage's
    parallel residual blocks likewise, a transposed convolution (stride u, kernel k,
    padding p) maps input samples [a, b] to output samples [a u - p, b u + k - 1 - p]. An
    exact bound on the support: frame g can change the audio of frames g - r .. g + l,
    so the audio of frame f depends on frames f - l .. f + r.
    """
    lo, hi = -_conv_reach(generator.conv_pre), _conv_reach(generator.conv_pre)
    n = generator.n_kernels
    for i, up in enumerate(generator.ups):
        u, k, p = up.stride[0], up.kernel_size[0], up.padding[0]
        lo, hi = lo * u - p, hi * u + k - 1 - p
        reach = max(_block_reach(b) for b in generator.resblocks[i * n:(i + 1) * n])
        lo, hi = lo - reach, hi + reach
    lo, hi = lo - _conv_reach(generator.conv_post), hi + _conv_reach(generator.conv_post)
    hop = generator.hop
    reaches_before, reaches_after = -(lo // hop), hi // hop  # frames of the audio frame g can change
    return reaches_after, reaches_before


class HifiGanStream:
    """Vocode one utterance chunk by chunk.

    :meth:`push` takes the next log-mel frames and returns the audio that is final
    (every frame but the last :attr:`lookahead` received); :meth:`flush` ends the
    utterance and returns the rest. Their concatenation is ``vocoder(whole log-mel)``.

    Args:
        vocoder: a loaded HiFi-GAN (:func:`~lipspeech.vocoder.api.load_hifigan`).
    """

    def __init__(self, vocoder: HifiGanVocoder):
        self.vocoder = vocoder
        self.hop = vocoder.audio_cfg.hop_length
        #: frames of the past kept as context, frames of the future waited for
        self.context, self.lookahead = receptive_frames(vocoder.generator)
        self._held = np.zeros((0, vocoder.audio_cfg.n_mels), np.float32)
        self._first = 0  # utterance frame index of _held[0]
        self._received = 0
        self._written = 0  # frames whose audio has been returned

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency: the look-ahead, in milliseconds of audio."""
        return 1000.0 * self.lookahead * self.hop / self.vocoder.audio_cfg.sample_rate

    def push(self, log_mel: np.ndarray) -> np.ndarray:
        """Add (n, n_mels) frames; returns the float32 audio made final by them (may be empty)."""
        chunk = np.asarray(log_mel, dtype=np.float32)
        if chunk.ndim != 2 or chunk.shape[1] != self._held.shape[1]:
            raise ValueError(f"log-mel chunk has shape {chunk.shape}, expected (n, {self._held.shape[1]})")
        if len(chunk):
            self.vocoder.check(chunk)
        self._held = np.concatenate([self._held, chunk])
        self._received += len(chunk)
        return self._write(self._received - self.lookahead)

    def flush(self) -> np.ndarray:
        """End of the utterance: the audio of the frames still waiting for their look-ahead."""
        return self._write(self._received)

    @torch.no_grad()
    def _write(self, upto: int) -> np.ndarray:
        if upto <= self._written:
            return np.zeros(0, np.float32)
        start = max(0, self._written - self.context)  # left context, as far as the utterance has it
        x = torch.from_numpy(self._held[start - self._first:]).to(self.vocoder.device)
        audio = self.vocoder._run(x[None])[0].float().cpu().numpy()
        out = audio[(self._written - start) * self.hop:(upto - start) * self.hop].copy()
        self._written = upto
        keep_from = max(0, upto - self.context)
        self._held = self._held[keep_from - self._first:]
        self._first = keep_from
        return out

    def describe(self) -> dict[str, Any]:
        """Context and look-ahead in frames, and the latency."""
        return {"context_frames": self.context, "lookahead_frames": self.lookahead, "latency_ms": self.latency_ms}


class GriffinLimStream:
    """Griffin-Lim on a log-mel that arrives a few frames at a time (windowed, RTISI-LA style).

    Frames are taken ``step`` at a time: each new frame gets a random initial phase (from
    the vocoder's seed, frame by frame), then ``n_iter`` fast Griffin-Lim iterations run
    over a window in which the last ``lookahead`` frames are still free to change, the
    frames before them are fixed (their audio is written) and ``ceil(n_fft / hop)`` fixed
    frames of the past give the free frames their overlapping neighbours. A frame's phase
    is fixed ``lookahead`` frames after it arrived, and an audio sample is written once
    every frame overlapping it is fixed. The steps fall on fixed frames (0, step, 2 step,
    ...), so the audio does not depend on how the log-mel was chunked. It is not the
    offline Griffin-Lim's audio (that one iterates over the whole utterance), but the same
    magnitudes through the same STFT; a test compares their spectral convergence.

    Args:
        vocoder: the Griffin-Lim vocoder (its mel inversion, STFT, momentum and seed).
        lookahead: frames a frame's phase keeps changing after it arrived.
        n_iter: iterations per step.
        step: frames per step (more: less computation, more latency).
    """

    def __init__(self, vocoder: GriffinLimVocoder, lookahead: int = 3, n_iter: int = 8, step: int = 4):
        if lookahead < 0 or n_iter < 1 or step < 1:
            raise ValueError(f"need lookahead >= 0, n_iter >= 1, step >= 1 (got {lookahead}, {n_iter}, {step})")
        self.gl = vocoder.module
        cfg = self.gl.cfg
        self.hop, self.lookahead, self.n_iter, self.step = cfg.hop_length, lookahead, n_iter, step
        self.context = -(-cfg.n_fft // cfg.hop_length)
        # frame k's window covers samples [k hop + offset, k hop + offset + win_length)
        self._offset = (cfg.n_fft - cfg.win_length) // 2 - (cfg.n_fft - cfg.hop_length) // 2
        self._generator = torch.Generator().manual_seed(self.gl.seed)
        bins = cfg.n_fft // 2 + 1
        self._mag = torch.zeros(0, bins)
        self._angles = torch.zeros(0, bins, dtype=torch.complex64)
        self._first = self._received = self._fixed = self._written = 0
        self._pending: list[np.ndarray] = []  # log-mel frames waiting for their step
        self._out: list[np.ndarray] = []  # audio written by the steps of this push
        self.sample_rate = cfg.sample_rate

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency: a step, the look-ahead and a frame's window beyond its hop, in ms."""
        samples = (self.step - 1 + self.lookahead) * self.hop + self._offset + self.gl.cfg.win_length
        return 1000.0 * samples / self.sample_rate

    @torch.no_grad()
    def push(self, log_mel: np.ndarray) -> np.ndarray:
        """Add (n, n_mels) frames; returns the float32 audio made final by them (may be empty)."""
        chunk = np.asarray(log_mel, dtype=np.float32)
        if chunk.ndim != 2 or chunk.shape[1] != self.gl.cfg.n_mels:
            raise ValueError(f"log-mel chunk has shape {chunk.shape}, expected (n, {self.gl.cfg.n_mels})")
        for frame in chunk:
            self._pending.append(frame)
            if len(self._pending) == self.step:
                self._add()
        return self._take()

    @torch.no_grad()
    def flush(self) -> np.ndarray:
        """End of the utterance: fix the last frames and return the rest of the audio."""
        if self._pending:
            self._add()
        self._fixed = self._received
        self._write(self._received * self.hop)
        return self._take()

    def _take(self) -> np.ndarray:
        out, self._out = self._out, []
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _add(self) -> None:
        # a step's frames inverted together (the same groups however the log-mel was chunked)
        mags = self.gl.mel_to_magnitude(torch.from_numpy(np.stack(self._pending))[None])[0]
        self._pending = []
        phases = torch.stack([torch.rand(m.shape, generator=self._generator) for m in mags]) * (2 * torch.pi)
        self._mag = torch.cat([self._mag, mags])
        self._angles = torch.cat([self._angles, torch.polar(torch.ones_like(phases), phases)])
        self._received += len(mags)
        self._angles = self.gl.iterate(self._mag[None], self._angles[None], self.n_iter, self._fixed - self._first)[0]
        self._fixed = max(self._fixed, self._received - self.lookahead)
        self._write(max(0, self._fixed * self.hop + self._offset))  # each step writes: no state depends on pushes

    def _write(self, end: int) -> None:
        if end <= self._written:
            return
        audio = self.gl.istft((self._mag * self._angles)[None])[0]  # sample i is first * hop + i
        base = self._first * self.hop
        self._out.append(audio[self._written - base:end - base].clamp(-1.0, 1.0).numpy().copy())
        self._written = end
        keep_from = max(0, self._fixed - self.context)
        self._mag, self._angles = self._mag[keep_from - self._first:], self._angles[keep_from - self._first:]
        self._first = keep_from

    def describe(self) -> dict[str, Any]:
        """Look-ahead, iterations, step and latency."""
        return {"lookahead_frames": self.lookahead, "n_iter": self.n_iter, "step_frames": self.step,
                "latency_ms": self.latency_ms}
