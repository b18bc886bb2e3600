"""Distillation: a trained model's predictions as a student's soft targets.

An experiment's ``distill_from`` names a teacher (another experiment's trained model, e.g. the
offline model for a streaming student). Each training step the teacher predicts the batch's units,
pitch and energy (:func:`teach`: whole clips, the batch's targets embedded as in training, frozen),
and each of the student's predictor losses becomes ``(1 - w) x`` its loss against the targets
``+ w x`` its loss against the teacher (:func:`distill_losses`, :func:`distilled_total`): for the
units the KL divergence from the teacher's distribution, for pitch and energy the model's variance
loss (L1 or MSE) to the teacher's values, over the same frames as the target losses.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from lipspeech.models.batch import Batch
from lipspeech.models.ltbs import LTBSModel, ModelOutput

TAUGHT = ("unit_logits", "pitch", "energy")


@torch.no_grad()
def teach(teacher: LTBSModel, batch: Batch) -> dict[str, torch.Tensor]:
    """The teacher's predictions on a training batch (the parts it has of :data:`TAUGHT`), float32,
    from its encoder and variance adaptor only (the decoder and the post-net do not run)."""
    mask = batch.frame_mask()
    h = teacher.encode(batch.video, mask, batch.speakers, None)
    _, preds = teacher.adaptor(h, mask, units=batch.units, pitch=batch.pitch, energy=batch.energy)
    return {k: v.detach().float() for k, v in preds.items() if k in TAUGHT}


def distill_losses(model: LTBSModel, batch: Batch, out: ModelOutput, taught: Mapping[str, torch.Tensor]
                   ) -> dict[str, torch.Tensor]:
    """The student's (``model``'s, output ``out``) predictor losses against the teacher's predictions,
    named as the target losses they go with: ``ling_ce`` (the KL divergence, zero when the two unit
    distributions agree), ``pitch`` and ``energy``. Only the parts both have."""
    losses: dict[str, torch.Tensor] = {}
    if out.unit_logits is not None and "unit_logits" in taught and batch.units is not None:
        umask = batch.unit_mask()
        student = F.log_softmax(out.unit_logits[umask].float(), -1)
        target = F.log_softmax(taught["unit_logits"][umask], -1)
        losses["ling_ce"] = F.kl_div(student, target, reduction="batchmean", log_target=True)
    return {**losses, **model.variance_losses(batch, out, batch.frame_mask(), taught.get("pitch"),
                                                      taught.get("energy"))}


def distilled_total(model: LTBSModel, out: ModelOutput, distill: Mapping[str, torch.Tensor], weight: float
                    ) -> torch.Tensor:
    """``out``'s total loss with each predictor's target loss mixed with its distillation loss by
    ``weight``, each under its lambda as in the total (weight 0: the total itself)."""
    total = out.losses["total"]
    for name, d in distill.items():
        total = total + model.weights[name] * weight * (d - out.losses.get(name, 0.0))
    return total
