"""Training on a CUDA GPU: does it run, resume exactly, run in bf16, stream; and its step time.

    python benchmarks/cuda_training.py [--device cuda] [--steps full|small] [--out cuda.json]
        [--only train,resume,bf16,streaming,timing]

Needs no corpus: the batches are :func:`lipspeech.training.synthetic_utterances` of the demo's
shape (batch 8, GRID-length clips of 75 video frames, 96x96 crops, 80 mels, 200 units), the model
is the ``small`` preset (what the demo and the grid-scale run train), and every run goes through
:func:`lipspeech.training.trainer.train` (the timings through its :class:`LTBSTask`, the same step).
The train section is the grid-scale recipe's where it matters (``ema_decay`` 0.999, the defaults'
``deterministic: true``, augmentation on). Prints one PASS/FAIL line per check, with its numbers:

- ``train``: N fp32 steps on the device over one repeated batch of 8: losses finite, the loss falls
  (mean of the last 5 steps under 0.7x the first);
- ``resume``: 2k steps in one go against k, then a resumed run to 2k (the loop's ``last.pt``, a
  reseeded process in between): the largest weight difference, beside that of two uninterrupted
  runs (the device's own run-to-run spread); exact when both are 0. If the resume raises, the
  error is reported and it is tried again with the checkpoint's RNG states moved to the CPU (what
  ``restore_rng`` does since 2026-12-05; the retry is for an older package on ``PYTHONPATH``);
  if it is not exact on CUDA and ``CUBLAS_WORKSPACE_CONFIG`` is unset, it is rerun in a child
  process with ``:4096:8`` (what deterministic cuBLAS needs);
- ``bf16``: ``train.bf16: true`` trains N steps with finite losses; step 1's loss beside fp32's;
- ``streaming``: a streaming model (chunks of 2 + 1 frame of look-ahead, the grid-scale live model)
  trains a few steps, then :class:`~lipspeech.models.streaming.StreamDecoder` on the device, pushed
  whole, frame by frame and in uneven pieces, equals ``infer(chunk_frames=2)`` (the masked
  whole-sequence pass): max difference with TF32 off (pass: <= 1e-4) and with torch's defaults;
- ``timing``: ms per training step (median of the timed steps after warm-up, synchronised),
  batch 8, 32 and 64, fp32 and bf16, with the batch's preparation on the CPU (augmentation +
  collate, ``num_workers: 0``) timed apart and the peak GPU memory; a validation pass of 209
  utterances (the grid-scale val split's size); from them the time of the grid-scale recipe's 4000
  steps of batch 8 with its 8 validations (3015 s on 2 CPU cores, benchmarks/README.md).

``--steps small`` shrinks every count, and the clips and batches, for a smoke test on a CPU (there
``bf16`` is a no-op: autocast is CUDA only). The whole output also goes to ``--out`` as JSON,
rewritten after each check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from lipspeech.core.runtime import deterministic_algorithms, resolve_device, seed_everything
from lipspeech.models.presets import model_config
from lipspeech.training import load_checkpoint, load_model, synthetic_utterances, train, train_config
from lipspeech.training.config import train_settings
from lipspeech.training.trainer import LTBSTask, evaluate

FRAMES = 75  # a GRID clip: 3 s at 25 fps
CPU_STEPS_GRIDSCALE = 3015.0  # s, train ltbs of configs/gridscale.yaml on 2 CPU cores (benchmarks/README.md)
GRIDSCALE_STEPS, GRIDSCALE_VALIDATIONS, GRIDSCALE_VAL_UTTS = 4000, 8, 209

SIZES = {
    # train steps, resume k, bf16 steps, streaming steps, timing (batches, warm-up, timed), clip frames, val utts
    "full": dict(train=60, resume_k=10, bf16=30, streaming=10, batches=(8, 32, 64), warmup=5, timed=20,
                 frames=FRAMES, batch=8, val_utts=GRIDSCALE_VAL_UTTS),
    "small": dict(train=4, resume_k=1, bf16=2, streaming=2, batches=(2,), warmup=1, timed=2,
                  frames=12, batch=2, val_utts=4),
}
#: the train section: the grid-scale recipe's (configs/gridscale.yaml) where a short run can follow it
RECIPE = {"ema_decay": 0.999, "warmup_steps": 10, "decay": "constant", "progress": False, "tensorboard": False,
          "log_every": 1, "val_every": 10_000, "bf16": False}


class Report:
    """PASS/FAIL lines on stdout and everything in a JSON file (rewritten as it grows)."""

    def __init__(self, out: Path | None, meta: dict[str, Any]):
        self.out, self.data = out, {"meta": meta, "checks": {}, "timing": None}

    def check(self, name: str, ok: bool, line: str, **numbers: Any) -> None:
        print(f"{'PASS' if ok else 'FAIL'} {name}: {line}", flush=True)
        self.data["checks"][name] = {"pass": bool(ok), "line": line, **numbers}
        self.save()

    def save(self) -> None:
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.write_text(json.dumps(self.data, indent=1, default=str))


def utterances(n: int, frames: int, seed: int, mcfg: dict[str, Any]) -> list:
    return synthetic_utterances(n, frames, seed=seed, n_mels=mcfg["n_mels"], n_units=mcfg["n_units"])


def train_cfg(device: str, **keys: Any) -> dict[str, Any]:
    return train_config({**RECIPE, "device": device, **keys})


def train_losses(result: Any, key: str = "total") -> list[float]:
    return [float(r[key]) for r in result.history if r["split"] == "train"]


def weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)  # on the CPU
    state = {f"model.{k}": v for k, v in ckpt["model"].items()}
    if "ema" in ckpt:
        state.update({f"ema.{k}": v for k, v in ckpt["ema"]["model"].items()})
    return state


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


def caught(fn: Callable[[], Any]) -> tuple[Any, list[str]]:
    """fn()'s result and the distinct first lines of the warnings it raised."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = fn()
    lines = sorted({str(w.message).strip().splitlines()[0][:200] for w in seen})
    return result, lines


