"""Where the streaming model's speech loses to the offline model's: hybrids of the two, scored.

    python benchmarks/stream_hybrid.py --results results/synthgrid_grid \\
        --config configs/gridscale.yaml configs/gridscale_streaming.yaml \\
        --offline ltbs_init_more2 --streaming ltbs_stream_align_more2 --swap offline_decoder

Run from the repository root (it reads ``config.yaml`` and the ``--config`` files after it, as
the workflow does). Takes a trained offline model and a streaming model of the same corpus, decodes
the test split with the streaming model in chunks of ``--chunk`` frames (as ``lipspeech live``
does) and swaps in parts of the offline model:

- ``units``, ``pitch``, ``energy``: the offline model's predictions (unit argmax, pitch, energy values)
  embedded instead of the streaming model's own, the rest the streaming model's;
- ``offline_decoder``: the streaming model's encoder and variance adaptor, then the offline model's
  decoder and post-net (whole clip: it is not causal);
- ``offline_postnet``: the streaming model's decoder in chunks, then the offline model's post-net
  (whole clip) on its output;
- ``streaming_decoder``: the offline model's encoder and variance adaptor (whole clip), then the
  streaming model's decoder and post-net in chunks.

A hybrid is a measurement, not a model that streams: whichever swap brings a figure to the offline
model's says where its gap is made. The mels go through the configured vocoder and the evaluate stage
as any system's (``--out``, default ``<results>/hybrids/hybrid_<swaps>``), and the figures are printed with
the paired differences against both models' own ``eval/<model>_c<chunk>``/``eval/<model>`` tables
when those exist. With no swap it reproduces the streaming model's own mels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from lipspeech.core.config import config_hash, load_config
from lipspeech.core.settings import VocoderConfig
from lipspeech.core.shards import shard_stores
from lipspeech.evaluation.compare import paired, utterance_columns
from lipspeech.evaluation.stage import run_evaluate
from lipspeech.features.audio import AudioConfig
from lipspeech.models.batch import lengths_to_mask
from lipspeech.models.ltbs import LTBSModel
from lipspeech.training.bundle import ModelBundle, load_model
from lipspeech.training.stage import corpus_stores, write_mels
from lipspeech.training.stores import VIDEO_STORES, StoreDataset
from lipspeech.training.synthesis import synthesize
from lipspeech.vocoder.api import load_vocoder
from lipspeech.vocoder.stage import run_vocode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_goal import difference_text, system_folder  # noqa: E402

SWAPS = ("units", "pitch", "energy", "offline_decoder", "offline_postnet", "streaming_decoder")
PREDICTIONS = ("units", "pitch", "energy")
FIGURES = ["wer", "cer", "stoi", "mcd", "dnsmos_p808", "dnsmos_ovrl", "speaker_sim"]


class Hybrid(torch.nn.Module):
    """The streaming model with the parts ``swaps`` names taken from the offline model; its
    :meth:`infer` is the models' own, so :func:`~lipspeech.training.synthesis.synthesize` runs it."""

    def __init__(self, offline: LTBSModel, streaming: LTBSModel, swaps: set[str]):
        super().__init__()
        self.off, self.stream, self.swaps = offline, streaming, swaps

    def infer(self, video, video_lengths, temperature=None, speakers=None, generator=None, chunk_frames=None):
        off, stream, swaps = self.off, self.stream, self.swaps
        mask = lengths_to_mask(video_lengths, video.shape[1])
        if "streaming_decoder" in swaps:
            h, _ = off.adaptor(off.encode(video, mask, speakers, None), mask)
        else:
            given = {}
            if swaps & set(PREDICTIONS):
                _, po = off.adaptor(off.encode(video, mask, speakers, None), mask)
                given = {"units": po["unit_logits"].argmax(-1), "pitch": po["pitch"], "energy": po["energy"]}
            h, _ = stream.adaptor(stream.encode(video, mask, speakers, chunk_frames), mask,
                                  **{k: v for k, v in given.items() if k in swaps})
        decoder, chunk = (off, None) if "offline_decoder" in swaps else (stream, chunk_frames)
        coarse, states, mel_mask = decoder.decode(h, mask, chunk)
        postnet = off if swaps & {"offline_decoder", "offline_postnet"} else stream
        return coarse, postnet.sample_post(coarse, states, mel_mask, temperature, generator)


def synthesis_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments of a scored synthesis of the test split: ``--results``, ``--config``, ``--temperature``."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--results", type=Path, required=True, help="results/<corpus>")
    ap.add_argument("--config", nargs="*", default=[], help="the run's config files after config.yaml")
    ap.add_argument("--temperature", type=float, default=0.0, help="the post-net's")
    return ap


def model_parser(doc: str, several: bool = False) -> argparse.ArgumentParser:
    """``synthesis_parser``'s arguments and trained models': ``--model`` (``--models`` with ``several``),
    ``--chunk``, ``--compare``."""
    ap = synthesis_parser(doc)
    if several:
        ap.add_argument("--models", nargs="+", required=True, help="the experiment names of trained models")
    else:
        ap.add_argument("--model", required=True, help="the experiment name of a trained model")
    ap.add_argument("--chunk", type=int, help="decode a streaming model in chunks of this many frames")
    ap.add_argument("--compare", nargs="*", default=[], help="eval systems to print paired differences from")
    return ap


