"""Units-analysis stage: how linguistic the units are, for a grid of SSL layers and cluster counts.

For the configured SSL source (``ssl.source``; for HuBERT every layer of ``units_analysis.layers``,
MFCC has one feature set), k-means with each ``units_analysis.k`` is fitted on a seeded sample of
train frames (``units_analysis.sample_frames``, the pipeline's k-means: faiss, ``kmeans.seed``,
``kmeans.niter``, ``kmeans.init``), and the units of the ``units_analysis.split`` utterances are
scored against their phone alignments at 50 Hz (:mod:`lipspeech.features.unit_quality`: phone
purity, cluster purity, PNMI). Two more kinds of rows, when their inputs are given:

- ``pipeline``: the units the model is trained on (the units stores), scored the same way;
- ``model``: each trained experiment's top-1 accuracy of its predicted units on val, as recorded
  in its ``best.pt`` by the training's validation (how predictable the units are from video).

Features are computed utterance by utterance (train utterances first, only the sampled frames
kept; then the scored ones, assigned at once), so memory holds one k-means sample per layer.

Output ``units_analysis/quality.parquet``, one row per measurement: ``kind`` (grid, pipeline,
model), ``source``, ``layer`` (-1 for MFCC), ``k``, ``phone_purity``, ``cluster_purity``,
``pnmi``, ``frames``, ``phones``, ``utterances``, ``fit_seconds``, ``experiment`` and
``unit_acc`` (model rows); utterances without a usable alignment go to
``units_analysis/rejected.parquet`` with the reason.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from lipspeech import __version__
from lipspeech.core.config import config_hash
from lipspeech.core.settings import KmeansConfig, SslConfig, UnitsAnalysisConfig
from lipspeech.core.shards import StageError, read_audio_store
from lipspeech.core.store import Store, atomic_path, one_line, write_rejected
from lipspeech.core.timing import UNITS_PER_FRAME
from lipspeech.features.alignments import AlignmentError, find_textgrid, synthgrid_alignment, textgrid_alignment
from lipspeech.features.unit_quality import phone_frames, unit_quality

STAGE = "units_analysis"
SCHEMA = pa.schema([
    ("kind", pa.string()), ("source", pa.string()), ("layer", pa.int32()), ("k", pa.int32()),
    ("phone_purity", pa.float64()), ("cluster_purity", pa.float64()), ("pnmi", pa.float64()),
    ("frames", pa.int64()), ("phones", pa.int32()), ("utterances", pa.int32()), ("fit_seconds", pa.float64()),
    ("experiment", pa.string()), ("unit_acc", pa.float64()),
])
MFCC_LAYER = -1


def feature_extractor(ssl: SslConfig, layers: Sequence[int]
                      ) -> tuple[list[int], Callable[[np.ndarray, int], dict[int, np.ndarray]]]:
    """(layers analysed, function (audio, n_frames) -> {layer: (2T, D) float32}) for ``ssl.source``."""
    from lipspeech.core.timing import fit_length
    from lipspeech.features.ssl import hubert_layers, load_hubert, mfcc_features

    if ssl.source == "mfcc":
        return [MFCC_LAYER], lambda audio, n: {MFCC_LAYER: mfcc_features(audio, n, ssl.mfcc)}
    layers = sorted(set(layers))
    hub = load_hubert(ssl.model, max(layers), ssl.device, ssl.half)

    def extract(audio: np.ndarray, n: int) -> dict[int, np.ndarray]:
        states = hubert_layers(hub, [audio], layers)[0]
        return {layer: np.ascontiguousarray(fit_length(states[layer], n, UNITS_PER_FRAME, pad="edge"))
                for layer in layers}

    return layers, extract


def alignment_lookup(manifest: Any, cfg: UnitsAnalysisConfig, raw_dir: Path | None
                     ) -> Callable[[str], tuple[list[str], np.ndarray, np.ndarray]]:
    """utt -> its phone alignment (raises :class:`AlignmentError` with the reason)."""
    folder = cfg.alignments
    rows = manifest.set_index("utt")
    strip = cfg.strip_stress

    def lookup(utt: str):
        speaker = str(rows.at[utt, "speaker"])
        name = Path(str(rows.at[utt, "audio_path"] or rows.at[utt, "video_path"])).stem
        if folder:
            path = find_textgrid(folder, speaker, name) or find_textgrid(folder, speaker, utt)
            if path is None:
                raise AlignmentError(f"no TextGrid for {utt} in {folder} ({speaker}/{name}.TextGrid or {name}.TextGrid)")
            return textgrid_alignment(path, cfg.tier, strip)
        if raw_dir is None:
            raise AlignmentError("no phone alignments: set units_analysis.alignments to a folder of TextGrid files")
        return synthgrid_alignment(raw_dir, speaker, name, strip)

    return lookup


def _cap(utts: list[str], n: int, seed: int) -> list[str]:
    if n <= 0 or len(utts) <= n:
        return utts
    keep = set(np.random.default_rng(seed).choice(len(utts), n, replace=False).tolist())
    return [u for i, u in enumerate(utts) if i in keep]


def _model_rows(models: Mapping[str, Path]) -> list[dict[str, Any]]:
    from lipspeech.training.checkpoint import load_checkpoint

    rows = []
    for name, path in models.items():
        state = load_checkpoint(path)
        if not state["model_cfg"].get("use_linguistic", True):
            continue
        acc = (state.get("best") or {}).get("val", {}).get("unit_acc")
        rows.append({"kind": "model", "experiment": name, "k": int(state["model_cfg"]["n_units"]),
                     "unit_acc": float("nan") if acc is None else float(acc)})
    return rows


def units_analysis(
    manifest_path: Path, audio_paths: Sequence[Path], ssl_cfg: Mapping[str, Any], kmeans_cfg: Mapping[str, Any],
    cfg: Mapping[str, Any], out: Path, rejected_out: Path, raw_dir: Path | None = None,
    units_paths: Sequence[Path] = (), models: Mapping[str, Path] | None = None, progress: bool = True,
    log: Any = print,
) -> pa.Table:
    """Run the analysis (module docstring); returns the table written to ``out``. ``ssl_cfg``,
    ``kmeans_cfg``, ``cfg``: the validated ``ssl``, ``kmeans`` and ``units_analysis`` mappings (the
    table records their hash)."""
    import faiss

    from lipspeech.features.units import assign_units, fit_kmeans

    ssl, kmeans = SslConfig.from_section(ssl_cfg), KmeansConfig.from_section(kmeans_cfg)
    analysis = UnitsAnalysisConfig.from_section(cfg)
    manifest = Store(manifest_path, expect_stage="manifest").df
    split_of = dict(zip(manifest["utt"], manifest["split"]))
    seed = kmeans.seed
    lookup = alignment_lookup(manifest, analysis, raw_dir)
    audio = {}
    for path in audio_paths:
        utts, n_frames, arrays = read_audio_store(Path(path))
        audio.update({u: (n, a) for u, n, a in zip(utts, n_frames, arrays)})
    train = _cap(sorted(u for u in audio if split_of.get(u) == "train"), analysis.max_utterances, seed)
    scored = _cap(sorted(u for u in audio if split_of.get(u) == analysis.split), analysis.max_utterances, seed)
    if not train:
        raise StageError("units_analysis: no train utterances to fit k-means on")
    if not scored:
        raise StageError(f"units_analysis: no {analysis.split} utterances in the audio stores to score "
                         "(units_analysis.split)")
    phones, rejected = {}, []
    for utt in scored:
        try:
            names, starts, ends = lookup(utt)
        except AlignmentError as exc:
            rejected.append((utt, one_line(exc)))
            continue
        phones[utt] = phone_frames(names, starts, ends, audio[utt][0] * UNITS_PER_FRAME)
    if not phones:
        reasons = "; ".join(r for _, r in rejected[:3])
        raise StageError(f"units_analysis: no {analysis.split} utterance has a phone alignment ({reasons})")
    scored = [u for u in scored if u in phones]
    y = np.concatenate([phones[u] for u in scored])

    layers, extract = feature_extractor(ssl, analysis.layers)
    train_frames = sum(audio[u][0] * UNITS_PER_FRAME for u in train)
    rate = min(1.0, analysis.sample_frames / train_frames) if train_frames else 1.0
    rng = np.random.default_rng(seed)
    sample: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    for utt in tqdm(train, desc="units-analysis: train features", unit="utt", disable=not progress):
        feats = extract(np.asarray(audio[utt][1]), audio[utt][0])
        keep = rng.random(len(next(iter(feats.values())))) < rate
        for layer in layers:
            sample[layer].append(feats[layer][keep])
    indexes, fit_seconds = {}, {}
    for layer in layers:
        x = np.ascontiguousarray(np.concatenate(sample.pop(layer)), dtype=np.float32)
        for k in analysis.k:
            t = time.perf_counter()
            centroids, _, _ = fit_kmeans(x, k, seed, kmeans.niter, log=log, init=kmeans.init)
            fit_seconds[layer, k] = time.perf_counter() - t
            indexes[layer, k] = faiss.IndexFlatL2(centroids.shape[1])
            indexes[layer, k].add(centroids)
        log(f"units-analysis: layer {layer}: k-means {', '.join(map(str, analysis.k))} on {len(x)} frames")
    units: dict[tuple[int, int], list[np.ndarray]] = {key: [] for key in indexes}
    for utt in tqdm(scored, desc=f"units-analysis: {analysis.split} units", unit="utt", disable=not progress):
        feats = extract(np.asarray(audio[utt][1]), audio[utt][0])
        for (layer, k), index in indexes.items():
            units[layer, k].append(assign_units(feats[layer], index))

    rows = []
    for (layer, k), z in units.items():
        q = unit_quality(y, np.concatenate(z))
        rows.append({"kind": "grid", "source": ssl.source, "layer": layer, "k": k,
                     "fit_seconds": fit_seconds[layer, k], "utterances": len(scored), **q})
    rows += _pipeline_rows(units_paths, phones, ssl, kmeans)
    rows += _model_rows(models or {})
    table = pa.Table.from_pylist([{c: r.get(c) for c in SCHEMA.names} for r in rows], schema=SCHEMA)
    meta = {"stage": STAGE, "version": __version__, "split": analysis.split,
            "config_hash": config_hash(dict(ssl_cfg), dict(kmeans_cfg), dict(cfg))}
    table = table.replace_schema_metadata({f"lipspeech.{k}": str(v) for k, v in meta.items()})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    write_rejected(rejected_out, STAGE, rejected)
    return table


def _pipeline_rows(units_paths: Sequence[Path], phones: Mapping[str, np.ndarray], ssl: SslConfig,
                   kmeans: KmeansConfig) -> list[dict[str, Any]]:
    ys, zs = [], []
    for path in units_paths:
        store = Store(path, expect_stage="units")
        for i, utt in enumerate(store.utts):
            if utt in phones:
                z = np.asarray(store.array("units", i))
                n = min(len(z), len(phones[utt]))
                ys.append(phones[utt][:n])
                zs.append(z[:n])
    if not zs:
        return []
    q = unit_quality(np.concatenate(ys), np.concatenate(zs))
    layer = MFCC_LAYER if ssl.source == "mfcc" else ssl.layer
    return [{"kind": "pipeline", "source": ssl.source, "layer": layer, "k": kmeans.k,
             "utterances": len(zs), **q}]