def reseed() -> None:
    """What a fresh process would have: nothing carried over in the global generators."""
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)


# ---------------------------------------------------------------------------------------------- checks
def check_train(rep: Report, device: str, size: dict, mcfg: dict, tmp: Path) -> None:
    items = utterances(size["batch"], size["frames"], 0, mcfg)
    cfg = train_cfg(device, batch_size=size["batch"], max_steps=size["train"])
    started = time.perf_counter()
    result, warned = caught(lambda: train(mcfg, cfg, items, None, tmp / "train"))
    seconds = time.perf_counter() - started
    total = train_losses(result)
    first, last = total[0], float(np.mean(total[-5:]))
    finite = all(np.isfinite(total))
    ok = finite and len(total) == size["train"] and last < 0.7 * first
    rep.check("train", ok, f"{len(total)} steps on {device} in {seconds:.1f} s, losses finite: {finite}, "
              f"total loss {first:.3f} -> {last:.3f} (mean of the last 5; {first / last:.2f}x), mel L1 "
              f"{train_losses(result, 'mel_l1')[0]:.3f} -> {np.mean(train_losses(result, 'mel_l1')[-5:]):.3f}",
              steps=len(total), seconds=seconds, losses=total, warnings=warned)


def _resume_once(device: str, size: dict, mcfg: dict, tmp: Path) -> dict[str, Any]:
    """Two uninterrupted runs of 2k steps and one stopped at k and resumed: the weights' differences."""
    items = utterances(size["batch"] + size["batch"] // 2, size["frames"], 1, mcfg)  # epochs roll over mid-run
    k = size["resume_k"]
    cfg = train_cfg(device, batch_size=size["batch"], max_steps=2 * k, lr=1e-3, warmup_steps=2, decay="cosine")
    whole = train(mcfg, cfg, items, None, tmp / "whole")
    again = train(mcfg, cfg, items, None, tmp / "again")
    part = train(mcfg, cfg, items, None, tmp / "split", stop_at_step=k)
    assert part.step == k
    reseed()
    error = None
    try:
        rest = train(mcfg, cfg, items, None, tmp / "split")
    except Exception as exc:  # noqa: BLE001 - reported, then tried again with the RNG states on the CPU
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
        import lipspeech.training.loop as loop
        from lipspeech.training.checkpoint import restore_rng

        def on_cpu(x: Any) -> Any:
            if isinstance(x, torch.Tensor):
                return x.cpu()
            if isinstance(x, dict):
                return {key: on_cpu(v) for key, v in x.items()}
            if isinstance(x, list):
                return [on_cpu(v) for v in x]
            return x

        loop.restore_rng = lambda state: restore_rng(on_cpu(state))
        try:
            reseed()
            rest = train(mcfg, cfg, items, None, tmp / "split")
        finally:
            loop.restore_rng = restore_rng
    wa, wb, wr = weights(whole.last_checkpoint), weights(again.last_checkpoint), weights(rest.last_checkpoint)
    la, lr_ = train_losses(whole), {int(r["step"]): float(r["total"]) for r in rest.history if r["split"] == "train"}
    loss_diff = max(abs(la[s - 1] - lr_[s]) for s in lr_)
    return {"k": k, "steps": 2 * k, "resume_error": error, "whole_vs_whole": max_diff(wa, wb),
            "whole_vs_resumed": max_diff(wa, wr), "loss_diff_resumed_steps": loss_diff,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def check_resume(rep: Report, device: str, size: dict, mcfg: dict, tmp: Path, child: bool = False) -> None:
    res, warned = caught(lambda: _resume_once(device, size, mcfg, tmp))
    res["warnings"] = warned
    if child:  # the parent reads this line
        print("RESUME-JSON " + json.dumps(res), flush=True)
        return
    exact = res["whole_vs_resumed"] == 0.0 and res["resume_error"] is None
    line = (f"{res['steps']} steps vs {res['k']} + resumed {res['k']} on {device} (ema on, deterministic: true): "
            f"max |weight diff| whole vs resumed {res['whole_vs_resumed']:.3g}, whole vs whole "
            f"{res['whole_vs_whole']:.3g}, max |loss diff| of the resumed steps {res['loss_diff_resumed_steps']:.3g}")
    if res["resume_error"]:
        line += f"; the resume raised {res['resume_error']} (then run with the RNG states moved to the CPU)"
    if not exact and device.startswith("cuda") and not os.environ.get("CUBLAS_WORKSPACE_CONFIG"):
        env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
        cmd = [sys.executable, __file__, "--device", device, "--steps", rep.data["meta"]["steps"], "--child-resume"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESUME-JSON ")]
        if found:
            res["with_cublas_workspace"] = sub = json.loads(found[-1][len("RESUME-JSON "):])
            line += (f"; with CUBLAS_WORKSPACE_CONFIG=:4096:8: whole vs resumed {sub['whole_vs_resumed']:.3g}, "
                     f"whole vs whole {sub['whole_vs_whole']:.3g}")
        else:
            res["with_cublas_workspace"] = {"rc": proc.returncode, "stderr": proc.stderr[-2000:]}
            line += f"; the CUBLAS_WORKSPACE_CONFIG rerun failed (rc {proc.returncode})"
    rep.check("resume", exact, line, **res)


def check_bf16(rep: Report, device: str, size: dict, mcfg: dict, tmp: Path) -> None:
    items = utterances(size["batch"], size["frames"], 0, mcfg)
    runs, warned = {}, []
    for bf16 in (False, True):
        cfg = train_cfg(device, batch_size=size["batch"], max_steps=size["bf16"], bf16=bf16)
        runs[bf16], seen = caught(lambda cfg=cfg, bf16=bf16: train(mcfg, cfg, items, None, tmp / f"bf16_{bf16}"))
        warned += [w for w in seen if w not in warned]
    fp, bf = train_losses(runs[False]), train_losses(runs[True])
    finite = all(np.isfinite(bf)) and len(bf) == size["bf16"]
    active = torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported()
    rep.check("bf16", finite, f"{len(bf)} bf16 steps on {device} (autocast {'on' if active else 'off: not CUDA'}), "
              f"losses finite: {finite}; step 1 total {bf[0]:.4f} vs fp32 {fp[0]:.4f}, step {len(bf)} {bf[-1]:.4f} "
              f"vs fp32 {fp[-1]:.4f} (step times: timing)", autocast=active, losses_bf16=bf, losses_fp32=fp,
              warnings=warned)


def check_streaming(rep: Report, device: str, size: dict, tmp: Path) -> None:
    from lipspeech.models.batch import collate
    from lipspeech.models.streaming import StreamDecoder

    chunk, lookahead = 2, 1
    mcfg = model_config("small", {"streaming": True, "stream_chunk_frames": chunk, "stream_lookahead_frames": lookahead,
                                  "stream_left_context_frames": 25})
    items = utterances(size["batch"], size["frames"], 3, mcfg)
    cfg = train_cfg(device, batch_size=size["batch"], max_steps=size["streaming"], bf16=True)
    result = train(mcfg, cfg, items, None, tmp / "stream")
    total = train_losses(result)
    finite = all(np.isfinite(total))
    model = load_model(result.last_checkpoint, device, weights="raw").model
    clip = utterances(1, size["frames"], 4, mcfg)
    video = collate(clip).video.to(device)  # (1, T, 1, 88, 88)
    t = video.shape[1]
    pieces = {"whole": [t], "frame by frame": [1] * t, "uneven": _uneven(t)}
    diffs: dict[str, dict[str, float]] = {}
    prior = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        for mode, tf32 in (("fp32", False), ("torch defaults", prior[0])):
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32, tf32 and prior[1]
            with torch.no_grad():
                coarse, post = model.infer(video, torch.tensor([t], device=device), temperature=0.0, chunk_frames=chunk)
            coarse, post = coarse[0].cpu(), post[0].cpu()
            for name, push in pieces.items():
                dec = StreamDecoder(model, chunk_frames=chunk, temperature=0.0)
                cs, ps, i = [], [], 0
                for n in push:
                    c, p = dec.push(video[0, i : i + n])
                    cs.append(c)
                    ps.append(p)
                    i += n
                c, p = dec.flush()
                c, p = torch.cat(cs + [c]), torch.cat(ps + [p])
                assert c.shape == coarse.shape, (c.shape, coarse.shape)
                diffs.setdefault(mode, {})[name] = max(float((c - coarse).abs().max()), float((p - post).abs().max()))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = prior
    strict = max(diffs["fp32"].values())
    loose = max(diffs["torch defaults"].values())
    scale = float(post.abs().max())
    ok = finite and strict <= 1e-4
    rep.check("streaming", ok, f"{len(total)} steps on {device} (chunks {chunk} + {lookahead}, bf16), losses finite: "
              f"{finite}; StreamDecoder vs infer(chunk_frames={chunk}) on {t} frames, max |diff| (coarse, refined; "
              f"pushed whole / frame by frame / uneven): TF32 off {strict:.2g}, torch defaults {loose:.2g} "
              f"(mel values up to {scale:.2f})", losses=total, diffs=diffs, mel_scale=scale)


def _uneven(t: int) -> list[int]:
    out, i, sizes = [], 0, [4, 7, 2, 10, 1, 3]
    while sum(out) < t:
        out.append(min(sizes[i % len(sizes)], t - sum(out)))
        i += 1
    return out


# ---------------------------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(device: torch.device, mcfg: dict, batch: int, frames: int, bf16: bool, warmup: int, timed: int,
               deterministic: bool = True) -> dict[str, Any]:
    """Steps of :class:`LTBSTask` on one batch of ``batch`` utterances (a new epoch each step): medians, ms."""
    items = utterances(batch, frames, 5, mcfg)
    cfg = train_cfg(str(device), batch_size=batch, max_steps=warmup + timed, bf16=bf16, deterministic=deterministic)
    task = LTBSTask(mcfg, cfg, items, None, device, None, None)
    prep, step = [], []
    with deterministic_algorithms(train_settings(cfg).deterministic):
        seed_everything(cfg["seed"])
        task.build()
        task.start(False)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for epoch in range(warmup + timed):
            t0 = time.perf_counter()
            b = next(iter(task.batches(task.epoch_batches(epoch), epoch, 0)))
            sync(device)
            t1 = time.perf_counter()
            losses = task.step(b)
            sync(device)
            t2 = time.perf_counter()
            if losses is None or not np.isfinite(losses["total"]):
                raise RuntimeError(f"non-finite loss at step {epoch + 1} (batch {batch}, bf16 {bf16})")
            if epoch >= warmup:
                prep.append(1000 * (t1 - t0))
                step.append(1000 * (t2 - t1))
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"batch": batch, "bf16": bf16, "deterministic": deterministic, "step_ms": statistics.median(step),
            "step_ms_min": min(step), "step_ms_max": max(step), "prep_ms": statistics.median(prep),
            "peak_mib": peak, "timed_steps": timed}


def time_validation(device: torch.device, mcfg: dict, n: int, frames: int, bf16: bool) -> float:
    """Seconds of one validation pass (teacher-forced and free-running, batches of 8) over ``n`` utterances."""
    from lipspeech.models.ltbs import build_model

    torch.manual_seed(0)
    model = build_model(mcfg).to(device)
    val = utterances(n, frames, 6, mcfg)
    evaluate(model, val[:8], 8, device, bf16, True, 0)  # warm-up
    sync(device)
    started = time.perf_counter()
    evaluate(model, val, 8, device, bf16, True, 0)
    sync(device)
    return time.perf_counter() - started


def run_timing(rep: Report, device: torch.device, size: dict, mcfg: dict) -> None:
    rows = []
    configs = [(b, bf16, True) for b in size["batches"] for bf16 in (False, True)]
    configs += [(size["batches"][0], bf16, False) for bf16 in (False, True)]  # deterministic off, batch 8
    for b, bf16, det in configs:
        row = time_steps(device, mcfg, b, size["frames"], bf16, size["warmup"], size["timed"], det)
        rows.append(row)
        mem = f", peak {row['peak_mib']:.0f} MiB" if row["peak_mib"] is not None else ""
        print(f"  batch {b:3d} {'bf16' if bf16 else 'fp32'}{'' if det else ' deterministic off'}: "
              f"{row['step_ms']:.1f} ms/step (min {row['step_ms_min']:.1f}, max {row['step_ms_max']:.1f}), "
              f"batch prep {row['prep_ms']:.1f} ms{mem}", flush=True)
    val_s = {bf16: time_validation(device, mcfg, size["val_utts"], size["frames"], bf16) for bf16 in (False, True)}
    print(f"  validation of {size['val_utts']} utterances: fp32 {val_s[False]:.2f} s, bf16 {val_s[True]:.2f} s")
    first = size["batches"][0]
    estimate = {}
    for bf16 in (False, True):
        row = next(r for r in rows if r["batch"] == first and r["bf16"] == bf16 and r["deterministic"])
        steps_s = GRIDSCALE_STEPS * (row["step_ms"] + row["prep_ms"]) / 1000
        estimate["bf16" if bf16 else "fp32"] = {
            "steps_s": steps_s, "validations_s": GRIDSCALE_VALIDATIONS * val_s[bf16],
            "total_s": steps_s + GRIDSCALE_VALIDATIONS * val_s[bf16],
            "vs_cpu": CPU_STEPS_GRIDSCALE / (steps_s + GRIDSCALE_VALIDATIONS * val_s[bf16])}
    rep.data["timing"] = {"rows": rows, "validation_s": {"fp32": val_s[False], "bf16": val_s[True]},
                          "estimate_4000_steps": estimate}
    fp, bf = estimate["fp32"], estimate["bf16"]
    rep.check("timing", True, f"4000 steps of batch {first} + 8 validations: fp32 {fp['total_s']:.0f} s "
              f"(steps {fp['steps_s']:.0f} s), bf16 {bf['total_s']:.0f} s (steps {bf['steps_s']:.0f} s), against "
              f"{CPU_STEPS_GRIDSCALE:.0f} s on 2 CPU cores ({fp['vs_cpu']:.1f}x / {bf['vs_cpu']:.1f}x); data prep on "
              f"the CPU included, no reading from disk")


# ---------------------------------------------------------------------------------------------- main
def environment(device: torch.device, steps: str) -> dict[str, Any]:
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": steps, "device": str(device),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cpu_threads": torch.get_num_threads(), "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta.update(gpu=props.name, gpu_mib=props.total_memory // 2**20, cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), bf16_supported=torch.cuda.is_bf16_supported(),
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", choices=sorted(SIZES), default="full", help="full (a GPU) or small (a CPU smoke test)")
    ap.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    ap.add_argument("--only", default="train,resume,bf16,streaming,timing", help="checks to run, comma-separated")
    ap.add_argument("--child-resume", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = resolve_device(args.device)
    size = SIZES[args.steps]
    mcfg = model_config("small")
    rep = Report(None if args.child_resume else args.out, environment(device, args.steps))
    with tempfile.TemporaryDirectory() as tmp:
        if args.child_resume:
            check_resume(rep, str(device), size, mcfg, Path(tmp), child=True)
            return
        print(json.dumps(rep.data["meta"]), flush=True)
        rep.save()
        started = time.perf_counter()
        checks = {
            "train": lambda: check_train(rep, str(device), size, mcfg, Path(tmp)),
            "resume": lambda: check_resume(rep, str(device), size, mcfg, Path(tmp)),
            "bf16": lambda: check_bf16(rep, str(device), size, mcfg, Path(tmp)),
            "streaming": lambda: check_streaming(rep, str(device), size, Path(tmp)),
            "timing": lambda: run_timing(rep, device, size, mcfg),
        }
        for name in args.only.split(","):
            t0 = time.perf_counter()
            try:
                checks[name]()
            except Exception as exc:  # noqa: BLE001 - one check's failure is its FAIL line; the others still run
                tb = traceback.format_exc()
                print(tb, file=sys.stderr, flush=True)
                rep.check(name, False, f"raised {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}",
                          traceback=tb[-4000:])
            rep.data["checks"].get(name, {})["seconds"] = time.perf_counter() - t0
            rep.save()
        rep.data["meta"]["seconds"] = time.perf_counter() - started
        rep.save()
        failed = [n for n, c in rep.data["checks"].items() if not c["pass"]]
        print(f"{len(rep.data['checks']) - len(failed)} passed, {len(failed)} failed"
              + (f" ({', '.join(failed)})" if failed else "") + f"; {rep.data['meta']['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
