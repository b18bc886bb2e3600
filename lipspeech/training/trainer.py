"""Training the LTBS model: AdamW + warmup/decay, clipping, bf16 autocast, seeded augmentation.

:class:`LTBSTask` is the acoustic model's part of the one training loop
(:mod:`lipspeech.training.loop`: resume, validation, best/last checkpoints, logs);
:func:`train` runs it. The run directory's ``losses.csv`` has ``step, split, lr,
grad_norm, pad_frac`` (the batch's share of padded frames) and every loss of
:data:`~lipspeech.training.config.LOSS_NAMES`, and
the validation rows also ``mel_l1_free`` and ``unit_acc`` (:func:`evaluate`).

Under torchrun (``lipspeech train --nproc N``) the same loop runs data-parallel:
see :mod:`lipspeech.training.distributed`. Rank 0 validates, logs and writes the
checkpoints; ``last.pt`` then also keeps every rank's RNG state (``rng_ranks``).
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch

from lipspeech.core.config import ConfigError
from lipspeech.core.runtime import resolve_device
from lipspeech.core.settings import TrainConfig
from lipspeech.models.batch import Batch, Utterance, collate
from lipspeech.models.distill import distill_losses, distilled_total, teach
from lipspeech.models.ltbs import LTBSModel, build_model
from lipspeech.models.presets import check_model_config
from lipspeech.training.bundle import ADDED_MODEL_KEYS, load_model, start_from
from lipspeech.training.config import LOSS_NAMES, check_train_config, train_settings
from lipspeech.training.data import as_sequence, augment, epoch_batches, item_lengths
from lipspeech.training.distributed import (
    DistInfo,
    all_true,
    dist_info,
    mean_over_ranks,
    shard_batches,
    sync_batchnorm,
)
from lipspeech.training.ema import WeightAverage
from lipspeech.training.loop import LoopSettings, Task, TrainResult, run_loop

__all__ = ["LTBSTask", "TrainResult", "evaluate", "lr_lambda", "make_optimizer", "train"]

# validation metrics that are not losses (higher is better): top-1 accuracy of the unit logits
METRIC_NAMES = ("unit_acc",)
# pad_frac: the share of the batch's video frames that are padding (what bucketing saves)
CSV_COLUMNS = ("step", "split", "lr", "grad_norm", "pad_frac") + LOSS_NAMES + METRIC_NAMES


def lr_lambda(cfg: Mapping[str, Any] | TrainConfig):
    """Learning-rate factor per completed optimiser step: linear warmup, then decay."""
    t = train_settings(cfg)
    warmup, total = t.warmup_steps, t.max_steps
    decay, floor = t.decay, t.min_lr_ratio
    rate, every = t.exp_decay_rate, t.exp_decay_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if decay == "constant":
            return 1.0
        after = step - warmup
        if decay == "exp":
            return max(floor, rate ** (after / every))
        progress = min(1.0, after / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def make_optimizer(model: torch.nn.Module, cfg: Mapping[str, Any] | TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norm gains and other 1-D parameters.

    The fused implementation (one kernel per parameter for the whole update) where torch has it
    for the parameters' device (CPU and CUDA): on CPU torch's default is a Python loop of five to
    seven operators per parameter, 4x slower for the ``small`` preset's 265 parameters (about 8 %
    of its training step; benchmarks/README.md). The same update up to float rounding. A run
    resumed from a checkpoint keeps the implementation it was started with (the optimizer's
    saved state carries it), so resuming stays exact.
    """
    t = train_settings(cfg)
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=t.lr, betas=tuple(t.betas), eps=t.eps,
                             fused=fused_supported(decay + no_decay) or None)


def fused_supported(params: Sequence[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW takes these parameters (floating point, on CPU or CUDA, one device)."""
    devices = {p.device.type for p in params}
    return bool(params) and len(devices) == 1 and devices <= {"cpu", "cuda"} and \
        all(p.is_floating_point() for p in params)


def clip_gradients(params: Sequence[torch.Tensor], max_norm: float) -> float:
    """Clip the gradients' global L2 norm to ``max_norm`` (inf: only measure it); the norm before.

    torch's foreach kernels (two for all parameters instead of two per parameter: 0.65x the
    time on CPU, where ``clip_grad_norm_`` does not use them by default); the same norm up to
    float rounding.
    """
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True))


def autocast_for(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (when asked for and supported); nothing elsewhere."""
    if bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _Augmented(torch.utils.data.Dataset):
    """Dataset view indexed by (item, epoch, batch) that applies the seeded augmentation."""

    def __init__(self, data: Sequence[Utterance], cfg: TrainConfig):
        self.data, self.cfg = data, cfg

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int, int]) -> Utterance:
        index, epoch, batch = key
        cfg = self.cfg
        return augment(self.data[index], cfg.seed, epoch, batch, index, cfg.random_crop, cfg.hflip,
                       cfg.time_mask_max_frames, cfg.time_masks_per_second, cfg.lead_in_max_frames)


