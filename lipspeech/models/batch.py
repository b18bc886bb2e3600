"""Dataset items and padded batches for the LTBS model.

An :class:`Utterance` is one item as a dataset hands it over (numpy arrays, one
utterance, exact lengths on the time axes of :mod:`lipspeech.core.timing`); a
:class:`Batch` is what the model consumes (padded torch tensors plus lengths).
:func:`collate` turns one into the other; it is the only place where video is
cropped to the model's input size and normalised, and where padding happens.

Lengths, with ``T`` the number of video frames (the master length):

=========  ======================  ==========================================
field      item shape              batch shape
=========  ======================  ==========================================
video      (T, H, W) uint8/float   (B, T_max, 1, crop, crop) float, normalised
mel        (4T, n_mels)            (B, 4 T_max, n_mels)
units      (2T,) int               (B, 2 T_max) long
pitch      (T,) float              (B, T_max) normalised log-F0
voiced     (T,) bool               (B, T_max) bool
energy     (T,) float              (B, T_max) normalised
speaker    int or None             (B,) long, or None for the whole batch
=========  ======================  ==========================================

Padded values are zeros (``False`` for ``voiced``); models must use the masks
(:meth:`Batch.frame_mask` and friends), never the padded values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional, Sequence

import numpy as np
import torch

from lipspeech.core.timing import MEL_PER_FRAME, UNITS_PER_FRAME

#: Mean and standard deviation of grayscale mouth crops scaled to [0, 1]; the
#: usual values for lip-reading front-ends. Applied by :func:`collate`.
VIDEO_MEAN = 0.421
VIDEO_STD = 0.165
#: Side of the square crop the visual front-end sees (ROI frames are 96x96).
CROP_SIZE = 88


@dataclass
class Utterance:
    """One dataset item (numpy arrays; targets may be absent at inference).

    Attributes:
        utt: utterance id.
        video: (T, H, W) mouth ROI frames, uint8 in [0, 255] or float in [0, 1].
        mel: (4T, n_mels) float log-mel target.
        units: (2T,) int HuBERT k-means units.
        pitch: (T,) float normalised log-F0 per video frame.
        voiced: (T,) bool voicing per video frame.
        energy: (T,) float normalised energy per video frame.
        speaker: integer speaker index, or None.
    """

    utt: str
    video: np.ndarray
    mel: Optional[np.ndarray] = None
    units: Optional[np.ndarray] = None
    pitch: Optional[np.ndarray] = None
    voiced: Optional[np.ndarray] = None
    energy: Optional[np.ndarray] = None
    speaker: Optional[int] = None

    @property
    def n_frames(self) -> int:
        return int(self.video.shape[0])


@dataclass
class Batch:
    """A padded batch (torch tensors).

    Attributes:
        video: (B, T, 1, 88, 88) float, normalised, zero on padded frames.
        video_lengths: (B,) long, valid frames per utterance.
        mel: (B, 4T, n_mels) float or None.
        mel_lengths: (B,) long (= 4 * video_lengths) or None.
        units: (B, 2T) long or None.
        pitch: (B, T) float or None.
        voiced: (B, T) bool or None.
        energy: (B, T) float or None.
        speakers: (B,) long or None.
        utts: utterance ids, in batch order.
    """

    video: torch.Tensor
    video_lengths: torch.Tensor
    mel: Optional[torch.Tensor] = None
    mel_lengths: Optional[torch.Tensor] = None
    units: Optional[torch.Tensor] = None
    pitch: Optional[torch.Tensor] = None
    voiced: Optional[torch.Tensor] = None
    energy: Optional[torch.Tensor] = None
    speakers: Optional[torch.Tensor] = None
    utts: tuple[str, ...] = ()

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """A copy with every tensor moved to ``device``."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                moved[f.name] = value.to(device, non_blocking=non_blocking)
        return replace(self, **moved)

    def __len__(self) -> int:
        return int(self.video.shape[0])

    def frame_mask(self) -> torch.Tensor:
        """(B, T) bool, True on valid video frames."""
        return lengths_to_mask(self.video_lengths, self.video.shape[1])

    def unit_mask(self) -> torch.Tensor:
        """(B, 2T) bool, True on valid unit frames."""
        return lengths_to_mask(self.video_lengths * UNITS_PER_FRAME, self.video.shape[1] * UNITS_PER_FRAME)

    def mel_mask(self) -> torch.Tensor:
        """(B, 4T) bool, True on valid mel frames."""
        return lengths_to_mask(self.video_lengths * MEL_PER_FRAME, self.video.shape[1] * MEL_PER_FRAME)


