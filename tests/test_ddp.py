"""Data-parallel training: 2 CPU processes (gloo) take the steps of 1 process on the same global batch."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from needs import free_port
from test_stage_train import EXP, TRAIN_STORE_ARGS, fake_results, store_args
from test_stage_train import MODEL as STAGE_MODEL
from test_stage_train import TRAIN as STAGE_TRAIN

from lipspeech.core.runtime import seed_everything
from lipspeech.models import build_model, model_config
from lipspeech.training import epoch_batches, load_checkpoint, synthetic_utterances, train, train_config
from lipspeech.training.distributed import AllReduceBatchNorm, DistInfo, process_group, shard_batches

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

# no dropout (each rank draws its own masks); random crops and flips stay on: they are keyed
# by the global (epoch, batch, item), so they must come out the same. 8 items of one length in
# batches of 4: every rank's slice has as many frames, and 3 steps cross an epoch boundary.
# Adam's eps is raised from 1e-9: with a tiny eps a near-zero gradient (the convolutions before
# BatchNorm have them) becomes a +-lr step whatever its rounding, which turns float noise into
# 1e-4 parameter differences; with 1e-3 the step stays proportional to the gradient.
MODEL = {"dropout": 0.0, "var_dropout": 0.0}
#: the synthetic utterances' sizes: the tiny model's
DIMS = {key: model_config("tiny")[key] for key in ("n_mels", "n_units")}
TRAIN = {"batch_size": 4, "max_steps": 3, "lr": 1e-3, "warmup_steps": 1, "decay": "constant", "eps": 1e-3,
         "log_every": 1, "val_every": 3, "ckpt_every": 0, "seed": 11, "device": "cpu", "threads": 1,
         "progress": False, "tensorboard": False, "val_free_running": False, "best_metric": "mel_l1"}


def _data():
    return synthetic_utterances(8, 6, seed=3, **DIMS), synthetic_utterances(2, 6, seed=4, **DIMS)


def _worker(rank: int, world: int, port: int, run_dir: str, overrides: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    items, val = _data()
    with process_group("cpu") as info:
        assert info is not None and info.world_size == world
        train(model_config("tiny", MODEL), train_config({**TRAIN, **overrides}), items, val, run_dir)


class _Recording:
    """The train utterances, writing down which indices the training process reads."""

    def __init__(self, items, path):
        self.items, self.path = items, path

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        with open(self.path, "a") as fh:
            fh.write(f"{i}\n")
        return self.items[i]


def _recording_worker(rank: int, world: int, port: int, run_dir: str, steps: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    items = _Recording(synthetic_utterances(7, 6, seed=3, **DIMS), f"{run_dir}.rank{rank}")
    with process_group("cpu"):
        train(model_config("tiny", MODEL), train_config({**TRAIN, "max_steps": steps, "val_every": steps}), items,
              synthetic_utterances(2, 6, seed=4, **DIMS), run_dir)


def test_two_gloo_ranks_train_on_disjoint_utterances_and_together_on_all(tmp_path):
    # 7 utterances in global batches of 4: an epoch is [4, 3] -> 2 steps on each of the 2 ranks
    run = tmp_path / "ddp"
    mp.spawn(_recording_worker, args=(2, free_port(), str(run), 2), nprocs=2, join=True)
    seen = [[int(x) for x in (tmp_path / f"ddp.rank{r}").read_text().split()] for r in range(2)]
    print(f"\nrank 0 read {seen[0]}, rank 1 read {seen[1]}")
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(7))
    assert load_checkpoint(run / "ckpt" / "last.pt")["step"] == 2


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    items, val = _data()
    mcfg = model_config("tiny", MODEL)
    single = train(mcfg, train_config(TRAIN), items, val, tmp_path / "single")
    half = train(mcfg, train_config({**TRAIN, "batch_size": 2}), items, val, tmp_path / "half")

    mp.spawn(_worker, args=(2, free_port(), str(tmp_path / "ddp"), {}), nprocs=2, join=True)

    ddp_ckpt = load_checkpoint(tmp_path / "ddp" / "ckpt" / "last.pt")
    one = load_checkpoint(single.last_checkpoint)["model"]
    other = load_checkpoint(half.last_checkpoint)["model"]
    assert ddp_ckpt["step"] == 3 and len(ddp_ckpt["rng_ranks"]) == 2
    worst, moved, sensitive = 0.0, 0.0, 0.0
    for name, value in one.items():
        if not value.is_floating_point():
            assert torch.equal(value, ddp_ckpt["model"][name]), name
            continue
        worst = max(worst, float((value - ddp_ckpt["model"][name]).abs().max()))
        sensitive = max(sensitive, float((value - other[name]).abs().max()))
    seed_everything(TRAIN["seed"])
    for name, value in build_model(mcfg).state_dict().items():
        if value.is_floating_point():
            moved = max(moved, float((value - one[name]).abs().max()))
    print(f"\nmax |param diff|: DDP vs single {worst:.2e}; single vs half batch {sensitive:.2e}; "
          f"moved from init {moved:.2e}")
    assert moved > 1e-3  # the steps changed the model
    assert sensitive > 1e-3  # another batch gives other parameters: the comparison can tell
    assert worst < 1e-5
    # BatchNorm running statistics (buffers) too: the global batch's
    bn = [k for k in one if k.endswith("running_var")]
    assert bn and all(torch.allclose(one[k], ddp_ckpt["model"][k], atol=1e-5) for k in bn)
    # the logged train losses are the global batch's
    ddp_rows = (tmp_path / "ddp" / "losses.csv").read_text().splitlines()
    one_rows = (tmp_path / "single" / "losses.csv").read_text().splitlines()
    assert len(ddp_rows) == len(one_rows)
    for a, b in zip(ddp_rows[1:], one_rows[1:]):
        fa, fb = a.split(","), b.split(",")
        assert fa[:2] == fb[:2]
        assert all(abs(float(x) - float(y)) < 1e-4 for x, y in zip(fa[2:], fb[2:]) if x and y)


def test_shard_batches_slices_each_batch_and_merges_too_small_ones():
    batches = [[0, 1, 2, 3, 4], [5, 6], [7]]
    assert shard_batches(batches, DistInfo(0, 2, 0)) == [[0, 2, 4], [5, 7]]
    assert shard_batches(batches, DistInfo(1, 2, 1)) == [[1, 3], [6]]
    # a too-small first batch joins the next; an epoch smaller than the world is dropped
    assert shard_batches([[9], [0, 1, 2]], DistInfo(1, 2, 1)) == [[0, 2]]
    assert shard_batches([[3]], DistInfo(0, 2, 0)) == []


@pytest.mark.parametrize("bucket", [False, True])
def test_ranks_see_disjoint_utterances_and_together_all_of_them(bucket):
    # every epoch of a seeded, possibly bucketed order, for 2 and 3 ranks: what each rank trains on
    lengths = [int(x) for x in np.random.default_rng(0).integers(5, 60, 23)]
    for world in (2, 3):
        for epoch in range(4):
            batches = epoch_batches(23, 4, 7, epoch, lengths if bucket else None, bucket_window=3, drop_last=False)
            per_rank = [shard_batches(batches, DistInfo(r, world, r)) for r in range(world)]
            assert len({len(b) for b in per_rank}) == 1  # the same number of steps on every rank
            seen = [[i for b in rank for i in b] for rank in per_rank]
            assert sum(len(s) for s in seen) == 23 and set().union(*map(set, seen)) == set(range(23))


def test_all_reduce_batchnorm_statistics_are_batchnorms(monkeypatch):
    """The all-reduce path's own arithmetic (per-channel sums, biased variance for the output,
    unbiased for the running variance, affine, gradients) against torch's BatchNorm: in one process
    it would fall back to torch's, so here it runs as a rank whose sums over ranks are its own."""
    from lipspeech.training import distributed

    monkeypatch.setattr(distributed, "dist_info", lambda: DistInfo(0, 1, 0))
    monkeypatch.setattr(distributed, "sum_over_ranks", lambda t, differentiable=False: t)
    torch.manual_seed(0)
    ref, ours = torch.nn.BatchNorm2d(3), AllReduceBatchNorm(3)
    with torch.no_grad():
        for bn in (ref, ours):
            bn.weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
            bn.bias.copy_(torch.tensor([0.1, -0.3, 0.7]))
    x = (torch.randn(4, 3, 5, 5) * 3 + 5).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    upstream = torch.randn(4, 3, 5, 5)
    for _ in range(2):  # two updates of the running statistics
        out_ref, out = ref(x), ours(x2)
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
    (out_ref * upstream).sum().backward()
    (out * upstream).sum().backward()
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name))
    assert not torch.allclose(ours.running_var, torch.ones(3))  # the statistics did move


