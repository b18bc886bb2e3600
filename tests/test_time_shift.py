"""benchmarks/time_shift.py: clips delayed by still frames. No delay is the model's own synthesis; the cut
mels line up with the original clip's frames in a padded batch; and a streaming model, whose memory is a
window, makes the same mels once the window has left the clip's start behind, where an offline model
with absolute positions does not."""

import numpy as np
import pytest
import torch
from benchscripts import script, tiny_model

from lipspeech.models.batch import Utterance, collate
from lipspeech.training.synthesis import synthesize

time_shift = script("time_shift")



def clip(t: int, seed: int) -> torch.Tensor:
    return torch.randn(1, t, 1, 88, 88, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("streaming,chunk", [(False, None), (True, 1)])
def test_no_delay_is_the_models_own_synthesis(streaming, chunk):
    m, video = tiny_model(streaming), clip(9, 1)
    own = m.infer(video, torch.tensor([9]), temperature=0.0, chunk_frames=chunk)
    got = time_shift.Shifted(m, 0).infer(video, torch.tensor([9]), temperature=0.0, chunk_frames=chunk)
    for a, b in zip(got, own):
        torch.testing.assert_close(a, b)


def test_a_padded_batch_is_cut_to_each_clips_own_frames():
    m, k = tiny_model(False), 3
    rng = np.random.default_rng(2)
    items = [Utterance(u, rng.integers(0, 256, (t, 96, 96), dtype=np.uint8)) for u, t in (("a", 7), ("b", 11))]
    got = synthesize(time_shift.Shifted(m, k), items, temperature=0.0)
    for it, s in zip(items, got):
        v = collate([it]).video  # the clip alone, normalised and cropped as synthesize batches it
        delayed = torch.cat([v[:, :1].expand(-1, k, -1, -1, -1), v], 1)
        _, post = m.infer(delayed, torch.tensor([delayed.shape[1]]), temperature=0.0)
        assert s.utt == it.utt and s.post.shape == (4 * it.n_frames, post.shape[-1])
        torch.testing.assert_close(torch.from_numpy(s.post), post[0, 4 * k:], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("streaming", [False, True])
def test_only_the_offline_model_hears_the_delay_late_in_a_long_clip(streaming):
    m, t, k = tiny_model(streaming), 90, 5
    video, lengths = clip(t, 4), torch.tensor([t])
    chunk = 1 if streaming else None
    own = m.infer(video, lengths, temperature=0.0, chunk_frames=chunk)[1]
    late = time_shift.Shifted(m, k).infer(video, lengths, temperature=0.0, chunk_frames=chunk)[1]
    same = torch.allclose(late[:, -40:], own[:, -40:], atol=1e-4)
    assert same is streaming
