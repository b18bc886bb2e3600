"""LTBS model: flow invertibility and log-determinants, padding invariance, ablations, presets."""

import numpy as np
import pytest
import torch

from lipspeech.core.config import ConfigError
from lipspeech.models import PRESETS, Utterance, build_model, collate, count_parameters, lengths_to_mask, model_config
from lipspeech.models.distill import distill_losses, distilled_total, teach
from lipspeech.models.flow import ActNorm, AffineCoupling, FlowPostNet, InvConv1x1
from lipspeech.training.data import synthetic_utterances

#: the synthetic utterances' sizes: the tiny model's
DIMS = {key: model_config("tiny")[key] for key in ("n_mels", "n_units")}

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _tiny_flow(dtype=torch.float32, seed=0) -> FlowPostNet:
    """A small flow with every parameter random (so no layer is trivially the identity)."""
    torch.manual_seed(seed)
    flow = FlowPostNet(
        channels=4, hidden=8, kernel_size=3, dilation_rate=2, wn_layers=2, blocks=2, cond_channels=3, group_size=2
    )
    with torch.no_grad():
        for module in flow.modules():
            if isinstance(module, AffineCoupling):
                module.post.weight.normal_(0, 0.2)
                module.post.bias.normal_(0, 0.2)
            if isinstance(module, ActNorm):
                module.logs.normal_(0, 0.3)
                module.bias.normal_(0, 0.3)
                module.initialized.fill_(True)
    return flow.to(dtype).eval()


def test_flow_reverse_inverts_forward_and_keeps_padding_at_zero():
    flow = _tiny_flow()
    torch.manual_seed(1)
    x = torch.randn(2, 4, 9)
    g = torch.randn(2, 3, 9)
    mask = lengths_to_mask(torch.tensor([9, 6]))[:, None, :].float()
    x = x * mask
    z, logdet = flow(x, mask, g)
    assert logdet.shape == (2,)
    assert torch.all(z[1, :, 6:] == 0)
    back, none = flow(z, mask, g, reverse=True)
    assert none is None
    torch.testing.assert_close(back, x, atol=1e-4, rtol=0)


def test_flow_logdet_equals_autograd_jacobian():
    flow = _tiny_flow(torch.float64)
    torch.manual_seed(2)
    c, t = 4, 3
    x = torch.randn(1, c, t, dtype=torch.float64)
    g = torch.randn(1, 3, t, dtype=torch.float64)
    mask = torch.ones(1, 1, t, dtype=torch.float64)
    _, logdet = flow(x, mask, g)

    def f(flat):
        return flow(flat.view(1, c, t), mask, g)[0].reshape(-1)

    jac = torch.autograd.functional.jacobian(f, x.reshape(-1))
    sign, logabsdet = torch.linalg.slogdet(jac)
    assert sign != 0
    torch.testing.assert_close(logdet[0], logabsdet, atol=1e-8, rtol=1e-8)
    # each layer on its own, too
    for layer in flow.flows:
        _, ld = layer(x, mask, g)

        def layer_out(v, layer=layer):
            return layer(v.view(1, c, t), mask, g)[0].reshape(-1)

        jac = torch.autograd.functional.jacobian(layer_out, x.reshape(-1))
        torch.testing.assert_close(ld[0], torch.linalg.slogdet(jac)[1], atol=1e-8, rtol=1e-8)


def test_zero_initialised_flow_is_identity_at_start():
    torch.manual_seed(0)
    x = torch.randn(2, 80, 12)
    g = torch.randn(2, 16, 12)
    mask = torch.ones(2, 1, 12)
    coupling = AffineCoupling(80, hidden=16, kernel_size=3, dilation_rate=2, layers=3, cond_channels=16)
    y, logdet = coupling(x, mask, g)
    assert torch.equal(y, x) and torch.all(logdet == 0)
    # a fresh post-net is volume preserving (ActNorm not yet fitted, 1x1 convs are rotations, couplings identity)
    flow = FlowPostNet(80, 16, 3, 2, 2, blocks=3, cond_channels=16).eval()
    z, logdet = flow(x, mask, g)
    torch.testing.assert_close(logdet, torch.zeros(2), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.norm(), x.norm(), atol=1e-3, rtol=1e-5)
    # and so the untrained model's refined mel at temperature 0 is exactly its coarse mel
    model = build_model(model_config("tiny")).eval()
    batch = collate(synthetic_utterances(2, [8, 5], seed=3, **DIMS))
    coarse, post = model.infer(batch.video, batch.video_lengths, temperature=0.0)
    torch.testing.assert_close(post, coarse, atol=1e-5, rtol=0)


