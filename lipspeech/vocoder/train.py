"""HiFi-GAN training: random segments of ground-truth (mel, audio), LSGAN + feature matching + mel L1.

Each step takes a batch of utterances (an epoch is a seeded permutation of the
train split, :func:`~lipspeech.training.data.epoch_batches`) and from each a
random window of ``segment_frames`` mel frames and the ``160 * segment_frames``
samples under it (utterances shorter than that are padded: zeros for the audio,
the log-mel of silence for the mel). The generator sees the stored mel (what the
acoustic model learns to predict); its mel loss compares the
:class:`~lipspeech.features.audio.MelSpectrogram` of its output with that of the
real segment, computed the same way.

Per step (the paper's order): a discriminator update on real vs generated audio,
then a generator update on ``adv + lambda_fm * fm + lambda_mel * mel_l1``.
AdamW for both, the learning rate multiplied by ``lr_decay`` after every epoch.
Validation: mel L1 between the val utterances' stored mels and the mels of
their whole-utterance generator output (``best.pt`` = lowest).

Training runs in the one training loop (:mod:`lipspeech.training.loop`, the
model family being :class:`HifiGanTask`), so the run directory
(``results/{corpus}/vocoder/``) is laid out as the acoustic model's:
``config.json``, ``losses.csv``, ``tb/`` (TensorBoard: losses, and the first val
utterance's audio at each validation), ``ckpt/last.pt`` and ``ckpt/best.pt``;
resuming from ``last.pt`` continues the very run that was interrupted (same
batches, segments and updates) on the same device and thread count.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lipspeech.core.config import ConfigError, section_config
from lipspeech.core.runtime import resolve_device
from lipspeech.core.settings import TrainConfig, VocoderTrainConfig
from lipspeech.features.audio import AudioConfig, MelSpectrogram
from lipspeech.training.data import epoch_batches
from lipspeech.training.loop import LoopSettings, LossLogger, Task, TrainResult, run_loop
from lipspeech.training.trainer import clip_gradients
from lipspeech.vocoder.hifigan import (
    Discriminators,
    Generator,
    check_hifigan_config,
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
)

CSV_COLUMNS = ("step", "split", "lr", "loss_d", "loss_g", "adv", "fm", "mel_l1", "grad_norm_g", "grad_norm_d")


def vocoder_train_config(overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The ``vocoder.train`` section: schema defaults updated with ``overrides`` (validated), as the
    mapping the checkpoints store (read it with :class:`~lipspeech.core.settings.VocoderTrainConfig`)."""
    return section_config("vocoder.train", overrides)


@dataclass
class VocoderItem:
    """One utterance for vocoder training.

    Attributes:
        utt: utterance id.
        audio: (160 T,) float32 waveform.
        mel: (T, n_mels) float32 log-mel of that waveform (the mel stage's).
    """

    utt: str
    audio: np.ndarray
    mel: np.ndarray


class VocoderItems(Sequence[VocoderItem]):
    """The ``split`` utterances that have both a decoded audio and a mel, read from the stores on
    indexing (copies: nothing of a store's cache is held), in manifest order.

    Attributes:
        skipped: reason -> count of the left-out ones.
    """

    def __init__(self, corpus: Any, split: str):
        manifest = corpus.manifest
        rows = manifest[manifest["split"] == split]
        self.corpus = corpus
        self._index: list[tuple[str, int, int, int]] = []  # utt, shard, audio row, mel row
        self.skipped: Counter = Counter()
        for utt, shard in zip(rows["utt"], rows["shard"]):
            shard = int(shard)
            a, m = corpus.rows("audio", shard).get(utt), corpus.rows("mel", shard).get(utt)
            if a is None or m is None:
                self.skipped["not in audio" if a is None else "not in mel"] += 1
                continue
            if a[1][0] != m[1][0] * 160 or m[1][0] == 0:
                self.skipped["length mismatch"] += 1
                continue
            self._index.append((utt, shard, a[0], m[0]))

    def __len__(self) -> int:
        return len(self._index)

    @property
    def utts(self) -> list[str]:
        return [u for u, _, _, _ in self._index]

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        utt, shard, a, m = self._index[index]
        audio = np.array(self.corpus.store("audio", shard).array("audio", a))
        mel = np.array(self.corpus.store("mel", shard).array("mel", m))
        return VocoderItem(utt, audio, mel)