def lengths_to_mask(lengths: torch.Tensor, max_len: Optional[int] = None) -> torch.Tensor:
    """Boolean mask from lengths.

    Args:
        lengths: (B,) integer lengths.
        max_len: width of the mask; ``lengths.max()`` when None.

    Returns:
        (B, max_len) bool, ``mask[b, t] = t < lengths[b]``.
    """
    if max_len is None:
        max_len = int(lengths.max().item()) if lengths.numel() else 0
    steps = torch.arange(max_len, device=lengths.device)
    return steps[None, :] < lengths[:, None]


def crop_video(video: np.ndarray, size: int, top: Optional[int] = None, left: Optional[int] = None) -> np.ndarray:
    """Crop (T, H, W) frames to (T, size, size); centred unless ``top``/``left`` are given."""
    t, h, w = video.shape
    if h < size or w < size:
        raise ValueError(f"video frames are {h}x{w}, smaller than the {size}x{size} crop")
    top = (h - size) // 2 if top is None else top
    left = (w - size) // 2 if left is None else left
    return video[:, top : top + size, left : left + size]


def _check_length(item: Utterance, name: str, value: np.ndarray, expected: int) -> None:
    if value.shape[0] != expected:
        raise ValueError(
            f"utterance {item.utt}: {name} has {value.shape[0]} rows, expected {expected} "
            f"for {item.n_frames} video frames (see lipspeech.core.timing.fit_length)"
        )


def collate(
    items: Sequence[Utterance],
    crop: int = CROP_SIZE,
    video_mean: float = VIDEO_MEAN,
    video_std: float = VIDEO_STD,
) -> Batch:
    """Pad a list of utterances into a :class:`Batch`.

    Video is centre-cropped to ``crop`` (items already that size are left as they
    are; random crops are the dataset's business, before collation), scaled to
    [0, 1] when uint8, normalised with ``video_mean``/``video_std`` and then
    zero-padded, so padded frames are exactly zero in the normalised domain, the
    same value a convolution's own zero padding uses.

    A target stream is batched only when every item has it (else it is None), so
    an inference batch of videos alone is valid. Lengths of present streams are
    checked against the time axes (4 mel frames and 2 units per video frame).

    Args:
        items: utterances (at least one).
        crop: side of the square video crop.
        video_mean, video_std: normalisation of [0, 1] pixel values.

    Returns:
        The padded batch, in the order of ``items``.
    """
    if not items:
        raise ValueError("collate needs at least one utterance")
    n = len(items)
    lengths = [it.n_frames for it in items]
    if min(lengths) == 0:
        bad = next(it.utt for it in items if it.n_frames == 0)
        raise ValueError(f"utterance {bad}: video has no frames")
    t_max = max(lengths)

    video = torch.zeros(n, t_max, 1, crop, crop, dtype=torch.float32)
    for i, it in enumerate(items):
        v = crop_video(np.asarray(it.video), crop)
        v = torch.from_numpy(np.ascontiguousarray(v)).float()
        if it.video.dtype == np.uint8:
            v = v / 255.0
        video[i, : lengths[i], 0] = (v - video_mean) / video_std
    batch = Batch(
        video=video,
        video_lengths=torch.tensor(lengths, dtype=torch.long),
        utts=tuple(it.utt for it in items),
    )

    def stack(name: str, per_frame: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
        values = [getattr(it, name) for it in items]
        if any(v is None for v in values):
            return None
        first = np.asarray(values[0])
        out = torch.zeros((n, t_max * per_frame) + first.shape[1:], dtype=dtype)
        for i, (it, v) in enumerate(zip(items, values)):
            v = np.asarray(v)
            _check_length(it, name, v, lengths[i] * per_frame)
            out[i, : v.shape[0]] = torch.from_numpy(np.ascontiguousarray(v)).to(dtype)
        return out

    batch.mel = stack("mel", MEL_PER_FRAME, torch.float32)
    if batch.mel is not None:
        batch.mel_lengths = batch.video_lengths * MEL_PER_FRAME
    batch.units = stack("units", UNITS_PER_FRAME, torch.long)
    batch.pitch = stack("pitch", 1, torch.float32)
    batch.voiced = stack("voiced", 1, torch.bool)
    batch.energy = stack("energy", 1, torch.float32)
    if all(it.speaker is not None for it in items):
        batch.speakers = torch.tensor([int(it.speaker) for it in items], dtype=torch.long)
    return batch