def score_model(ap: argparse.ArgumentParser, args: argparse.Namespace, wrap: Callable[[LTBSModel], torch.nn.Module],
                name: str, meta: dict) -> None:
    """:func:`score_bundle` ``wrap`` of ``args.model``'s averaged weights (the arguments of :func:`model_parser`)."""
    torch.set_num_threads(2)
    bundle = load_model(args.results / "models" / args.model / "ckpt" / "best.pt", "cpu", weights="average")
    score_bundle(ap, args, args.model, bundle, wrap(bundle.model), name, meta)


def score_bundle(ap: argparse.ArgumentParser, args: argparse.Namespace, source: str | list[str], bundle: ModelBundle,
                 model: torch.nn.Module, name: str, meta: dict) -> None:
    """:func:`score` ``model`` (made from ``bundle``'s, trained as experiment ``source``) as
    ``<results>/hybrids/<name>``, its key ``source``, the chunk, ``meta`` and the temperature (``args``: those
    of :func:`model_parser`)."""
    if args.chunk is not None and bundle.model.streaming is None:
        ap.error(f"--chunk: {source} is an offline model")
    R = args.results
    out = R / "hybrids" / name
    out.mkdir(parents=True, exist_ok=True)
    data = StoreDataset(corpus_stores(R, False), "test", VIDEO_STORES, bundle.speakers)
    key = config_hash({"model": source, "chunk": args.chunk}, {**meta, "temperature": args.temperature})
    score(model, data, load_config("config.yaml", *args.config), R, out, name, key, args.chunk,
          args.temperature, bundle.model_cfg["n_mels"], meta, args.compare)


def main() -> None:
    ap = synthesis_parser(__doc__)
    ap.add_argument("--offline", required=True, help="the offline model's experiment name")
    ap.add_argument("--streaming", required=True, help="the streaming model's experiment name")
    ap.add_argument("--chunk", type=int, default=2, help="decode in chunks of this many frames")
    ap.add_argument("--swap", nargs="*", default=[], choices=SWAPS)
    ap.add_argument("--out", type=Path, help="where the mels, audio and metrics go")
    args = ap.parse_args()
    if len(set(args.swap) & {"offline_decoder", "offline_postnet", "streaming_decoder"}) > 1:
        ap.error("offline_decoder, offline_postnet and streaming_decoder exclude each other")
    if "streaming_decoder" in args.swap and set(args.swap) & {"units", "pitch", "energy"}:
        ap.error("streaming_decoder takes the offline adaptor's output whole: no prediction to swap")
    torch.set_num_threads(2)
    R, swaps = args.results, set(args.swap)
    name = "hybrid_" + ("_".join(sorted(swaps)) or "none")
    out = args.out or R / "hybrids" / name
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config("config.yaml", *args.config)
    off = load_model(R / "models" / args.offline / "ckpt" / "best.pt", "cpu", weights="average")
    st = load_model(R / "models" / args.streaming / "ckpt" / "best.pt", "cpu", weights="average")
    if st.model.streaming is None or off.model.streaming is not None:
        raise SystemExit("--streaming must name a streaming model and --offline an offline one")
    data = StoreDataset(corpus_stores(R, False), "test", VIDEO_STORES, st.speakers)
    key = config_hash({"offline": args.offline, "streaming": args.streaming, "chunk": args.chunk},
                      {"swaps": sorted(swaps), "temperature": args.temperature})
    score(Hybrid(off.model, st.model, swaps), data, cfg, R, out, name, key, args.chunk, args.temperature,
          st.model_cfg["n_mels"], {"swaps": sorted(swaps)}, [f"{args.streaming}_c{args.chunk}", args.offline])


def score(model: torch.nn.Module, data: StoreDataset, cfg: dict, results: Path, out: Path, name: str, key: str,
          chunk: int | None, temperature: float, n_mels: int, meta: dict, compare: list[str]) -> None:
    """Synthesise the test split ``data`` with ``model`` (anything with the models' ``infer``) in chunks of
    ``chunk`` frames (None: whole clips), then vocode and evaluate it as the workflow does, into ``out``; print
    its paired differences from each system of ``compare`` (``eval/<system>``, or a folder under the results
    when the name has a slash) whose metrics table exists."""
    synthesised = synthesize(model, (data[i] for i in range(len(data))), temperature=temperature, chunk_frames=chunk)
    write_mels(out / "mels.parquet", synthesised, key, {"experiment": name, **meta, "split": "test",
                                                     "temperature": temperature, "n_mels": n_mels})
    section = VocoderConfig.from_section(cfg["vocoder"])
    vocoder = load_vocoder(section, AudioConfig.from_section(cfg["mel"]), "cpu",
                           checkpoint=results / "vocoder" / "ckpt" / "best.pt" if section.kind == "hifigan" else None)
    run_vocode(name, vocoder, cfg["vocoder"], cfg["mel"], out / "audio.parquet", out / "audio.rejected.parquet",
               mels=out / "mels.parquet", progress=False)
    run_evaluate(name, results / "manifest.parquet", shard_stores(results / "audio"), out / "audio.parquet",
                 cfg["evaluate"], cfg["prosody"], cfg["mel"], out / "metrics.parquet", out / "summary.json",
                 out / "metrics.rejected.parquet", progress=False, threads=2)
    mine = utterance_columns(pd.read_parquet(out / "metrics.parquet"))
    for system in compare:
        table = system_folder(results, system) / "metrics.parquet"
        if table.exists():
            diff = paired(utterance_columns(pd.read_parquet(table)), mine, FIGURES, 1000, 1234)
            print(f"{name} - {system}: " + "; ".join(f"{m} {difference_text(diff[m], digits=3)}" for m in FIGURES))


if __name__ == "__main__":
    main()