def test_train_command_with_nproc_runs_under_torchrun(tmp_path):
    """`lipspeech train --nproc 2` (what the Snakemake rule runs): 2 ranks, rank 0 writes and reports once."""
    results = fake_results(tmp_path / "results" / "fake")
    run_dir = results / "models" / "ltbs"
    params = json.dumps({"model": STAGE_MODEL, "train": STAGE_TRAIN})
    cmd = [sys.executable, "-m", "lipspeech.cli", "train", "--params", params, "--exp", "ltbs",
           "--experiment", json.dumps(EXP), *store_args(results, *TRAIN_STORE_ARGS, stats=True), "--run-dir", str(run_dir),
           "--threads", "2", "--nproc", "2", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "2 processes (DDP)" in out and "data-parallel: 2 processes" in out
    assert out.count("train ltbs: 4 steps") == 1  # the summary comes from rank 0 only
    last = load_checkpoint(run_dir / "ckpt" / "last.pt")
    assert last["step"] == 4 and len(last["rng_ranks"]) == 2
    assert (run_dir / "ckpt" / "best.pt").exists() and (run_dir / "ckpt" / "best.kept.pt").exists()
    assert json.loads((run_dir / "config.json").read_text())["world_size"] == 2
    rows = [line.split(",")[:2] for line in (run_dir / "losses.csv").read_text().splitlines()[1:]]
    assert rows == [["1", "train"], ["2", "train"], ["2", "val"], ["3", "train"], ["4", "train"], ["4", "val"]]
