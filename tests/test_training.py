"""Training core: overfitting, exact resume, run directory contents, data order, synthesis."""

import csv
import json
import random

import numpy as np
import pytest
import torch

from lipspeech.core.config import ConfigError
from lipspeech.models import model_config
from lipspeech.training import (
    epoch_batches,
    load_checkpoint,
    load_model,
    save_checkpoint,
    synthesize,
    synthetic_utterances,
    train,
    train_config,
)
from lipspeech.training.trainer import clip_gradients, lr_lambda, make_optimizer

QUIET = {"progress": False, "tensorboard": False}
#: the synthetic utterances' sizes: the tiny model's
DIMS = {key: model_config("tiny")[key] for key in ("n_mels", "n_units")}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _rows(path, split="train"):
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["split"] == split]


def test_tiny_model_overfits_four_utterances(tmp_path):
    items = synthetic_utterances(4, 16, seed=0, **DIMS)
    mcfg = model_config("tiny", {"dropout": 0.0, "var_dropout": 0.0})
    tcfg = train_config(
        {**QUIET, "batch_size": 4, "max_steps": 60, "lr": 3e-3, "warmup_steps": 10, "decay": "constant",
         "weight_decay": 0.0, "log_every": 1, "val_every": 60, "random_crop": False, "hflip": False}
    )
    result = train(mcfg, tcfg, items, items, tmp_path / "run")
    mel = [row["mel_l1"] for row in result.history if row["split"] == "train"]
    first, last = mel[0], float(np.mean(mel[-5:]))
    val = [row for row in result.history if row["split"] == "val"][0]
    print(f"\nmel L1: step 1 {first:.3f} -> steps 56-60 {last:.3f} ({first / last:.1f}x); "
          f"val (teacher-forced) {val['mel_l1']:.3f}, free-running {val['mel_l1_free']:.3f}; "
          f"flow NLL {result.history[0]['flow_nll']:.3f} -> {result.history[-2]['flow_nll']:.3f}")
    assert first / last >= 5.0
    assert result.history[-2]["flow_nll"] < result.history[0]["flow_nll"]
    # validation also measures how predictable the units are (top-1 accuracy of the unit
    # logits); on the utterances it was fitted to it is far above chance (1 / n_units)
    chance = 1.0 / mcfg["n_units"]
    print(f"val unit accuracy {val['unit_acc']:.3f} (chance {chance:.3f})")
    assert 10 * chance < val["unit_acc"] <= 1.0
    best = load_checkpoint(tmp_path / "run" / "ckpt" / "best.pt")["best"]
    assert best["step"] == 60 and best["val"]["unit_acc"] == val["unit_acc"]


def _resume_cfg(**overrides):
    # dropout on, random crops and flips, 5 items in batches of 2 (epochs roll over mid-run
    # with a partial batch), cosine schedule: everything resume must restore
    return train_config(
        {**QUIET, "batch_size": 2, "max_steps": 7, "lr": 1e-3, "warmup_steps": 2, "decay": "cosine",
         "log_every": 1, "val_every": 3, "ckpt_every": 0, "seed": 7, **overrides}
    )


def test_interrupt_and_resume_is_exact(tmp_path):
    items = synthetic_utterances(5, [6, 9, 7, 8, 5], seed=1, **DIMS)
    val = synthetic_utterances(2, [5, 6], seed=2, **DIMS)
    mcfg = model_config("tiny")
    tcfg = _resume_cfg()

    whole = train(mcfg, tcfg, items, val, tmp_path / "whole")
    assert whole.step == 7

    part = train(mcfg, tcfg, items, val, tmp_path / "split", stop_at_step=4)
    assert part.step == 4
    assert load_checkpoint(part.last_checkpoint)["step"] == 4
    # a fresh process: nothing carried over in the global generators
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    rest = train(mcfg, tcfg, items, val, tmp_path / "split")
    assert rest.step == 7

    a = {int(r["step"]): r for r in _rows(tmp_path / "whole" / "losses.csv")}
    b = {int(r["step"]): r for r in _rows(tmp_path / "split" / "losses.csv")}
    assert sorted(a) == sorted(b) == list(range(1, 8))
    exact = all(a[s]["total"] == b[s]["total"] for s in a)
    print(f"\nstep 5 total loss: uninterrupted {a[5]['total']}, resumed {b[5]['total']} (bit-identical: {exact})")
    for step in range(1, 8):
        for key in ("total", "mel_l1", "ling_ce", "pitch", "energy", "flow_nll", "lr", "grad_norm"):
            assert float(a[step][key]) == pytest.approx(float(b[step][key]), abs=1e-6, rel=0), (step, key)
    sa = load_checkpoint(whole.last_checkpoint)["model"]
    sb = load_checkpoint(rest.last_checkpoint)["model"]
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], atol=1e-6, rtol=0)
    assert _rows(tmp_path / "whole" / "losses.csv", "val") and whole.best_step == rest.best_step