def _train_batches(data: _Augmented, batches: list[list[int]], epoch: int, start: int, workers: int) -> Iterator[Batch]:
    keyed = [[(i, epoch, b) for i in batches[b]] for b in range(start, len(batches))]
    if workers == 0:
        for keys in keyed:
            yield collate([data[k] for k in keys])
        return
    # its own generator: a DataLoader otherwise draws its worker seed from the global torch RNG,
    # which would shift the dropout stream and break exact resume
    generator = torch.Generator().manual_seed(data.cfg.seed * 1_000_003 + epoch)
    loader = torch.utils.data.DataLoader(
        data, batch_sampler=keyed, collate_fn=collate, num_workers=workers, generator=generator
    )
    yield from loader


@torch.no_grad()
def evaluate(
    model: LTBSModel,
    data: Sequence[Utterance],
    batch_size: int,
    device: torch.device,
    bf16: bool,
    free_running: bool,
    max_batches: int,
) -> dict[str, float]:
    """Mean validation losses (teacher-forced), weighted by utterances (``bf16``, ``free_running`` and
    ``max_batches``: the train section's bf16, val_free_running and val_max_batches; 0: every batch).

    With ``free_running``, also ``mel_l1_free``: coarse-mel L1 when units, pitch
    and energy are the model's own predictions, as at inference. With the linguistic
    predictor on, also ``unit_acc``: the share of 50 Hz frames whose most likely unit is
    the target unit (how predictable the units are from the video).
    """
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    for b, start in enumerate(range(0, len(data), batch_size)):
        if max_batches and b >= max_batches:
            break
        batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))]).to(device)
        with autocast_for(device, bf16):
            out = model(batch)
            losses = {k: float(v) for k, v in out.losses.items()}
            if out.unit_logits is not None and batch.units is not None:
                umask = batch.unit_mask()
                losses["unit_acc"] = float((out.unit_logits.argmax(-1) == batch.units)[umask].float().mean())
            if free_running:
                losses["mel_l1_free"] = float(model(batch, teacher_forcing=False).losses["mel_l1"])
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v * len(batch)
        count += len(batch)
    model.train(was_training)
    return {k: v / max(count, 1) for k, v in sums.items()}


