"""The train and synthesize stages: what ``lipspeech train`` / ``lipspeech synthesize`` run.

Experiments
    The config's ``experiments`` list names each model to train, e.g.
    ``{name: ltbs, preset: tiny, overrides: {use_pitch: false}}``. Its model
    config is ``model_config(preset, {**model.overrides, **experiment.overrides})``
    (an experiment without a ``preset`` takes ``model.preset``); the paper's
    ablations are the model switches ``use_linguistic``, ``use_pitch``,
    ``use_energy`` and ``use_postnet``.

Run directory ``results/{corpus}/models/{exp}/``
    ``config.json`` (resolved configs, git commit; written by the trainer),
    ``losses.csv``, ``ckpt/last.pt``, ``ckpt/best.pt``, plus ``run.json``
    (the run key below and the data summary) and ``ckpt/best.kept.pt``.

Resume under Snakemake
    The workflow declares only ``ckpt/best.pt``; how a restarted job resumes from
    ``last.pt`` and gets its ``best.pt`` back is :mod:`lipspeech.training.rundir`.
    The run key is the model config, the training config less the keys that do
    not change the result, and the data fingerprint.

Data-parallel
    Under torchrun (``lipspeech train --nproc N``) every process runs
    :func:`run_train`; it joins the process group, rank 0 alone writes
    ``run.json`` and the checkpoints, and the others wait for it where they would
    read them. The number of processes is not part of the run key (like the
    device and thread count, it changes the numbers only by float rounding and
    dropout draws), so a run may resume with another.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import numpy as np
import pyarrow as pa

from lipspeech.core.config import ConfigError, config_hash, default_section
from lipspeech.core.runtime import resolve_device
from lipspeech.core.settings import CorpusConfig, ExperimentConfig, ModelConfig, ModelSection
from lipspeech.core.shards import StageError
from lipspeech.core.store import StoreMeta, write_store, write_text_atomic
from lipspeech.core.timing import FPS, MEL_PER_FRAME
from lipspeech.models.presets import STREAM_RESTRICTIONS, model_config
from lipspeech.training.config import train_config, train_settings
from lipspeech.training.distributed import DistInfo, process_group
from lipspeech.training.rundir import open_run, train_in_chunks
from lipspeech.training.stores import TRAIN_STORES, VIDEO_STORES, CorpusStores, StoreDataset, speaker_ids

if TYPE_CHECKING:
    from lipspeech.training.synthesis import Synthesis

STAGE_SYNTH = "synthesize"
#: train-config keys that do not change what is trained (ignored by the resume key)
RESULT_NEUTRAL = ("progress", "tensorboard", "num_workers", "threads", "device", "log_every", "reader_cache_mb",
                  "snapshot_every")
ABLATION_SWITCHES = ("use_linguistic", "use_pitch", "use_energy", "use_postnet")


def find_experiment(experiments: Sequence[Mapping[str, Any]], name: str) -> dict[str, Any]:
    """The entry of ``experiments`` called ``name``, as the config has it (what the stages record and
    hash); ConfigError if none."""
    names = [ExperimentConfig.from_section(exp).name for exp in experiments]
    if name in names:
        return dict(experiments[names.index(name)])
    raise ConfigError(f"config key experiments: no experiment named {name!r} (known: {', '.join(names) or 'none'})")


#: config.yaml's ``streaming`` keys (model.streaming, an experiment's streaming) -> flat model keys
STREAMING_KEYS = {
    "chunk_frames": "stream_chunk_frames",
    "lookahead_frames": "stream_lookahead_frames",
    "decoder_lookahead_frames": "stream_decoder_lookahead_frames",
    "left_context_frames": "stream_left_context_frames",
    "train_chunks": "stream_train_chunks",
    "restrictions": "stream_restrictions",
}


def streaming_overrides(section: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """Flat model keys for a ``streaming`` config section (None or absent: none; a mapping,
    even empty, turns streaming on with the preset's sizes for the keys it leaves out)."""
    if section is None:
        return {}
    out: dict[str, Any] = {"streaming": True}
    for key, value in dict(section).items():
        if key not in STREAMING_KEYS:
            raise ConfigError(f"config key streaming.{key}: unknown key (known: {', '.join(STREAMING_KEYS)})")
        out[STREAMING_KEYS[key]] = value
    return out


def experiment_model_config(
    exp: Mapping[str, Any] | ExperimentConfig, model_section: Mapping[str, Any] | ModelSection,
) -> dict[str, Any]:
    """The flat model config of one experiment: its preset (else the model section's) + shared
    overrides + its own overrides; the ``streaming`` sections (model's, then the experiment's) map
    onto the ``stream_*`` keys."""
    e, model = ExperimentConfig.from_section(exp), ModelSection.from_section(model_section)
    overrides = {
        **streaming_overrides(model.streaming),
        **model.overrides,
        **streaming_overrides(e.streaming),
        **e.overrides,
    }
    return model_config(e.preset or model.preset, overrides)


def _run_key(model_cfg: Mapping[str, Any], train_cfg: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    kept = {k: v for k, v in train_cfg.items() if k not in RESULT_NEUTRAL}
    model = dict(model_cfg)
    if not model.get("streaming"):
        # the offline model does not read the streaming keys: its run key is what it was before them
        model = {k: v for k, v in model.items() if k != "streaming" and not k.startswith("stream_")}
    elif set(model["stream_restrictions"]) == set(STREAM_RESTRICTIONS):
        # a model with every restriction (one that streams): its run key is what it was before the key
        model.pop("stream_restrictions")
    return config_hash(model, kept, dict(data))


def corpus_stores(source: "CorpusStores | str | Path", stats: bool) -> CorpusStores:
    """The stores given (what a stage does), or for a ``results/{corpus}`` folder the workflow's layout
    of it (tools and tests)."""
    return source if isinstance(source, CorpusStores) else CorpusStores.from_results(source, load_stats=stats)


def run_train(
    corpus: "CorpusStores | str | Path",
    exp: Mapping[str, Any],
    model_section: Mapping[str, Any],
    train_section: Mapping[str, Any],
    run_dir: Path,
    threads: int = 1,
    progress: bool = True,
    *,
    fail_fast: bool,
    data_sections: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """Train one experiment on the train split of a corpus's stores, validating on val.

    Args:
        corpus: the manifest, roi, mel, units and prosody stores and the prosody statistics
            (or a ``results/{corpus}`` folder: its stores in the workflow's layout).
        exp: the experiment's entry of the config (``name``, ``preset``, ``overrides``).
        model_section: the config's ``model`` section (``preset``, shared ``overrides``).
        train_section: overrides of :func:`~lipspeech.training.train_config` (the ``train`` section; the
            experiment's own ``train`` keys override it).
        run_dir: ``results/{corpus}/models/{exp}``.
        threads: torch CPU threads.
        progress: progress bar.
        fail_fast: an unreadable input store fails the stage (else its utterances are skipped, with a line each).
        data_sections: the config's ``mel``, ``roi`` and ``corpus`` sections, recorded in every checkpoint's
            bundle (:mod:`lipspeech.training.bundle`); missing ones are the defaults.

    Returns:
        A summary (printed by the CLI, stored in ``run.json``).
    """
    own = ExperimentConfig.from_section(exp).train or {}
    section = {k: v for k, v in {**dict(train_section), **own}.items() if k not in ("threads", "progress")}
    train_cfg = train_config({**section, "threads": max(1, threads), "progress": progress})
    with process_group(train_settings(train_cfg).device) as ddp:
        return _run_train(corpus_stores(corpus, True), exp, model_section, train_cfg, Path(run_dir), ddp, fail_fast,
                          dict(data_sections or {}))


def _other_runs(e: ExperimentConfig, run_dir: Path) -> tuple[dict[str, Any], Optional[Path], Optional[Path]]:
    """What a training takes from other runs: their part of its run key, the checkpoint it starts
    from (init_from) and the one it distils from (distill_from), each None without. An option that
    is off is absent from the key, so that the keys of runs made before the option stay."""
    key: dict[str, Any] = {}
    init = _checkpoint_of(e.init_from, "init_from", run_dir)
    if init is not None:  # other weights, another run
        key["init_from"] = {"name": e.init_from, "sha1": _sha1(init), **({"align": True} if e.init_align else {})}
    teacher = _checkpoint_of(e.distill_from, "distill_from", run_dir)
    if teacher is not None:  # a teacher's outputs are targets: its weights and the mix are part of the run
        mels = {"mel_weight": e.distill_mel_weight} if e.distill_mel_weight > 0 else {}
        key["distill_from"] = {"name": e.distill_from, "sha1": _sha1(teacher), "weight": e.distill_weight, **mels}
    return key, init, teacher


def _run_train(
    corpus: CorpusStores,
    exp: Mapping[str, Any],
    model_section: Mapping[str, Any],
    train_cfg: dict[str, Any],
    run_dir: Path,
    ddp: Optional[DistInfo],
    fail_fast: bool,
    data_sections: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    main = ddp is None or ddp.is_main
    e, settings = ExperimentConfig.from_section(exp), train_settings(train_cfg)
    model_cfg = experiment_model_config(e, model_section)
    if settings.val_every > settings.max_steps:
        raise ConfigError(f"config key train.val_every: {settings.val_every} > max_steps {settings.max_steps}, "
                          "so there would be no validation and no best.pt")

    n_speakers = ModelConfig.from_section(model_cfg).n_speakers
    speakers = speaker_ids(corpus.manifest) if n_speakers > 0 else None
    if speakers is not None and len(speakers) > n_speakers:
        raise ConfigError(f"model config key n_speakers: {n_speakers} < {len(speakers)} train speakers")
    train_data = StoreDataset(corpus, "train", TRAIN_STORES, speakers)
    val_data = StoreDataset(corpus, "val", TRAIN_STORES, speakers)
    lines = [train_data.summary(), val_data.summary()]
    for _path, reason in sorted(corpus.unreadable.items()):
        if fail_fast:
            raise StageError(f"fail_fast: {reason}")
        lines.append(f"skipping the utterances of an unreadable store: {reason}")
    if len(train_data) == 0:
        raise StageError(f"no train utterances in the stores ({train_data.summary()})")
    if len(val_data) == 0:
        # a tiny corpus (test fixtures) may have no val split; best.pt must still exist
        val_data = train_data
        lines.append("val split empty: validating on the train utterances")
    if ddp is not None:
        lines.append(f"data-parallel: {ddp.world_size} processes, rank 0 writes")
    for line in lines if main else []:
        print(f"train {e.name}: {line}", flush=True)

    others, init, teacher = _other_runs(e, run_dir)
    key = _run_key(model_cfg, train_cfg, {"train": train_data.fingerprint(), "val": val_data.fingerprint(), **others})
    ckpt_dir = run_dir / "ckpt"
    run_json = run_dir / "run.json"
    resumed_from = open_run(run_dir, key, f"train {e.name}", main)
    info: dict[str, Any] = {
        "key": key,
        "experiment": dict(exp),
        "train": {"utterances": len(train_data), "skipped": dict(train_data.skipped)},
        "val": {"utterances": len(val_data), "skipped": dict(val_data.skipped), "is_train": val_data is train_data},
        "speakers": speakers,
        # config.json's resumed_from_step is the last chunk's start; this is where this run began
        "resumed_from_step": resumed_from,
    }
    if main:
        write_text_atomic(run_json, json.dumps(info, indent=1, sort_keys=True) + "\n")

    from lipspeech.training.trainer import train

    bundle = _checkpoint_bundle(data_sections, speakers, key)
    started = time.time()
    result = train_in_chunks(
        lambda stop: train(model_cfg, train_cfg, train_data, val_data, run_dir, resume=True, stop_at_step=stop,
                           bundle=bundle, init=init, teacher=teacher, distill_weight=e.distill_weight,
                           init_align=e.init_align, distill_mel_weight=e.distill_mel_weight),
        resumed_from or 0, settings.max_steps, settings.val_every, ckpt_dir, main)
    summary = {
        "experiment": e.name,
        "steps": result.step,
        "best_step": result.best_step,
        "best_value": result.best_value,
        "best_metric": settings.best_metric,
        "stopped_early": result.stopped_early,
        "seconds": round(time.time() - started, 1),
        "train_utterances": len(train_data),
        "val_utterances": len(val_data),
        "skipped": {"train": train_data.n_skipped, "val": val_data.n_skipped},
        "run_dir": str(run_dir),
    }
    info["result"] = summary
    if main:
        write_text_atomic(run_json, json.dumps(info, indent=1, sort_keys=True) + "\n")
    return summary


def _checkpoint_of(name: Optional[str], key: str, run_dir: Path) -> Optional[Path]:
    """``models/{name}/ckpt/best.pt`` beside this run, for the experiment key ``key`` that names
    another experiment (init_from, distill_from); None without a name."""
    if not name:
        return None
    path = run_dir.parent / name / "ckpt" / "best.pt"
    if not path.is_file():
        raise StageError(f"{key} {name!r}: no {path} (train that experiment first)")
    return path


def _checkpoint_bundle(data_sections: Optional[Mapping[str, Any]], speakers: Optional[dict[str, int]],
                       key: str) -> dict[str, Any]:
    """The bundle every checkpoint carries: the ``mel``, ``roi`` and ``corpus`` sections given (the
    defaults for those missing), the speakers and a hash of the run key with the data sections."""
    from lipspeech.training.bundle import make_bundle

    sections = {name: (data_sections or {}).get(name) or default_section(name) for name in ("mel", "roi", "corpus")}
    return make_bundle(sections["mel"], sections["roi"], speakers, config_hash(key, sections["mel"], sections["roi"]),
                       CorpusConfig.from_section(sections["corpus"]).name)


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_synthesize(
    corpus: "CorpusStores | str | Path",
    exp: Mapping[str, Any],
    ckpt: Path,
    out: Path,
    split: str = "test",
    temperature: Optional[float] = None,
    batch_size: int = 8,
    device: Optional[str] = None,
) -> int:
    """Coarse and post-net mels of every ``split`` utterance with a ROI; returns the number written.

    Writes the store ``out`` (``results/{corpus}/eval/{exp}/mels.parquet``): ``utt,
    n_frames, duration`` and arrays ``coarse``, ``post`` float32 ``(T * 4, n_mels)``.
    Only the video is used, so utterances rejected by the acoustic stages are
    synthesised too (the evaluation decides what it can score). ``device``: cuda
    when available unless given.
    """

    from lipspeech.training.bundle import load_model
    from lipspeech.training.synthesis import synthesize

    ckpt, out = Path(ckpt), Path(out)
    e = ExperimentConfig.from_section(exp)
    device = resolve_device(device or "auto")
    try:
        bundle = load_model(ckpt, device, weights=e.weights or "average")
    except (FileNotFoundError, ValueError) as exc:
        raise StageError(str(exc)) from None
    model, speakers, model_cfg = bundle.model, bundle.speakers, bundle.config
    if model_cfg.n_speakers > 0 and not speakers:
        raise StageError(f"{ckpt}: a model with a speaker embedding, but its checkpoint names no speakers")
    data = StoreDataset(corpus_stores(corpus, False), split, VIDEO_STORES, speakers)
    print(f"synthesize {e.name}: {data.summary()}", flush=True)
    if temperature is None:
        temperature = e.temperature
    chunk = e.decode_chunk_frames
    if chunk and bundle.model.streaming is None:
        raise StageError(f"experiment {e.name}: decode_chunk_frames needs a streaming model; {ckpt} is offline")
    if chunk and not bundle.model.streaming.can_stream:
        raise StageError(f"experiment {e.name}: decode_chunk_frames needs a model with every streaming "
                         f"restriction; {ckpt} is a study model (stream_restrictions) that decodes whole clips only")
    if chunk:
        s = bundle.model.streaming
        print(f"synthesize {e.name}: chunk by chunk, {chunk} frames + {s.lookahead_frames} of look-ahead"
              + (f" (decoder: {s.decoder_lookahead_frames})" if s.decoder_lookahead_frames else ""), flush=True)
    results = synthesize(
        model, (data[i] for i in range(len(data))), temperature=temperature, batch_size=batch_size, chunk_frames=chunk
    )
    write_mels(out, results, config_hash(dict(exp), {"ckpt_sha1": _sha1(ckpt), "split": split, "temperature": temperature}),
               {"experiment": e.name, "checkpoint": str(ckpt), "step": bundle.step, "split": split,
                "temperature": model_cfg.temperature if temperature is None else temperature,
                "n_mels": model_cfg.n_mels, "skipped": dict(data.skipped)})
    return len(results)


def write_mels(out: Path, results: Sequence["Synthesis"], key: str, extra: Mapping[str, Any]) -> None:
    """Write synthesised mels as the synthesize stage's store (``utt, n_frames, duration``, arrays
    ``coarse`` and ``post``), atomically; ``key`` is its config hash, ``extra`` its metadata."""
    n_frames = [int(r.coarse.shape[0]) // MEL_PER_FRAME for r in results]
    write_store(
        out, StoreMeta(STAGE_SYNTH, key, extra=dict(extra)), [r.utt for r in results],
        {"n_frames": pa.array(n_frames, type=pa.int32()),
         "duration": pa.array([n / FPS for n in n_frames], type=pa.float64())},
        {"coarse": [np.asarray(r.coarse, dtype=np.float32) for r in results],
         "post": [np.asarray(r.post, dtype=np.float32) for r in results]},
    )
