"""benchmarks/weight_soup.py: the uniform average of several runs' weights, tensor by tensor. One run is
itself; two models' soup is their mean (batch-norm statistics too, its counters kept), which a model
loads and runs; models of other architectures are refused."""

import pytest
import torch
from benchscripts import script, tiny_model

soup = script("weight_soup")


def perturbed(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def move(k: str, v: torch.Tensor) -> torch.Tensor:
        if not torch.is_floating_point(v):
            return v + seed
        if k.endswith("running_var"):  # a variance stays positive
            return v * (1 + torch.rand(v.shape, generator=g))
        return v + 0.05 * torch.randn(v.shape, generator=g)

    return {k: move(k, v) for k, v in tiny_model(True).state_dict().items()}


def test_one_run_is_its_own_soup():
    state = perturbed(1)
    for k, v in soup.average_states([state]).items():
        assert torch.equal(v, state[k])


def test_the_soup_of_two_is_their_mean_and_loads_into_the_model():
    a, b = perturbed(1), perturbed(2)
    mixed = soup.average_states([a, b])
    assert mixed.keys() == a.keys()
    for k, v in mixed.items():
        if torch.is_floating_point(v):
            torch.testing.assert_close(v, (a[k] + b[k]) / 2)
        else:  # batch-norm's batch counters: the first run's
            assert torch.equal(v, a[k])
    assert any("running_mean" in k for k in mixed)
    m = tiny_model(True)
    m.load_state_dict(mixed)
    coarse, post = m.infer(torch.randn(1, 6, 1, 88, 88), torch.tensor([6]), temperature=0.0, chunk_frames=1)
    assert post.shape[1] == 24 and torch.isfinite(post).all()


def test_other_architectures_are_refused():
    streaming = tiny_model(True).state_dict()
    short = dict(list(streaming.items())[:-1])
    with pytest.raises(ValueError, match="other tensors"):
        soup.average_states([streaming, short])
    wrong = {k: (v[..., :1] if v.dim() > 1 else v) for k, v in streaming.items()}
    with pytest.raises(ValueError, match="shape"):
        soup.average_states([streaming, wrong])
    with pytest.raises(ValueError, match="no weights"):
        soup.average_states([])
