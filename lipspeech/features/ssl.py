"""SSL-features stage: per shard, 50 Hz frame features that k-means turns into units.

Two sources (config ``ssl.source``):

``hubert``
    The paper's target: hidden states of one transformer layer of HuBERT
    (default layer 12 of ``facebook/hubert-large-ll60k``) through transformers'
    ``HubertModel(..., output_hidden_states=True).hidden_states[layer]``.
    ``hidden_states[0]`` is the input of the first transformer layer, so
    ``hidden_states[12]`` is the output of the 12th. The model comes from a local
    directory (``save_pretrained`` layout) or a Hugging Face id already in the HF
    cache; nothing is downloaded when ``HF_HUB_OFFLINE=1``. Utterances are batched
    by length (at most ``ssl.batch_seconds`` of padded audio per batch), in half
    precision on a GPU and float32 on the CPU. Models with layer-normalised conv
    features (HuBERT large) get an attention mask; group-norm models (HuBERT base)
    would mix padding into the group statistics, so they run one utterance at a time.

``mfcc``
    The offline stand-in used by the demo config (hub weights cannot be fetched
    offline): 13 MFCCs + deltas + delta-deltas (39 dims), the features HuBERT's
    own first training iteration clustered into its first targets. HuBERT used
    them at 100 Hz; here the hop is 320 samples (20 ms, 25 ms window) so the
    frames line up with HuBERT's 50 Hz and the rest of the pipeline is unchanged.
    Units from MFCC are acoustic rather than linguistic: a clearly weaker target,
    but honest, and the code path downstream is the same.

Lengths (50 Hz, ``T * 2`` rows per utterance of ``T`` video frames):
HuBERT's conv front-end (receptive field 400, stride 320, no padding) yields
``floor((N - 400) / 320) + 1 = 2T - 1`` frames for ``N = 640 T``; the MFCC
framing reflect-pads ``(n_fft - hop) / 2`` on each side and yields exactly
``2T``. Both go through :func:`lipspeech.core.timing.fit_length` (``per_frame = 2``,
edge padding), which repeats HuBERT's last frame once.

Store ``ssl/{shard}.parquet`` (a Snakemake temp file: bulky, only k-means and
units read it): ``utt, n_frames, duration`` and ``features`` float32 ``(T * 2, D)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from lipspeech.core.config import config_hash
from lipspeech.core.runtime import DeviceError, resolve_device
from lipspeech.core.settings import MfccConfig, SslConfig
from lipspeech.core.shards import ShardResult, StageError, audio_problem, read_audio_input
from lipspeech.core.store import one_line
from lipspeech.core.timing import SAMPLE_RATE, UNITS_PER_FRAME, fit_length
from lipspeech.features.audio import frame_pad

STAGE = "ssl"
UNIT_HOP = 320  # samples per 50 Hz frame
MFCC_WIN = 400  # 25 ms
MFCC_NFFT = 512


# --------------------------------------------------------------------------- MFCC


def deltas(x: np.ndarray, width: int = 2) -> np.ndarray:
    """Regression deltas along time (Kaldi's formula), edges repeated.

    Args:
        x: (L, D) features.
        width: frames on each side (2 = Kaldi/HTK default, a 5-frame window).

    Returns:
        (L, D) ``d_t = sum_n n (x_{t+n} - x_{t-n}) / (2 sum_n n^2)``.
    """
    padded = np.pad(x, ((width, width), (0, 0)), mode="edge")
    length = len(x)
    num = np.zeros_like(x)
    for n in range(1, width + 1):
        num += n * (padded[width + n : width + n + length] - padded[width - n : width - n + length])
    return (num / (2 * sum(n * n for n in range(1, width + 1)))).astype(x.dtype)


def mfcc_features(audio: np.ndarray, n_frames: int, mfcc_cfg: MfccConfig | Mapping[str, Any]) -> np.ndarray:
    """(T * 640,) audio -> (T * 2, n_mfcc * (1 + deltas)) float32 MFCC (+ deltas) at 50 Hz
    (``mfcc_cfg``: the ``ssl.mfcc`` section, typed or as its mapping)."""
    import librosa

    mfcc_cfg = MfccConfig.from_section(mfcc_cfg)
    x = frame_pad(torch.tensor(audio, dtype=torch.float32)[None], MFCC_NFFT, UNIT_HOP)[0].numpy()
    mfcc = librosa.feature.mfcc(
        y=x, sr=SAMPLE_RATE, n_mfcc=mfcc_cfg.n_mfcc, n_mels=mfcc_cfg.n_mels,
        n_fft=MFCC_NFFT, win_length=MFCC_WIN, hop_length=UNIT_HOP, center=False, window="hann",
    ).T.astype(np.float32)
    feats = [mfcc]
    for _ in range(mfcc_cfg.deltas):
        feats.append(deltas(feats[-1]))
    return np.ascontiguousarray(fit_length(np.concatenate(feats, axis=1), n_frames, UNITS_PER_FRAME, pad="edge"))


# --------------------------------------------------------------------------- HuBERT


@dataclass
class LoadedHubert:
    """A HuBERT model ready for inference, with how it wants its input."""

    model: Any  # transformers.HubertModel
    device: torch.device
    dtype: torch.dtype
    normalize: bool  # zero-mean unit-variance input per utterance (HuBERT large was trained so)
    use_mask: bool  # layer-norm conv features: padding can be masked, so batches may mix lengths


def _looks_like_path(name: str) -> bool:
    return name.startswith((os.sep, ".", "~")) or name.count("/") > 1 or Path(name).exists()


def missing_model_message(name: str, why: str) -> str:
    """The one line that says how to provide a model."""
    return one_line(
        f"HuBERT model {name!r} not available ({why}). Give ssl.model as a local directory written by "
        f"save_pretrained (config.json + weights), or fetch it once into the Hugging Face cache on a machine "
        f"with internet (`huggingface-cli download {name}`) and run with HF_HUB_OFFLINE=1; "
        f"or set ssl.source: mfcc to need no model.",
        limit=600,
    )


def load_hubert(name: str, layer: int, device: str, half: bool) -> LoadedHubert:
    """Load a HuBERT model from a local directory or the Hugging Face cache.

    A hub id is first looked up in the local cache only; it is downloaded only
    when that fails and ``HF_HUB_OFFLINE`` is not set (an offline machine would
    otherwise spend half a minute in retries before failing).

    Raises:
        StageError: one line saying how to provide the model, or that ``layer``
            is beyond the model's depth.
    """
    from transformers import HubertModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # its warnings about unused weights would bury our one-line errors
    path = Path(name).expanduser()
    if path.is_dir():
        sources = [(str(path), {})]
    elif _looks_like_path(name):
        raise StageError(missing_model_message(name, "no such directory"))
    else:
        sources = [(name, {"local_files_only": True})]
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes", "on"):
            sources.append((name, {}))
    model, why = None, "unknown"
    for source, kwargs in sources:
        try:
            model = HubertModel.from_pretrained(source, **kwargs)
            break
        except (OSError, ValueError) as exc:  # transformers reports missing files and bad ids as these
            why = one_line(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, limit=160)
    if model is None:
        raise StageError(missing_model_message(name, why))
    n_layers = model.config.num_hidden_layers
    if not 0 <= layer <= n_layers:
        raise StageError(f"ssl.layer {layer}: model {name!r} has hidden states 0..{n_layers}")
    try:
        dev = resolve_device(device, "ssl.device")
    except DeviceError as exc:
        raise StageError(str(exc)) from None
    dtype = torch.float16 if (half and dev.type == "cuda") else torch.float32
    model = model.to(device=dev, dtype=dtype).eval()
    use_mask = model.config.feat_extract_norm == "layer"
    normalize = _wants_normalized_input(name if not path.is_dir() else str(path), default=use_mask)
    return LoadedHubert(model, dev, dtype, normalize, use_mask)


def _wants_normalized_input(source: str, default: bool) -> bool:
    """The feature extractor's ``do_normalize`` when one is saved with the model, else ``default``.

    HuBERT large (layer-norm conv) was trained on normalised input, HuBERT base was not;
    without a preprocessor config the conv normalisation type is the best guide.
    """
    try:
        from transformers import Wav2Vec2FeatureExtractor

        return bool(Wav2Vec2FeatureExtractor.from_pretrained(source, local_files_only=True).do_normalize)
    except (OSError, ValueError):
        return default


def length_batches(lengths: Sequence[int], max_samples: int, allow_mixed: bool = True) -> Iterator[list[int]]:
    """Group indices into batches of similar length with at most ``max_samples`` padded samples.

    Indices are sorted by length (longest first, so memory peaks in the first batch);
    an utterance longer than the budget is a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        if batch and (not allow_mixed or (len(batch) + 1) * lengths[batch[0]] > max_samples):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def hubert_batch(hub: LoadedHubert, audios: Sequence[np.ndarray], layer: int) -> list[np.ndarray]:
    """Hidden states of one layer for a batch of utterances.

    Args:
        hub: the loaded model.
        audios: B waveforms (N_b,) float32 at 16 kHz.
        layer: index into ``hidden_states`` (0 = transformer input).

    Returns:
        B arrays (L_b, D) float32, ``L_b`` = conv output length of ``N_b`` (no padding frames).
    """
    return [states[layer] for states in hubert_layers(hub, audios, [layer])]


def hubert_layers(hub: LoadedHubert, audios: Sequence[np.ndarray], layers: Sequence[int]) -> list[dict[int, np.ndarray]]:
    """Hidden states of several layers from one forward pass: per utterance ``{layer: (L_b, D)}``
    (as :func:`hubert_batch`)."""
    lengths = torch.tensor([len(a) for a in audios])
    x = torch.zeros(len(audios), int(lengths.max()))
    for i, a in enumerate(audios):
        a = torch.tensor(a, dtype=torch.float32)
        if hub.normalize:
            a = (a - a.mean()) / torch.sqrt(a.var(unbiased=False) + 1e-7)
        x[i, : len(a)] = a
    mask = (torch.arange(x.shape[1])[None] < lengths[:, None]).long() if hub.use_mask else None
    with torch.inference_mode():
        out = hub.model(
            x.to(hub.device, hub.dtype),
            attention_mask=None if mask is None else mask.to(hub.device),
            output_hidden_states=True,
        )
        states = {layer: out.hidden_states[layer].float().cpu().numpy() for layer in layers}
        n_out = hub.model._get_feat_extract_output_lengths(lengths).tolist()
    return [{layer: np.ascontiguousarray(s[i, : int(n)]) for layer, s in states.items()} for i, n in enumerate(n_out)]


# --------------------------------------------------------------------------- stage


def ssl_shard(
    audio_path: Path, ssl_cfg: Mapping[str, Any], out: Path, rejected_out: Path, progress: bool = True,
    manifest: Path | None = None, *, fail_fast: bool,
) -> tuple[int, int]:
    """Compute the 50 Hz features of every utterance of one audio store; returns (n_ok, n_rejected).

    ``ssl_cfg``: the validated ``ssl`` mapping (the store records its hash);
    ``manifest`` and ``fail_fast`` as for :func:`lipspeech.features.mel.mel_shard`.
    """
    ssl = SslConfig.from_section(ssl_cfg)
    utts, n_frames, audio, unreadable = read_audio_input(audio_path, manifest, fail_fast)
    res = ShardResult(rejected=unreadable)
    good: list[int] = []
    for i, (utt, n, x) in enumerate(zip(utts, n_frames, audio)):
        problem = audio_problem(x, n)
        if problem:
            res.reject(utt, problem)
        else:
            good.append(i)
    feats: dict[int, np.ndarray] = {}
    extra: dict[str, Any] = {"source": ssl.source}
    bar = tqdm(total=len(good), desc=f"ssl {audio_path.stem}", unit="utt", disable=not progress)
    if ssl.source == "mfcc":
        for i in good:
            feats[i] = mfcc_features(audio[i], n_frames[i], ssl.mfcc)
            bar.update(1)
    else:
        hub = load_hubert(ssl.model, ssl.layer, ssl.device, ssl.half)
        extra.update(model=ssl.model, layer=ssl.layer, device=str(hub.device), dtype=str(hub.dtype))
        max_samples = int(ssl.batch_seconds * SAMPLE_RATE)
        for batch in length_batches([len(audio[i]) for i in good], max_samples, allow_mixed=hub.use_mask):
            idx = [good[j] for j in batch]
            for i, h in zip(idx, hubert_batch(hub, [audio[i] for i in idx], ssl.layer)):
                feats[i] = np.ascontiguousarray(fit_length(h, n_frames[i], UNITS_PER_FRAME, pad="edge"))
            bar.update(len(idx))
    bar.close()
    for i in good:
        if not np.all(np.isfinite(feats[i])):
            res.reject(utts[i], "features have NaN or infinite values")
            continue
        res.add(utts[i], n_frames[i], features=feats[i])
    if res.utts:
        extra["dim"] = int(res.arrays["features"][0].shape[1])
    return res.write(out, rejected_out, STAGE, config_hash(dict(ssl_cfg)), ["features"], extra=extra,
                     fail_fast=fail_fast)