def test_data_loader_workers_do_not_change_the_run(tmp_path):
    items = synthetic_utterances(4, [6, 9, 7, 5], seed=1, **DIMS)
    losses = []
    for workers in (0, 1):
        cfg = _resume_cfg(max_steps=3, val_every=10, num_workers=workers, bucket=True)
        result = train(model_config("tiny"), cfg, items, None, tmp_path / f"w{workers}")
        losses.append([row["total"] for row in result.history])
    assert losses[0] == losses[1]


def test_resume_refuses_a_different_model(tmp_path):
    items = synthetic_utterances(2, 5, seed=0, **DIMS)
    train(model_config("tiny"), _resume_cfg(max_steps=1, val_every=10), items, None, tmp_path / "r")
    with pytest.raises(ConfigError, match="d_model: differs from the checkpoint"):
        train(model_config("tiny", {"d_model": 32}), _resume_cfg(max_steps=2), items, None, tmp_path / "r")


def test_a_teacher_of_other_units_mels_or_speakers_is_refused(tmp_path):
    from lipspeech.training.trainer import load_teacher

    items = synthetic_utterances(2, 5, seed=0, **DIMS)
    ckpt = train(model_config("tiny"), _resume_cfg(max_steps=1, val_every=10), items, None, tmp_path / "t").last_checkpoint
    teacher = load_teacher(ckpt, model_config("tiny"), torch.device("cpu"))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for key, value in (("n_units", 7), ("n_mels", 40), ("n_speakers", 3)):
        with pytest.raises(ConfigError, match=f"model key {key} is {DIMS.get(key, 0)} there, {value} here"):
            load_teacher(ckpt, model_config("tiny", {key: value}), torch.device("cpu"))


def test_run_directory_and_synthesis(tmp_path):
    items = synthetic_utterances(3, [6, 8, 5], seed=3, **DIMS)
    run = tmp_path / "run"
    result = train(
        model_config("tiny"), train_config({"batch_size": 2, "max_steps": 2, "val_every": 1, "log_every": 1,
                                            "progress": False, "tensorboard": True}),
        items, items[:2], run,
    )
    config = json.loads((run / "config.json").read_text())
    assert set(config) >= {"model", "train", "git_commit", "lipspeech_version"}
    assert config["model"]["d_model"] == 64 and config["git_commit"]
    assert (run / "ckpt" / "last.pt").exists() and result.best_checkpoint == run / "ckpt" / "best.pt"
    assert any((run / "tb").iterdir())
    header = (run / "losses.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["step", "split", "lr", "grad_norm"] and "flow_nll" in header and "mel_l1_free" in header
    assert {r["split"] for r in csv.DictReader(open(run / "losses.csv"))} == {"train", "val"}

    model = load_model(result.best_checkpoint).model
    out = synthesize(model, items, temperature=0.5, seed=1)
    again = synthesize(model, items, temperature=0.5, seed=1)
    assert [o.utt for o in out] == [it.utt for it in items]
    for o, o2, it in zip(out, again, items):
        assert o.coarse.shape == o.post.shape == (4 * it.n_frames, 80)
        np.testing.assert_array_equal(o.post, o2.post)
    cold = synthesize(model, items[:1], temperature=0.0)
    assert np.isfinite(cold[0].post).all()


def _net_with_grads(seed):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.LayerNorm(7), torch.nn.Linear(7, 3))
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    return net