def test_invconv_groups_span_both_coupling_halves():
    conv = InvConv1x1(8, group_size=4)
    x = torch.zeros(1, 8, 1)
    x[0, 0, 0] = 1.0  # a first-half channel ...
    y, _ = conv(x, torch.ones(1, 1, 1))
    assert torch.count_nonzero(y[0, 4:, 0]) > 0  # ... reaches the second half


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"upsample": "transposed"},
        {"frontend": "paper", "frontend_channels": [8, 8, 16, 16, 32]},
        {"frontend_downsample": 2},
    ],
    ids=["tiny", "transposed-upsample", "paper-frontend", "downsampled-input"],
)
def test_padding_does_not_change_valid_outputs(overrides):
    torch.manual_seed(0)
    model = build_model(model_config("tiny", overrides)).eval()
    short, long = synthetic_utterances(2, [11, 20], seed=5, **DIMS)
    alone = collate([short])
    padded = collate([short, long])
    assert padded.video.shape[1] == 20
    with torch.no_grad():
        a = model(alone, teacher_forcing=False)
        b = model(padded, teacher_forcing=False)
        a_tf = model(alone)
        b_tf = model(padded)
    t = 11
    torch.testing.assert_close(b.coarse_mel[0, : 4 * t], a.coarse_mel[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.unit_logits[0, : 2 * t], a.unit_logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.pitch[0, :t], a.pitch[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.energy[0, :t], a.energy[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b_tf.coarse_mel[0, : 4 * t], a_tf.coarse_mel[0], atol=1e-5, rtol=1e-5)
    assert torch.all(b.coarse_mel[0, 4 * t :] == 0)


def test_forward_shapes_losses_and_infer():
    torch.manual_seed(0)
    model = build_model(model_config("tiny"))
    batch = collate(synthetic_utterances(3, [7, 10, 4], seed=1, **DIMS))
    out = model(batch, sample_post=True)
    assert out.coarse_mel.shape == (3, 40, 80)
    assert out.post_mel.shape == (3, 40, 80)
    assert out.unit_logits.shape == (3, 20, 200)
    assert out.pitch.shape == out.energy.shape == (3, 10)
    assert set(out.losses) == {"mel_l1", "ling_ce", "pitch", "energy", "flow_nll", "total"}
    expected = sum(out.losses[k] for k in ("mel_l1", "ling_ce", "pitch", "energy", "flow_nll"))
    torch.testing.assert_close(out.losses["total"], expected)
    out.losses["total"].backward()
    assert model.visual_proj.weight.grad is not None
    model.eval()
    gen = torch.Generator().manual_seed(0)
    coarse, post = model.infer(batch.video, batch.video_lengths, temperature=0.5, generator=gen)
    assert coarse.shape == post.shape == (3, 40, 80)
    assert torch.all(post[2, 16:] == 0) and not torch.equal(post, coarse)


def test_distillation_losses_against_a_teacher():
    """A model taught by itself (eval mode, the same batch) has zero distillation losses; against
    another teacher the unit term is the KL divergence computed by hand, pitch and energy the L1/MSE to
    the teacher's values; the distilled total mixes each predictor's two losses by the weight."""
    torch.manual_seed(0)
    model = build_model(model_config("tiny")).eval()
    batch = collate(synthetic_utterances(3, [7, 10, 4], seed=1, **DIMS))
    out = model(batch)
    own = distill_losses(model, batch, out, teach(model, batch))
    assert set(own) == {"ling_ce", "pitch", "energy"}
    for v in own.values():
        assert float(v.detach()) == pytest.approx(0.0, abs=1e-5)
    torch.manual_seed(1)
    other = build_model(model_config("tiny")).eval()
    taught = teach(other, batch)
    assert not taught["unit_logits"].requires_grad
    d = distill_losses(model, batch, out, taught)
    umask = batch.unit_mask()
    p = torch.softmax(taught["unit_logits"][umask], -1)
    q = torch.softmax(out.unit_logits[umask], -1)
    kl = (p * (p.log() - q.log())).sum(-1).mean()
    torch.testing.assert_close(d["ling_ce"], kl)
    assert d["ling_ce"].item() > 0
    mask = batch.frame_mask()
    reg = (lambda a, b: (a - b) ** 2) if model.variance_loss == "mse" else (lambda a, b: (a - b).abs())
    torch.testing.assert_close(d["energy"], reg(out.energy, taught["energy"])[mask].mean())
    for w in (0.0, 0.25, 1.0):
        mixed = out.losses["mel_l1"] + out.losses["flow_nll"] * model.weights["flow_nll"] + sum(
            model.weights[k] * ((1 - w) * out.losses[k] + w * d[k]) for k in ("ling_ce", "pitch", "energy"))
        torch.testing.assert_close(distilled_total(model, out, d, w), mixed)
    assert torch.equal(distilled_total(model, out, d, 0.0), out.losses["total"])
    # with mels: the teacher's coarse mel (teacher-forced, its decoder whole clip), the student's L1 to it
    # mixed with the target mel's under the mel weight alone
    own = teach(model, batch, mels=True)
    torch.testing.assert_close(own["coarse_mel"], out.coarse_mel)
    assert float(distill_losses(model, batch, out, own)["mel_l1"].detach()) == pytest.approx(0.0, abs=1e-6)
    taught = teach(other, batch, mels=True)
    assert taught["coarse_mel"].shape == out.coarse_mel.shape and "coarse_mel" not in teach(other, batch)
    d = distill_losses(model, batch, out, taught)
    m = out.mel_mask
    torch.testing.assert_close(d["mel_l1"], (out.coarse_mel - taught["coarse_mel"]).abs()[m].mean())
    for w, mw in ((0.0, 0.5), (0.25, 1.0)):
        mixed = ((1 - mw) * out.losses["mel_l1"] + mw * d["mel_l1"] + out.losses["flow_nll"] * model.weights["flow_nll"]
                 + sum(model.weights[k] * ((1 - w) * out.losses[k] + w * d[k]) for k in ("ling_ce", "pitch", "energy")))
        torch.testing.assert_close(distilled_total(model, out, d, w, mw), mixed)


@pytest.mark.parametrize("switch", ["use_linguistic", "use_pitch", "use_energy", "use_postnet"])
def test_ablation_switches_remove_the_part(switch):
    torch.manual_seed(0)
    full = build_model(model_config("tiny"))
    model = build_model(model_config("tiny", {switch: False}))
    assert count_parameters(model) < count_parameters(full)
    batch = collate(synthetic_utterances(2, [6, 9], seed=2, **DIMS))
    out = model(batch)
    gone = {"use_linguistic": "ling_ce", "use_pitch": "pitch", "use_energy": "energy", "use_postnet": "flow_nll"}[switch]
    assert gone not in out.losses and "total" in out.losses
    attr = {"use_linguistic": out.unit_logits, "use_pitch": out.pitch, "use_energy": out.energy}.get(switch)
    assert attr is None
    model.eval()
    coarse, post = model.infer(batch.video, batch.video_lengths)
    if switch == "use_postnet":
        assert model.postnet is None and post is coarse


def test_collate_pads_checks_lengths_and_crops():
    items = synthetic_utterances(2, [5, 3], seed=0, **DIMS)
    batch = collate(items)
    assert batch.video.shape == (2, 5, 1, 88, 88)
    assert batch.mel.shape == (2, 20, 80) and batch.units.shape == (2, 10)
    assert batch.frame_mask().tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    assert batch.mel_mask().sum().item() == 32 and batch.unit_mask().sum().item() == 16
    assert torch.all(batch.video[1, 3:] == 0) and torch.all(batch.mel[1, 12:] == 0)
    video_only = collate([Utterance("v", items[0].video)])
    assert video_only.mel is None and video_only.units is None
    bad = Utterance("bad", items[0].video, mel=np.zeros((19, 80), np.float32))
    with pytest.raises(ValueError, match="bad: mel has 19 rows, expected 20"):
        collate([bad])


def test_model_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="model config key d_modle: unknown key") as err:
        model_config("tiny", {"d_modle": 3})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="enc_kernel: must be odd"):
        model_config("tiny", {"enc_kernel": 4})
    with pytest.raises(ConfigError, match="use_pitch: expected bool"):
        model_config("tiny", {"use_pitch": "no"})
    with pytest.raises(ConfigError, match="frontend_downsample: must be >= 1"):
        model_config("tiny", {"frontend_downsample": 0})
    with pytest.raises(ConfigError, match="preset 'huge'"):
        model_config("huge")
    assert set(PRESETS["tiny"]) == set(PRESETS["paper"])


def test_paper_preset_builds():
    cfg = model_config("paper")
    assert cfg["d_model"] == 384 and cfg["enc_heads"] == 6 and cfg["n_units"] == 200
    model = build_model(cfg)
    n = count_parameters(model)
    n_tiny = count_parameters(build_model(model_config("tiny")))
    print(f"\nparameters: paper {n:,} ({n / 1e6:.1f} M), tiny {n_tiny:,} ({n_tiny / 1e6:.2f} M)")
    assert 11e6 < count_parameters(model.frontend) < 12e6  # a ResNet-18 trunk
    assert 30e6 < n < 120e6


def test_small_preset_is_the_demo_model_and_runs_on_pooled_crops():
    from lipspeech.core.config import validate_config

    cfg = validate_config({})
    assert cfg["model"]["preset"] == "small" and [e["preset"] for e in cfg["experiments"]] == ["small"]
    small = model_config("small")
    assert small["frontend_downsample"] == 2 and set(small) == set(PRESETS["paper"])
    torch.manual_seed(0)
    model = build_model(small).eval()
    n = count_parameters(model)
    assert count_parameters(build_model(model_config("tiny"))) < n < count_parameters(build_model(model_config("paper")))
    batch = collate(synthetic_utterances(2, [9, 5], seed=2, **DIMS))
    coarse, post = model.infer(batch.video, batch.video_lengths, temperature=0.667)
    assert coarse.shape == post.shape == (2, 36, 80)
    assert torch.all(post[1, 20:] == 0) and torch.isfinite(post).all()


@pytest.mark.parametrize("kind, channels, side", [("tiny", [8, 16], 44), ("paper", [8, 8, 16, 16, 32], 88)])
def test_stem_at_valid_frames_equals_the_3d_convolution_of_the_padded_batch(kind, channels, side):
    from lipspeech.models.frontend import _stem, _valid_index, build_frontend

    torch.manual_seed(0)
    conv3d = build_frontend(kind, channels).conv3d
    lengths = torch.tensor([9, 4, 7])
    mask = lengths_to_mask(lengths, 9)
    video = torch.randn(3, 9, 1, side, side) * mask[:, :, None, None, None]
    expected = conv3d(video.transpose(1, 2)).transpose(1, 2)[mask]  # every frame, then the valid ones
    got = _stem(conv3d, video, _valid_index(mask))
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # the gradient reaches the conv3d weight as the 3D convolution's does
    (g_expected,) = torch.autograd.grad(expected.square().sum(), conv3d.weight)
    (g_got,) = torch.autograd.grad(_stem(conv3d, video, _valid_index(mask)).square().sum(), conv3d.weight)
    torch.testing.assert_close(g_got, g_expected, rtol=1e-4, atol=1e-3)


def test_dropout_rate_scale_gradient_and_seed():
    from lipspeech.models.dropout import Dropout

    layer = Dropout(0.1)
    x = torch.ones(400_000, requires_grad=True)
    torch.manual_seed(3)
    y = layer(x)
    kept = y != 0
    drop = round(0.1 * 65536) / 65536
    # binomial: 400k draws, sd of the rate 4.7e-4; 5 sd
    assert abs(1 - kept.float().mean().item() - drop) < 2.4e-3
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - drop)))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * noise)/dx = noise
    torch.manual_seed(3)
    assert torch.equal(layer(x), y)  # the global generator decides: seeded runs repeat
    layer.eval()
    assert layer(x) is x
    assert Dropout(0.0)(x) is x
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        Dropout(1.5)
