"""Training data: in-memory datasets, the seeded data order and augmentation.

A dataset is any sequence of :class:`~lipspeech.models.batch.Utterance`
(``len`` + integer indexing); a plain iterable is read into a list once. When it
has a ``lengths()`` method (video frames per item), bucketing uses it instead of
loading every item.

Data order is a pure function of (seed, epoch): a permutation of the items, cut
into batches of ``batch_size`` (optionally bucketed by length, then the batches
shuffled). A checkpoint therefore only stores (epoch, batches done in epoch),
and augmentation draws from a generator seeded by (seed, epoch, batch, item), so
resuming replays exactly what an uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Sequence

import numpy as np

from lipspeech.core.timing import FPS, MEL_PER_FRAME, UNITS_PER_FRAME
from lipspeech.models.batch import CROP_SIZE, Utterance, crop_video


class InMemoryDataset(Sequence[Utterance]):
    """A list of utterances with a ``lengths()`` method.

    Args:
        items: the utterances.
    """

    def __init__(self, items: Iterable[Utterance]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Utterance:  # type: ignore[override]
        return self.items[index]

    def lengths(self) -> list[int]:
        """Video frames per item."""
        return [it.n_frames for it in self.items]


def as_sequence(data: Any) -> Sequence[Utterance]:
    """``data`` itself if it is indexable with a length, else its items in a list."""
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        return data
    return InMemoryDataset(data)


def item_lengths(data: Sequence[Utterance]) -> list[int]:
    """Video frames per item (``data.lengths()`` when available)."""
    lengths = getattr(data, "lengths", None)
    if callable(lengths):
        return list(lengths())
    return [data[i].n_frames for i in range(len(data))]


def epoch_batches(
    n_items: int,
    batch_size: int,
    seed: int,
    epoch: int,
    lengths: Sequence[int] | None = None,
    *,
    bucket_window: int,
    drop_last: bool,
) -> list[list[int]]:
    """The batches (lists of item indices) of one epoch; a pure function of its arguments.

    Args:
        n_items: dataset size.
        batch_size: items per batch.
        seed, epoch: seed the permutation.
        lengths: item lengths; given, items are bucketed: each window of
            ``bucket_window * batch_size`` permuted items is sorted by length and
            cut into batches, and all batches are then shuffled.
        bucket_window: see ``lengths`` (unused without them).
        drop_last: drop a last, smaller batch.

    Returns:
        List of batches, each a list of indices.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n_items)
    if lengths is None:
        batches = [order[i : i + batch_size].tolist() for i in range(0, n_items, batch_size)]
    else:
        window = batch_size * bucket_window
        batches = []
        for start in range(0, n_items, window):
            chunk = order[start : start + window]
            chunk = chunk[np.argsort(np.asarray(lengths)[chunk], kind="stable")]
            batches += [chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches = batches[:-1] if lengths is None else [b for b in batches if len(b) == batch_size]
    if lengths is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def augment(item: Utterance, seed: int, epoch: int, batch: int, index: int, random_crop: bool, hflip: bool,
            mask_max_frames: int = 0, masks_per_second: float = 1.0, lead_in_frames: int = 0) -> Utterance:
    """A randomly cropped / flipped / time-masked / lengthened copy of ``item`` (a pure function of the seeds).

    Video larger than the model's crop gets a random crop (when ``random_crop``)
    or is left for :func:`~lipspeech.models.batch.collate` to centre-crop. With
    ``mask_max_frames`` > 0, :func:`time_mask` follows (its draws come after the crop's
    and the flip's, so turning it on leaves those as they were); with ``lead_in_frames`` > 0,
    :func:`lead_in` of a drawn 0..``lead_in_frames`` frames last (its draw after all the others).
    """
    if not (random_crop or hflip or mask_max_frames or lead_in_frames):
        return item
    rng = np.random.default_rng([seed, epoch, batch, index, 7])
    video = np.asarray(item.video)
    _, h, w = video.shape
    if random_crop and (h > CROP_SIZE or w > CROP_SIZE):
        top = int(rng.integers(0, h - CROP_SIZE + 1))
        left = int(rng.integers(0, w - CROP_SIZE + 1))
        video = crop_video(video, CROP_SIZE, top, left)
    if hflip and rng.random() < 0.5:
        video = video[:, :, ::-1]
    if mask_max_frames:
        video = time_mask(video, rng, mask_max_frames, masks_per_second)
    item = replace(item, video=video)
    return lead_in(item, int(rng.integers(0, lead_in_frames + 1))) if lead_in_frames else item


def lead_in(item: Utterance, frames: int) -> Utterance:
    """``item`` with a longer opening: ``frames`` copies of its first video frame before it, and on every other
    stream its first value repeated over the same time (4 mel frames and 2 units a video frame; pitch, voicing
    and energy one each). A clip opens on the still face and silence, so this is more of the same."""
    if frames <= 0:
        return item
    rate = {"video": 1, "mel": MEL_PER_FRAME, "units": UNITS_PER_FRAME, "pitch": 1, "voiced": 1, "energy": 1}
    longer = {}
    for name, per_frame in rate.items():
        x = getattr(item, name)
        if x is not None:
            x = np.asarray(x)
            longer[name] = np.concatenate([np.repeat(x[:1], frames * per_frame, axis=0), x])
    return replace(item, **longer)


def time_mask(video: np.ndarray, rng: np.random.Generator, max_frames: int, per_second: float) -> np.ndarray:
    """``video`` (T, H, W) with spans of frames replaced by its mean frame (a copy).

    ``max(1, round(T / FPS * per_second))`` spans, each of a length drawn from
    ``0..max_frames`` (at most T) and a start drawn from ``0..T - length``; spans may overlap.
    The mean frame keeps the brightness the network sees, as the visual speech recognisers do.
    """
    n_frames = video.shape[0]
    out = np.array(video, copy=True)
    mean = video.mean(axis=0).round().astype(video.dtype)
    for _ in range(max(1, int(round(n_frames / FPS * per_second)))):
        length = int(rng.integers(0, min(max_frames, n_frames) + 1))
        start = int(rng.integers(0, n_frames - length + 1))
        out[start : start + length] = mean
    return out


def synthetic_utterances(
    n: int,
    n_frames: int | Sequence[int] = 20,
    seed: int = 0,
    *,
    n_mels: int,
    n_units: int,
    mel_offset: float = 0.0,
) -> list[Utterance]:
    """Random but fixed utterances for tests and benchmarks.

    The mel is piecewise constant over blocks of 4 frames x 8 bins (unit
    variance, plus a little noise) around ``mel_offset``, video frames are uint8 96x96 noise with a per-utterance
    moving blob, units/pitch/energy are random; all streams on the time axes
    of :mod:`lipspeech.core.timing`; ``n_mels`` and ``n_units`` are the model's (its config's keys).
    """
    rng = np.random.default_rng(seed)
    lengths = [n_frames] * n if isinstance(n_frames, int) else list(n_frames)
    items = []
    for i, t in enumerate(lengths):
        t_mel = t * MEL_PER_FRAME
        coarse = rng.standard_normal((t_mel // 4 + 2, n_mels // 8 + 2)).astype(np.float32)
        mel = np.kron(coarse, np.ones((4, 8), dtype=np.float32))[:t_mel, :n_mels]
        mel = mel + 0.1 * rng.standard_normal((t_mel, n_mels)).astype(np.float32) + mel_offset
        yy, xx = np.mgrid[0:96, 0:96]
        centre = rng.uniform(30, 66, size=(t, 2))
        blob = np.exp(-((yy[None] - centre[:, :1, None]) ** 2 + (xx[None] - centre[:, 1:, None]) ** 2) / 200.0)
        video = np.clip(40 * rng.standard_normal((t, 96, 96)) + 200 * blob + 30, 0, 255).astype(np.uint8)
        items.append(
            Utterance(
                utt=f"synth{i:04d}",
                video=video,
                mel=mel,
                units=rng.integers(0, n_units, size=t * UNITS_PER_FRAME),
                pitch=rng.standard_normal(t).astype(np.float32),
                voiced=rng.random(t) < 0.7,
                energy=rng.standard_normal(t).astype(np.float32),
            )
        )
    return items