def test_optimizer_is_fused_and_makes_the_reference_adamw_update():
    cfg = train_config({"weight_decay": 0.05})
    net, ref_net = _net_with_grads(0), _net_with_grads(0)
    opt = make_optimizer(net, cfg)
    assert all(g["fused"] for g in opt.param_groups)
    # torch's per-parameter loop, with the same groups (decay on matrices only)
    ref = torch.optim.AdamW([{"params": [p for p in ref_net.parameters() if p.dim() >= 2], "weight_decay": 0.05},
                             {"params": [p for p in ref_net.parameters() if p.dim() < 2], "weight_decay": 0.0}],
                            lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"], foreach=False)
    start = [p.detach().clone() for p in net.parameters()]
    for _ in range(5):
        opt.step()
        ref.step()
    for p, q, p0 in zip(net.parameters(), ref_net.parameters(), start):
        assert not torch.equal(p, p0)
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    # a run begun with the loop resumes with the loop: the saved state carries the implementation
    loop_state = ref.state_dict()
    again = make_optimizer(ref_net, cfg)
    again.load_state_dict(loop_state)
    assert not any(g["fused"] for g in again.param_groups)


def test_clip_gradients_measures_and_clips_the_global_norm():
    net = _net_with_grads(1)
    grads = [p.grad.clone() for p in net.parameters()]
    norm = float(torch.cat([g.flatten() for g in grads]).double().norm())
    assert clip_gradients(list(net.parameters()), float("inf")) == pytest.approx(norm, rel=1e-6)
    assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), grads))  # inf: measured only
    assert clip_gradients(list(net.parameters()), norm / 4) == pytest.approx(norm, rel=1e-6)
    for p, g in zip(net.parameters(), grads):
        torch.testing.assert_close(p.grad, g / 4, rtol=1e-5, atol=1e-7)


def test_epoch_batches_are_seeded_permutations():
    plain = {"bucket_window": 50, "drop_last": False}
    a = epoch_batches(10, 3, seed=1, epoch=0, **plain)
    assert a == epoch_batches(10, 3, seed=1, epoch=0, **plain)
    assert a != epoch_batches(10, 3, seed=1, epoch=1, **plain)
    assert sorted(i for b in a for i in b) == list(range(10)) and [len(b) for b in a] == [3, 3, 3, 1]
    assert [len(b) for b in epoch_batches(10, 3, 1, 0, bucket_window=50, drop_last=True)] == [3, 3, 3]
    lengths = [5, 50, 6, 51, 7, 52, 8, 53]
    bucketed = epoch_batches(8, 2, seed=0, epoch=0, lengths=lengths, **plain)
    assert sorted(i for b in bucketed for i in b) == list(range(8))
    for b in bucketed:  # similar lengths share a batch
        assert abs(lengths[b[0]] - lengths[b[1]]) < 10


def test_lr_schedule_warms_up_then_decays():
    f = lr_lambda(train_config({"warmup_steps": 10, "max_steps": 110, "decay": "cosine", "min_lr_ratio": 0.1}))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    g = lr_lambda(train_config({"warmup_steps": 0, "decay": "exp", "exp_decay_rate": 0.5, "exp_decay_steps": 100}))
    assert g(100) == pytest.approx(0.5) and g(200) == pytest.approx(0.25)


def test_train_config_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="train config key lr_max: unknown key"):
        train_config({"lr_max": 1.0})
    with pytest.raises(ConfigError, match="decay: 'linear' is not one of"):
        train_config({"decay": "linear"})


def test_the_same_checkpoint_state_gives_the_same_bytes(tmp_path):
    # checkpoints are hashed downstream (synthesize's config hash): identical runs, identical files
    state = {"step": 3, "model": {"w": torch.arange(6.0).reshape(2, 3)}, "rng": {"torch": torch.get_rng_state()}}
    save_checkpoint(tmp_path / "a.pt", state)
    save_checkpoint(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(load_checkpoint(tmp_path / "b.pt")["model"]["w"], state["model"]["w"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rng_states_of_a_checkpoint_loaded_onto_the_gpu_restore(tmp_path):
    # the loop resumes a CUDA run from last.pt loaded with map_location the GPU: the RNG states come
    # back as CUDA tensors, which numpy and torch's set_rng_state take from the CPU only
    from lipspeech.training.checkpoint import capture_rng, restore_rng

    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng()})
    draws = (random.random(), np.random.rand(), torch.rand(3), torch.rand(3, device="cuda").cpu())
    state = load_checkpoint(tmp_path / "rng.pt", map_location="cuda")["rng"]
    assert state["torch"].is_cuda
    restore_rng(state)
    again = (random.random(), np.random.rand(), torch.rand(3), torch.rand(3, device="cuda").cpu())
    assert draws[:2] == again[:2] and torch.equal(draws[2], again[2]) and torch.equal(draws[3], again[3])