class LTBSTask(Task):
    """The LTBS acoustic model in the training loop.

    Args:
        model_cfg: checked flat model config.
        cfg: checked training config (the mapping checkpoints store; read as ``train``, a
            :class:`~lipspeech.core.settings.TrainConfig`).
        data, val: train and validation utterances (val None: no validation).
        device: where to train.
        ddp: this process's place in a data-parallel run (None: one process).
        bundle: what using the model needs, stored in every checkpoint.
    """

    columns = CSV_COLUMNS
    shown = {"loss": "total", "mel": "mel_l1"}

    def __init__(self, model_cfg: Mapping[str, Any], cfg: Mapping[str, Any], data: Sequence[Utterance],
                 val: Optional[Sequence[Utterance]], device: torch.device, ddp: Optional[DistInfo],
                 bundle: Optional[Mapping[str, Any]], init: Optional[Path] = None,
                 teacher: Optional[Path] = None, distill_weight: float = 0.0, init_align: Optional[bool] = None,
                 distill_mel_weight: Optional[float] = None):
        self.model_cfg, self.cfg, self.data, self.val = dict(model_cfg), dict(cfg), data, val
        self.device, self.ddp, self.bundle, self.init = device, ddp, dict(bundle or {}), init
        self.teacher_path, self.distill_weight, self.init_align = teacher, float(distill_weight), bool(init_align)
        self.distill_mel_weight = float(distill_mel_weight or 0.0)  # None: the mels learn from the targets only
        self.teacher: Optional[LTBSModel] = None
        self.train = train = train_settings(cfg)
        self.best_metric = train.best_metric
        self.lengths = item_lengths(data) if train.bucket else None
        self.augmented = _Augmented(data, train)

    def build(self) -> None:
        self.model = build_model(self.model_cfg).to(self.device)
        if self.ddp is not None:
            self.model = sync_batchnorm(self.model, self.device.type == "cuda")
        self.optimizer = make_optimizer(self.model, self.train)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(self.train))
        self.net: torch.nn.Module = self.model
        self.ema = WeightAverage(self.model, self.train.ema_decay) if self.train.ema_decay > 0 else None
        if self.teacher_path is not None:
            self.teacher = load_teacher(self.teacher_path, self.model_cfg, self.device)

    def check_resume(self, ckpt: Mapping[str, Any], path: Path) -> None:
        saved = {**ADDED_MODEL_KEYS, **ckpt["model_cfg"]}  # a run begun before keys were added
        if check_model_config(saved) != self.model_cfg:
            changed = sorted(k for k in self.model_cfg if saved.get(k) != self.model_cfg[k])
            raise ConfigError(f"model config key {changed[0]}: differs from the checkpoint in {path} "
                              "(use a new run directory or resume=False)")

    def load_state(self, ckpt: Mapping[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])

    def start(self, resumed: bool) -> None:
        ddp = self.ddp
        if self.init is not None and not resumed:  # a resumed run has its own weights already
            copied, kept, aligned = start_from(self.model, self.init, self.init_align)
            if not copied:
                raise ConfigError(f"init_from {self.init}: no parameter of it fits this model")
            if self.ema is not None:
                self.ema = WeightAverage(self.model, self.train.ema_decay)  # the average starts from them too
            if ddp is None or ddp.is_main:
                print(f"started from {self.init}: {len(copied)} tensors copied, {len(kept)} initialised afresh"
                      + (f" ({', '.join(kept[:4])}{', ...' if len(kept) > 4 else ''})" if kept else "")
                      + (f"; {len(aligned)} causal kernels aligned in time" if aligned else ""), flush=True)
        if ddp is not None:
            if not resumed and ddp.rank > 0:
                torch.manual_seed(self.train.seed + 1_000_003 * ddp.rank)  # its own dropout masks, same initial model
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.model.train()

    def state(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()  # what validation scored and inference loads (bundle.load_model)
        return state

    def record(self) -> dict[str, Any]:
        return {"model_cfg": self.model_cfg, "train_cfg": self.cfg, "bundle": self.bundle}

    def run_config(self) -> dict[str, Any]:
        return {"model": self.model_cfg, "train": self.cfg}

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        cfg = self.train
        batches = epoch_batches(len(self.data), cfg.batch_size, cfg.seed, epoch, self.lengths,
                                bucket_window=cfg.bucket_window, drop_last=cfg.drop_last)
        if self.ddp is not None:
            batches = shard_batches(batches, self.ddp)
        if not batches:
            raise ValueError(f"no batches: {len(self.data)} utterances, batch_size {cfg.batch_size}, drop_last"
                             + ("" if self.ddp is None else f", {self.ddp.world_size} processes"))
        return batches

    def batches(self, batches: list[list[int]], epoch: int, start: int) -> Iterator[Batch]:
        return _train_batches(self.augmented, batches, epoch, start, self.train.num_workers)

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self, batch: Batch) -> Optional[dict[str, float]]:
        batch = batch.to(self.device, non_blocking=True)
        with autocast_for(self.device, self.train.bf16):
            out = self.net(batch)
            loss = out.losses["total"]
            if self.teacher is not None:  # distillation: the predictors also learn the teacher's outputs
                taught = teach(self.teacher, batch, mels=self.distill_mel_weight > 0)
                distill = distill_losses(self.model, batch, out, taught)
                loss = distilled_total(self.model, out, distill, self.distill_weight, self.distill_mel_weight)
        self.optimizer.zero_grad(set_to_none=True)
        finite = bool(torch.isfinite(loss))
        if self.ddp is not None:
            finite = all_true(finite)  # all ranks skip together, or DDP would wait forever
        if not finite:
            return None
        loss.backward()
        max_norm = self.train.grad_clip if self.train.grad_clip > 0 else float("inf")
        grad_norm = clip_gradients(list(self.model.parameters()), max_norm)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        pad_frac = 1.0 - float(batch.video_lengths.sum()) / max(1, batch.video.shape[0] * batch.video.shape[1])
        return {"grad_norm": grad_norm, "pad_frac": pad_frac, **{k: float(v.detach()) for k, v in out.losses.items()}}

    def snapshot(self) -> dict[str, Any]:
        return {"model": self.inference_model.state_dict()}

    def describe(self, batch: Batch) -> str:
        return ", ".join(batch.utts)

    def reduce(self, losses: dict[str, float]) -> dict[str, float]:
        if self.ddp is None:
            return losses
        return {**losses, **mean_over_ranks(losses, LOSS_NAMES)}  # the global batch's losses

    @property
    def has_validation(self) -> bool:
        return self.val is not None

    @property
    def inference_model(self) -> LTBSModel:
        """The weights validation scores and inference uses: the average when there is one."""
        return self.model if self.ema is None else self.ema.model

    def validate(self) -> dict[str, float]:
        cfg = self.train
        return evaluate(self.inference_model, self.val, cfg.val_batch_size, self.device, cfg.bf16,
                        cfg.val_free_running, cfg.val_max_batches)