def load_items(corpus: Any, split: str) -> tuple[VocoderItems, Counter]:
    """The ``split`` utterances with both a decoded audio and a mel (:class:`VocoderItems`), and
    reason -> count of the left-out ones."""
    from lipspeech.training.stores import CorpusStores

    if not isinstance(corpus, CorpusStores):
        corpus = CorpusStores.from_results(corpus, ("audio", "mel"), load_stats=False)
    items = VocoderItems(corpus, split)
    return items, items.skipped


def segment(item: VocoderItem, frames: int, rng: np.random.Generator, silence: float,
            hop: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A random window of ``frames`` mel frames and its ``hop * frames`` samples.

    Returns (mel (frames, n_mels), audio (hop * frames,)), padded when the utterance is shorter.
    """
    t = len(item.mel)
    start = int(rng.integers(0, t - frames + 1)) if t > frames else 0
    mel = np.full((frames, item.mel.shape[1]), silence, dtype=np.float32)
    audio = np.zeros(frames * hop, dtype=np.float32)
    n = min(frames, t - start)
    mel[:n] = item.mel[start : start + n]
    audio[: n * hop] = item.audio[start * hop : (start + n) * hop]
    return mel, audio


def make_batch(items: Sequence[VocoderItem], indices: Sequence[int], frames: int, seed: int, epoch: int, batch: int,
               silence: float, hop: int = 160) -> tuple[torch.Tensor, torch.Tensor]:
    """Segments of ``items[indices]``, each a pure function of (seed, epoch, batch, index).

    Returns mel (B, n_mels, frames) and audio (B, 1, hop * frames).
    """
    mels, audios = [], []
    for i in indices:
        m, a = segment(items[i], frames, np.random.default_rng([seed, epoch, batch, i, 11]), silence, hop)
        mels.append(m.T)
        audios.append(a[None])
    return torch.from_numpy(np.stack(mels)), torch.from_numpy(np.stack(audios))


def _update(loss: torch.Tensor, optimizer: torch.optim.Optimizer, module: nn.Module) -> Optional[float]:
    """One optimiser update of ``module`` on ``loss`` (the discriminators' and the generator's alike): the
    gradients' norm, measured before the step; None, and nothing updated, when the loss is not finite."""
    if not torch.isfinite(loss):
        return None
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = clip_gradients(list(module.parameters()), float("inf"))
    optimizer.step()
    return norm


class GanTrainer:
    """The generator, the discriminators, their optimisers and schedulers, and one training step.

    Args:
        gen_cfg: checked HiFi-GAN config (:func:`~lipspeech.vocoder.hifigan.hifigan_config`).
        audio_cfg: the mel definition.
        cfg: the ``vocoder.train`` section (a mapping or read).
        device: where to train.
    """

    def __init__(self, gen_cfg: Mapping[str, Any], audio_cfg: AudioConfig,
                 cfg: Mapping[str, Any] | VocoderTrainConfig, device: torch.device):
        self.train = train = VocoderTrainConfig.from_section(cfg)
        self.device, self.audio_cfg = device, audio_cfg
        self.generator = Generator(gen_cfg, audio_cfg.n_mels).to(device)
        self.discriminators = Discriminators(gen_cfg).to(device)
        betas = tuple(train.betas)
        self.opt_g = torch.optim.AdamW(self.generator.parameters(), train.lr, betas=betas)
        self.opt_d = torch.optim.AdamW(self.discriminators.parameters(), train.lr, betas=betas)
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.opt_g, train.lr_decay)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.opt_d, train.lr_decay)
        self.melspec = MelSpectrogram(audio_cfg).to(device)

    def train_step(self, mel: torch.Tensor, audio: torch.Tensor) -> Optional[dict[str, float]]:
        """One discriminator and one generator update.

        Args:
            mel: (B, n_mels, F) log-mel segments.
            audio: (B, 1, 160 F) the audio under them.

        Returns:
            The losses, or None when a loss was not finite (nothing updated).
        """
        g, d = self.generator.train(), self.discriminators.train()
        mel, audio = mel.to(self.device), audio.to(self.device)
        fake = g(mel)
        real_scores, _ = d(audio)
        fake_scores, _ = d(fake.detach())
        loss_d = discriminator_loss(real_scores, fake_scores)
        grad_d = _update(loss_d, self.opt_d, d)
        if grad_d is None:
            return None

        d.requires_grad_(False)  # the generator step needs gradients through D, not for D's weights
        try:
            mel_l1 = F.l1_loss(self.melspec(fake.squeeze(1)), self.melspec(audio.squeeze(1)))
            with torch.no_grad():
                _, real_features = d(audio)
            fake_scores, fake_features = d(fake)
            adv = generator_adv_loss(fake_scores)
            fm = feature_matching_loss(real_features, fake_features)
            loss_g = adv + self.train.lambda_fm * fm + self.train.lambda_mel * mel_l1
            grad_g = _update(loss_g, self.opt_g, g)
            if grad_g is None:
                return None
        finally:
            d.requires_grad_(True)
        values = {k: float(v.detach()) for k, v in
                  (("loss_d", loss_d), ("loss_g", loss_g), ("adv", adv), ("fm", fm), ("mel_l1", mel_l1))}
        return {**values, "grad_norm_g": grad_g, "grad_norm_d": grad_d}

    def end_epoch(self) -> None:
        """Decay both learning rates (called after every epoch over the train split)."""
        with warnings.catch_warnings():
            # a run resumed exactly at an epoch's end decays before its first optimiser step: that is intended
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.sched_g.step()
            self.sched_d.step()

    @torch.no_grad()
    def generate(self, mel: np.ndarray) -> torch.Tensor:
        """(T, n_mels) -> (160 T,) audio of the generator in eval mode (training mode restored)."""
        was = self.generator.training
        self.generator.eval()
        try:
            x = torch.tensor(mel, dtype=torch.float32, device=self.device).T[None]
            return self.generator(x)[0, 0]
        finally:
            self.generator.train(was)

    @torch.no_grad()
    def validate(self, items: Sequence[VocoderItem], max_items: int = 0) -> float:
        """Mel L1 of whole utterances: stored log-mel vs the log-mel of the generated audio (mean over values)."""
        total, count = 0.0, 0
        for item in items[: max_items or None]:
            target = torch.tensor(item.mel, dtype=torch.float32, device=self.device)  # a copy: store views are read-only
            pred = self.melspec(self.generate(item.mel))
            total += float(torch.abs(pred - target).sum())
            count += target.numel()
        return total / max(count, 1)

    def state(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(), "discriminator": self.discriminators.state_dict(),
            "optim_g": self.opt_g.state_dict(), "optim_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict(),
        }

    def load(self, ckpt: Mapping[str, Any]) -> None:
        self.generator.load_state_dict(ckpt["generator"])
        self.discriminators.load_state_dict(ckpt["discriminator"])
        self.opt_g.load_state_dict(ckpt["optim_g"])
        self.opt_d.load_state_dict(ckpt["optim_d"])
        self.sched_g.load_state_dict(ckpt["sched_g"])
        self.sched_d.load_state_dict(ckpt["sched_d"])


