"""benchmarks/soft_units.py: the posterior-weighted unit embedding. At tau 0 it is the model's own synthesis
(offline, and streaming in chunks), as tau goes to 0 it goes to it, at tau 1 it is another synthesis, and
the model is left as it was, also when the synthesis fails, and in its mode after a synthesis."""

import numpy as np
import pytest
import torch
from benchscripts import script, tiny_model

from lipspeech.models.batch import Utterance
from lipspeech.training.synthesis import synthesize

soft_units = script("soft_units")



@pytest.mark.parametrize("streaming,chunk", [(False, None), (True, 1)])
def test_tau_zero_is_the_models_own_synthesis_and_tau_one_is_not(streaming, chunk):
    m = tiny_model(streaming)
    t = 9
    video = torch.randn(1, t, 1, 88, 88, generator=torch.Generator().manual_seed(1))
    own = m.infer(video, torch.tensor([t]), temperature=0.0, chunk_frames=chunk)
    for tau, same in ((0.0, True), (1e-6, True), (1.0, False)):
        with torch.no_grad():
            got = soft_units.SoftUnits(m, tau).infer(video, torch.tensor([t]), temperature=0.0, chunk_frames=chunk)
        for a, b in zip(got, own):
            assert a.shape == b.shape
            assert torch.allclose(a, b, atol=1e-5) is same, tau
    assert "forward" not in vars(m.adaptor)  # the adaptor's own forward again


def test_uniform_posteriors_embed_the_mean_unit_and_a_failure_restores_the_model():
    m = tiny_model(False)
    ad = m.adaptor
    logits = torch.zeros(1, 4, ad.n_units)
    expected = ad.unit_proj(ad.unit_embed.weight.mean(0).repeat(2)).expand(1, 2, -1)
    torch.testing.assert_close(soft_units.SoftUnits(m, 1.0).embed(logits), expected)

    class Broken(soft_units.SoftUnits):
        def embed(self, logits):
            raise ValueError("in the adaptor")

    with pytest.raises(ValueError, match="in the adaptor"):
        Broken(m, 1.0).infer(torch.randn(1, 3, 1, 88, 88), torch.tensor([3]))
    assert "forward" not in vars(ad)


def test_synthesis_through_the_wrapper_leaves_the_model_in_its_mode():
    m = tiny_model(False)
    synthesize(soft_units.SoftUnits(m, 1.0), [Utterance("a", np.zeros((4, 96, 96), np.uint8))], temperature=0.0)
    assert not m.training and not m.adaptor.training