def load_teacher(path: Path, model_cfg: Mapping[str, Any], device: torch.device) -> LTBSModel:
    """The teacher of a distillation (an experiment's ``distill_from``): the model of checkpoint
    ``path`` (its averaged weights), frozen, in eval mode, on ``device``.

    Raises:
        ConfigError: it predicts other units or mel bins, or has other speakers, than the student.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        loaded = load_model(path, device)  # building it draws initial weights: the student's random stream stays as it was
    for key in ("n_units", "n_mels", "n_speakers"):
        if loaded.model_cfg[key] != model_cfg[key]:
            raise ConfigError(f"distill_from {path}: model key {key} is {loaded.model_cfg[key]} there, "
                              f"{model_cfg[key]} here")
    teacher = loaded.model
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def train(
    model_cfg: Mapping[str, Any],
    train_cfg: Mapping[str, Any],
    train_data: Any,
    val_data: Any,
    run_dir: str | os.PathLike,
    resume: bool = True,
    stop_at_step: Optional[int] = None,
    bundle: Optional[Mapping[str, Any]] = None,
    init: Optional[str | os.PathLike] = None,
    teacher: Optional[str | os.PathLike] = None,
    distill_weight: Optional[float] = None,
    init_align: Optional[bool] = None,
    distill_mel_weight: Optional[float] = None,
) -> TrainResult:
    """Train an LTBS model (:class:`LTBSTask` in :func:`~lipspeech.training.loop.run_loop`).

    Args:
        model_cfg: complete flat model config (:func:`lipspeech.models.model_config`).
        train_cfg: complete training config (:func:`lipspeech.training.train_config`).
        train_data: sequence (or iterable) of :class:`~lipspeech.models.batch.Utterance`.
        val_data: the same for validation, or None (no validation, no best.pt).
        run_dir: run directory (created).
        resume: continue from ``run_dir/ckpt/last.pt`` when it exists.
        stop_at_step: stop (saving last.pt) once this many steps are done, as a
            time-limited job would; the LR schedule still follows ``max_steps``.
        bundle: what using the model needs, stored in every checkpoint
            (:func:`lipspeech.training.bundle.make_bundle`; the train stage gives it).
        init: a model checkpoint to start from (:func:`lipspeech.training.bundle.start_from`: the
            tensors whose names and shapes match; not when resuming).
        teacher: a model checkpoint to distil from (an experiment's ``distill_from``): each step the
            unit, pitch and energy predictors' losses become ``(1 - distill_weight)`` x the loss
            against the targets + ``distill_weight`` x that against the teacher's predictions
            (:mod:`lipspeech.models.distill`).
        distill_weight: that mix (the experiment's ``distill_weight``); needed with a teacher.
        distill_mel_weight: with a teacher, the same mix for the coarse-mel L1 against the teacher's
            coarse mel (the experiment's ``distill_mel_weight``; 0 or None: its decoder does not run).
        init_align: with ``init`` (needed there), whether to align causal kernels copied from centred
            ones in time (an experiment's ``init_align``; :func:`lipspeech.training.bundle.start_from`).
    """
    if teacher is not None and distill_weight is None:
        raise ValueError("a teacher needs its distill_weight")
    if init is not None and init_align is None:
        raise ValueError("init needs init_align (whether to align causal kernels)")
    model_cfg = check_model_config(model_cfg)
    cfg = check_train_config(train_cfg)
    device = resolve_device(train_settings(cfg).device)
    ddp = dist_info()  # None: the single-process run
    if ddp is not None and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", ddp.local_rank)
    data = as_sequence(train_data)
    if len(data) == 0:
        raise ValueError("train_data is empty")
    val = as_sequence(val_data) if val_data is not None else None
    task = LTBSTask(model_cfg, cfg, data, val, device, ddp, bundle, Path(init) if init is not None else None,
                    Path(teacher) if teacher is not None else None, distill_weight or 0.0, init_align,
                    distill_mel_weight)
    settings = _loop_settings(task.train, threads=cfg["threads"], progress=cfg["progress"])
    return run_loop(task, settings, Path(run_dir), device, resume, stop_at_step, ddp)


def _loop_settings(cfg: TrainConfig, threads: int, progress: bool) -> LoopSettings:
    """How the loop runs the acoustic model: the train section's loop keys and the process's two."""
    return LoopSettings(max_steps=cfg.max_steps, seed=cfg.seed, log_every=cfg.log_every, val_every=cfg.val_every,
                        ckpt_every=cfg.ckpt_every, max_nonfinite=cfg.max_nonfinite, patience=cfg.patience,
                        snapshot_every=cfg.snapshot_every, deterministic=cfg.deterministic, threads=threads,
                        tensorboard=cfg.tensorboard, progress=progress, desc="train")