class HifiGanTask(Task):
    """HiFi-GAN in the training loop (:mod:`lipspeech.training.loop`): a :class:`GanTrainer` per run.

    Args: as :func:`train_vocoder`'s, with the device resolved.
    """

    columns = CSV_COLUMNS
    best_metric = "mel_l1"
    shown = {"mel": "mel_l1", "d": "loss_d"}

    def __init__(self, gen_cfg: Mapping[str, Any], audio_cfg: AudioConfig, cfg: Mapping[str, Any],
                 train_items: Sequence[VocoderItem], val_items: Optional[Sequence[VocoderItem]],
                 device: torch.device, preset: Optional[str]):
        self.gen_cfg, self.audio_cfg, self.cfg = dict(gen_cfg), audio_cfg, dict(cfg)  # the checkpoints store these
        self.train = VocoderTrainConfig.from_section(cfg)
        self.items, self.val_items, self.device, self.preset = train_items, val_items, device, preset
        self.silence = float(np.log(audio_cfg.log_floor))

    def build(self) -> None:
        self.gan = GanTrainer(self.gen_cfg, self.audio_cfg, self.train, self.device)

    def check_resume(self, ckpt: Mapping[str, Any], path: Path) -> None:
        if ckpt.get("generator_cfg") != self.gen_cfg or ckpt.get("audio_cfg") != self.audio_cfg.as_dict():
            raise ConfigError(f"vocoder config: differs from the checkpoint in {path} "
                              "(use a new run directory or resume=False)")

    def load_state(self, ckpt: Mapping[str, Any]) -> None:
        self.gan.load(ckpt)

    def state(self) -> dict[str, Any]:
        return self.gan.state()

    def record(self) -> dict[str, Any]:
        return {"generator_cfg": self.gen_cfg, "preset": self.preset, "audio_cfg": self.audio_cfg.as_dict(),
                "train_cfg": self.cfg}

    def run_config(self) -> dict[str, Any]:
        return {"preset": self.preset, "generator": self.gen_cfg, "audio": self.audio_cfg.as_dict(), "train": self.cfg}

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        # a plain shuffle (no length buckets, so no window) that keeps the last smaller batch:
        # the vocoder's own order, vocoder.train has no bucket or drop_last keys
        return epoch_batches(len(self.items), self.train.batch_size, self.train.seed, epoch, None, bucket_window=0,
                             drop_last=False)

    def batches(self, batches: list[list[int]], epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        train = self.train
        for b in range(start, len(batches)):
            yield make_batch(self.items, batches[b], train.segment_frames, train.seed, epoch, b, self.silence,
                             self.audio_cfg.hop_length)

    def lr(self) -> float:
        return self.gan.opt_g.param_groups[0]["lr"]

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> Optional[dict[str, float]]:
        return self.gan.train_step(*batch)

    @property
    def has_validation(self) -> bool:
        return self.val_items is not None

    def validate(self) -> dict[str, float]:
        return {"mel_l1": self.gan.validate(self.val_items, self.train.val_max_utterances)}

    def after_validation(self, logger: LossLogger, step: int) -> None:
        if logger.tb is not None and self.val_items:
            audio = self.gan.generate(self.val_items[0].mel).cpu()[None]
            logger.tb.add_audio("val/generated", audio, step, self.audio_cfg.sample_rate)

    def end_epoch(self) -> None:
        self.gan.end_epoch()


def train_vocoder(
    gen_cfg: Mapping[str, Any],
    audio_cfg: AudioConfig,
    train_cfg: Mapping[str, Any],
    train_items: Sequence[VocoderItem],
    val_items: Optional[Sequence[VocoderItem]],
    run_dir: str | os.PathLike,
    preset: Optional[str] = None,
    resume: bool = True,
    stop_at_step: Optional[int] = None,
    threads: int = 0,
    progress: bool = True,
) -> TrainResult:
    """Train a HiFi-GAN (:class:`HifiGanTask` in :func:`~lipspeech.training.loop.run_loop`).

    Args:
        gen_cfg: HiFi-GAN sizes (:func:`~lipspeech.vocoder.hifigan.hifigan_config`).
        audio_cfg: the mel definition of the items.
        train_cfg: the ``vocoder.train`` section (:func:`vocoder_train_config`).
        train_items, val_items: :class:`VocoderItem` sequences (val None: no validation, no best.pt).
        run_dir: run directory (created).
        preset: preset name, recorded in the checkpoints.
        resume: continue from ``run_dir/ckpt/last.pt`` when it exists.
        stop_at_step: stop (saving last.pt) after this many steps; the run is still sized by max_steps.
        threads: torch CPU threads (0: leave as is).
        progress: tqdm bar.

    Returns:
        :class:`~lipspeech.training.loop.TrainResult`.
    """
    gen_cfg = check_hifigan_config(gen_cfg)
    train = VocoderTrainConfig.from_section(train_cfg)
    if len(train_items) == 0:
        raise ValueError("no training utterances")
    device = resolve_device(train.device)
    task = HifiGanTask(gen_cfg, audio_cfg, train_cfg, train_items, val_items, device, preset)
    return run_loop(task, _loop_settings(train, threads, progress), Path(run_dir), device, resume, stop_at_step)


def _loop_settings(train: VocoderTrainConfig, threads: int, progress: bool) -> LoopSettings:
    """How the loop runs a vocoder: ``vocoder.train``'s keys, and for those it has no keys for
    (non-finite losses, early stopping, snapshots) the ``train`` section's, as the schema sets them."""
    acoustic = TrainConfig.default()
    return LoopSettings(
        max_steps=train.max_steps, seed=train.seed, log_every=train.log_every, val_every=train.val_every,
        ckpt_every=train.ckpt_every, max_nonfinite=acoustic.max_nonfinite, patience=acoustic.patience,
        snapshot_every=acoustic.snapshot_every, deterministic=train.deterministic, threads=threads,
        tensorboard=train.tensorboard, progress=progress, desc="train-vocoder")
