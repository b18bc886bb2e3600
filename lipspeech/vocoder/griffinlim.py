"""The no-training vocoder: log-mel -> linear magnitude -> fast Griffin-Lim.

1. ``exp`` undoes the log; the mel filterbank (:func:`~lipspeech.features.audio.mel_filterbank`,
   80 x 513) is then inverted per frame as a non-negative least-squares problem
   ``min ||M s - m||, s >= 0``: the pseudo-inverse solution clipped at zero,
   refined by multiplicative NNLS updates ``s <- s * (M^T m) / (M^T M s)``, which
   keep ``s`` non-negative and lower the residual at every step (Lee & Seung's
   rule for this objective). Bins outside ``[fmin, fmax]`` get no energy.
2. Griffin-Lim with the momentum of Perraudin, Balazs & Sondergaard ("a fast
   Griffin-Lim algorithm", 2013), on the pipeline's own STFT: Hann window of
   ``win_length`` centred in ``n_fft``, hop 160, the audio reflect-padded by
   ``(n_fft - hop) / 2`` on each side and ``center=False``, so ``T`` frames give
   exactly ``160 T`` samples and frame ``k`` is centred on sample ``160 k + 80``
   (:mod:`lipspeech.features.audio`). The inverse STFT is the least-squares
   overlap-add (windowed frames summed, divided by the summed squared window);
   torch.istft refuses ``center=False`` here because the padded window is zero at
   the frame edges. Spectrograms are kept frames-first, (B, T, F), as the mel stage's.

The initial phases are drawn from a generator seeded with ``seed``, so the output
is a deterministic function of the mel and the settings (on one device).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lipspeech.features.audio import AudioConfig, frame_pad, mel_filterbank


class GriffinLim(torch.nn.Module):
    """Log-mel to waveform without a trained model.

    Args (the settings are the ``vocoder.griffin_lim`` section's):
        cfg: the mel definition the log-mels were made with.
        n_iter: Griffin-Lim iterations.
        momentum: fast Griffin-Lim momentum (0 = the original algorithm; 0.99 is usual).
        nnls_iter: multiplicative NNLS updates of the mel inversion (0 = clipped pseudo-inverse).
        seed: seeds the initial random phases.
    """

    def __init__(self, cfg: AudioConfig, n_iter: int, momentum: float, nnls_iter: int, seed: int):
        super().__init__()
        if n_iter < 1 or not 0 <= momentum < 1 or nnls_iter < 0:
            raise ValueError(f"need n_iter >= 1, 0 <= momentum < 1, nnls_iter >= 0 (got {n_iter}, {momentum}, {nnls_iter})")
        self.cfg, self.n_iter, self.momentum, self.nnls_iter, self.seed = cfg, n_iter, momentum, nnls_iter, seed
        basis = mel_filterbank(cfg).astype(np.float64)
        self.register_buffer("basis", torch.from_numpy(basis).float(), persistent=False)
        self.register_buffer("pinv", torch.from_numpy(np.linalg.pinv(basis)).float(), persistent=False)
        left = (cfg.n_fft - cfg.win_length) // 2
        window = F.pad(torch.hann_window(cfg.win_length), (left, cfg.n_fft - cfg.win_length - left))
        self.register_buffer("window", window, persistent=False)  # (n_fft,), as torch.stft pads it

    # ------------------------------------------------------------------ STFT pair
    def stft(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, N) audio -> (B, N // hop, F) complex STFT (the mel stage's framing; frames first)."""
        x = frame_pad(audio, self.cfg.n_fft, self.cfg.hop_length)
        frames = x.unfold(-1, self.cfg.n_fft, self.cfg.hop_length)  # (B, T, n_fft), a view
        return torch.fft.rfft(frames * self.window, dim=-1)

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, n_fft) -> (B, (T - 1) * hop + n_fft): frame t added at sample t * hop.

        Each frame is cut into hop-long pieces, and piece j of every frame is added
        as one slice: ceil(n_fft / hop) vector additions instead of T.
        """
        hop = self.cfg.hop_length
        b, t, n = frames.shape
        k = -(-n // hop)
        pieces = F.pad(frames, (0, k * hop - n)).view(b, t, k, hop)
        out = frames.new_zeros(b, t + k - 1, hop)
        for j in range(k):
            out[:, j : j + t] += pieces[:, :, j]
        return out.view(b, -1)[:, : (t - 1) * hop + n]

    def _envelope(self, t: int) -> torch.Tensor:
        """(1, (T - 1) * hop + n_fft) sum of the squared windows, cached per T."""
        cached = getattr(self, "_env_cache", None)
        if cached is None or cached[0] != t or cached[1].device != self.window.device:
            env = self._overlap_add(self.window.square().expand(1, t, -1))
            self._env_cache = (t, env.clamp_min(1e-8))
        return self._env_cache[1]

    def istft(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, T, F) complex -> (B, hop * T) audio: least-squares overlap-add, padding removed."""
        n_fft, hop = self.cfg.n_fft, self.cfg.hop_length
        t = spec.shape[1]
        frames = torch.fft.irfft(spec, n=n_fft, dim=-1) * self.window
        pad = (n_fft - hop) // 2
        return (self._overlap_add(frames) / self._envelope(t))[:, pad : pad + hop * t]

    # ------------------------------------------------------------------ mel inversion
    def mel_to_magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) log-mel -> (B, T, F) non-negative linear magnitude (NNLS fit)."""
        mel = torch.exp(log_mel.float())  # (B, T, n_mels)
        s = (mel @ self.pinv.T).clamp_min(0.0)
        if self.nnls_iter:
            mt_m = mel @ self.basis  # (B, T, F)
            gram = self.basis.T @ self.basis  # (F, F), symmetric
            # a small positive start everywhere the filterbank reaches, so the updates can move every bin
            s = s + 1e-3 * mt_m.amax(dim=-1, keepdim=True).clamp_min(1e-12) * (mt_m > 0)
            for _ in range(self.nnls_iter):
                s = s * mt_m / (s @ gram).clamp_min(1e-12)
        return s

    # ------------------------------------------------------------------ Griffin-Lim
    def iterate(self, magnitude: torch.Tensor, angles: torch.Tensor, n_iter: int, fixed: int = 0) -> torch.Tensor:
        """``n_iter`` fast Griffin-Lim iterations from unit-modulus ``angles`` (B, T, F); returns the
        new angles. The first ``fixed`` frames keep theirs (the windowed, streaming use)."""
        rebuilt = torch.zeros_like(angles)
        alpha = self.momentum / (1 + self.momentum)
        for _ in range(n_iter):
            previous = rebuilt
            rebuilt = self.stft(self.istft(magnitude * angles))
            updated = torch.sgn(rebuilt - alpha * previous)  # z / |z| (0 stays 0)
            angles = updated if fixed == 0 else torch.cat([angles[:, :fixed], updated[:, fixed:]], dim=1)
        return angles

    def griffin_lim(self, magnitude: torch.Tensor) -> torch.Tensor:
        """(B, T, F) linear magnitude -> (B, hop * T) audio (fast Griffin-Lim)."""
        generator = torch.Generator().manual_seed(self.seed)
        phase = torch.rand(magnitude.shape, generator=generator, dtype=torch.float32) * (2 * torch.pi)
        angles = torch.polar(torch.ones_like(phase), phase).to(magnitude.device)
        return self.istft(magnitude * self.iterate(magnitude, angles, self.n_iter))

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) log-mel -> (B, hop * T) audio, clipped to [-1, 1]."""
        return self.griffin_lim(self.mel_to_magnitude(log_mel)).clamp(-1.0, 1.0)


def spectral_convergence(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """||ref - est||_F / ||ref||_F of two magnitude spectrograms (0 = identical)."""
    return float(torch.linalg.norm(reference - estimate) / torch.linalg.norm(reference).clamp_min(1e-12))

