"""Distillation: a trained model's predictions as a student's soft targets.

An experiment's ``distill_from`` names a teacher (another experiment's trained model, e.g. the
offline model for a streaming student). Each training step the teacher predicts the batch's units,
pitch and energy (:func:`teach`: whole clips, the batch's targets embedded as in training, frozen),
and each of the student's predictor losses becomes ``(1 - w) x`` its loss against the targets
``+ w x`` its loss against the teacher (:func:`distill_losses`, :func:`distilled_total`): for the
units the KL divergence from the teacher's distribution, for pitch and energy the model's variance
loss (L1 or MSE) to the teacher's values, over the same frames as the target losses. With a mel
weight ``m`` (``distill_mel_weight``) the teacher's decoder runs too and the coarse-mel L1 becomes
``(1 - m) x`` the L1 to the target mel ``+ m x`` the L1 to the teacher's coarse mel.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from lipspeech.models.batch import Batch
from lipspeech.models.ltbs import LTBSModel, ModelOutput, masked_mean

TAUGHT = ("unit_logits", "pitch", "energy")


@torch.no_grad()
def teach(teacher: LTBSModel, batch: Batch, mels: bool = False) -> dict[str, torch.Tensor]:
    """The teacher's predictions on a training batch (the parts it has of :data:`TAUGHT`), float32,
    from its encoder and variance adaptor only; with ``mels`` its decoder's coarse mel too
    (``"coarse_mel"``, (B, 4T, n_mels), whole clip; the post-net never runs)."""
    mask = batch.frame_mask()
    h = teacher.encode(batch.video, mask, batch.speakers, None)
    h, preds = teacher.adaptor(h, mask, units=batch.units, pitch=batch.pitch, energy=batch.energy)
    taught = {k: v.detach().float() for k, v in preds.items() if k in TAUGHT}
    if mels:
        taught["coarse_mel"] = teacher.decode(h, mask, None)[0].detach().float()
    return taught


def distill_losses(model: LTBSModel, batch: Batch, out: ModelOutput, taught: Mapping[str, torch.Tensor]
                   ) -> dict[str, torch.Tensor]:
    """The student's (``model``'s, output ``out``) predictor losses against the teacher's predictions,
    named as the target losses they go with: ``ling_ce`` (the KL divergence, zero when the two unit
    distributions agree), ``pitch``, ``energy`` and ``mel_l1`` (when taught a coarse mel). Only the parts
    both have."""
    losses: dict[str, torch.Tensor] = {}
    if "coarse_mel" in taught:
        losses["mel_l1"] = masked_mean((out.coarse_mel.float() - taught["coarse_mel"]).abs(), out.mel_mask)
    if out.unit_logits is not None and "unit_logits" in taught and batch.units is not None:
        umask = batch.unit_mask()
        student = F.log_softmax(out.unit_logits[umask].float(), -1)
        target = F.log_softmax(taught["unit_logits"][umask], -1)
        losses["ling_ce"] = F.kl_div(student, target, reduction="batchmean", log_target=True)
    return {**losses, **model.variance_losses(batch, out, batch.frame_mask(), taught.get("pitch"),
                                                      taught.get("energy"))}


def distilled_total(model: LTBSModel, out: ModelOutput, distill: Mapping[str, torch.Tensor], weight: float,
                    mel_weight: float = 0.0) -> torch.Tensor:
    """``out``'s total loss with each predictor's target loss mixed with its distillation loss by
    ``weight`` (the coarse-mel L1 by ``mel_weight``), each under its lambda as in the total (the mel
    L1's is 1; weights 0: the total itself)."""
    total = out.losses["total"]
    for name, d in distill.items():
        w, lam = (mel_weight, 1.0) if name == "mel_l1" else (weight, model.weights[name])
        total = total + lam * w * (d - out.losses.get(name, 0.0))
    return total
