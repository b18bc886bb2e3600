"""Synthesis: trained model + utterances (video only is enough) -> coarse and refined mels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np
import torch

from lipspeech.core.timing import MEL_PER_FRAME
from lipspeech.models.batch import Utterance, collate
from lipspeech.models.ltbs import LTBSModel


@dataclass
class Synthesis:
    """One synthesised utterance.

    Attributes:
        utt: utterance id.
        coarse: (4T, n_mels) float32 coarse mel (decoder output).
        post: (4T, n_mels) float32 refined mel (post-net), equal to ``coarse``
            when the post-net is off.
    """

    utt: str
    coarse: np.ndarray
    post: np.ndarray


@torch.no_grad()
def synthesize(
    model: LTBSModel,
    items: Iterable[Utterance],
    temperature: Optional[float] = None,
    batch_size: int = 8,
    seed: int = 0,
    device: Optional[str | torch.device] = None,
    chunk_frames: Optional[int] = None,
) -> list[Synthesis]:
    """Coarse and refined mels for each utterance (targets in the items are ignored).

    Args:
        model: the model (put in eval mode for the call; each of its modules' modes restored after).
        items: utterances; only ``video`` (and ``speaker`` for multi-speaker models) is used.
        temperature: std of the post-net's z; None uses the model's default.
        batch_size: utterances per forward pass.
        seed: seeds z, so the same call gives the same mels.
        device: where to run; the model's device when None.
        chunk_frames: streaming models: decode in chunks of this many frames (what the
            chunk-by-chunk decoder of ``lipspeech live`` gives); None: whole clips.

    Returns:
        One :class:`Synthesis` per item, in order, trimmed to 4T frames.
    """
    items = list(items)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    modes = [(m, m.training) for m in model.modules()]  # each part's own: a wrapper's flag need not be its model's
    model.eval()
    results: list[Synthesis] = []
    try:
        for start in range(0, len(items), batch_size):
            chunk = [Utterance(it.utt, it.video, speaker=it.speaker) for it in items[start : start + batch_size]]
            batch = collate(chunk).to(device)
            coarse, post = model.infer(
                batch.video, batch.video_lengths, temperature, batch.speakers, generator, chunk_frames
            )
            for i, n in enumerate(batch.video_lengths.tolist()):
                results.append(
                    Synthesis(
                        utt=batch.utts[i],
                        coarse=coarse[i, : n * MEL_PER_FRAME].float().cpu().numpy(),
                        post=post[i, : n * MEL_PER_FRAME].float().cpu().numpy(),
                    )
                )
    finally:
        for m, training in modes:
            m.training = training
    return results
