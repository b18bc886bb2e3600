"""How much CPU training the demo needs: test-split WER against training steps.

    python benchmarks/demo_training.py --results results/synthgrid --run /tmp/sweep \
        [--preset small] [--train '{"lr": 1e-3}'] [--eval-at 300,600,1000] [--temperatures 0.667,0]

Trains one model on the train split of a finished corpus (``make demo`` first: it
uses the stores under ``--results``) with the config's ``train`` section updated by
``--train``, and at each step of ``--eval-at`` synthesises the test split from the
video alone and scores it as the evaluate stage does: the config's vocoder
(Griffin-Lim in the demo) and ASR (pocketsphinx with the corpus's slot grammar),
corpus-level WER/CER, for the coarse mel and for the post-net's mel at each
``--temperatures``. The learning-rate schedule spans the last ``--eval-at`` step,
so earlier rows are *not* what a run of that many steps would give (their LR has
not decayed yet). Prints one row per (step, mel) and the train/val mel L1.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from lipspeech.core.config import validate_config
from lipspeech.evaluation.asr import build_asr
from lipspeech.evaluation.text import corpus_rates, normalize_text
from lipspeech.features.audio import AudioConfig
from lipspeech.models.presets import model_config
from lipspeech.training.bundle import load_model
from lipspeech.training.config import train_config
from lipspeech.training.data import InMemoryDataset
from lipspeech.training.stores import TRAIN_STORES, VIDEO_STORES, CorpusStores, StoreDataset
from lipspeech.training.synthesis import synthesize
from lipspeech.training.trainer import train
from lipspeech.vocoder.api import load_vocoder


def loaded(corpus: CorpusStores, split: str, stores: tuple[str, ...]) -> InMemoryDataset:
    """A split's utterances assembled once (the trainer indexes them every epoch)."""
    ds = StoreDataset(corpus, split, stores)
    return InMemoryDataset(ds[i] for i in range(len(ds)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results/synthgrid", help="a corpus's results folder (after make demo)")
    ap.add_argument("--config", default="config.yaml", help="config whose train/vocoder/evaluate sections to use")
    ap.add_argument("--run", required=True, help="run directory (resumed when it exists)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--model", default="{}", help="model overrides, JSON")
    ap.add_argument("--train", default="{}", help="train-section overrides, JSON")
    ap.add_argument("--eval-at", default="300,600,1000", help="steps to score at; the schedule spans the last")
    ap.add_argument("--temperatures", default="0.667,0", help="post-net temperatures to score")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    cfg = validate_config(yaml.safe_load(Path(args.config).read_text()) or {})
    corpus = CorpusStores.from_results(args.results)
    train_data, val_data = loaded(corpus, "train", TRAIN_STORES), loaded(corpus, "val", TRAIN_STORES)
    test = list(loaded(corpus, "test", VIDEO_STORES))
    text_of = dict(zip(corpus.manifest["utt"], corpus.manifest["text"]))
    refs = [normalize_text(text_of[u.utt]) for u in test]
    asr, info = build_asr(cfg["evaluate"], list(corpus.manifest["text"]))
    vocoder = load_vocoder(cfg["vocoder"], AudioConfig.from_section(cfg["mel"]), "cpu")
    steps = [int(s) for s in args.eval_at.split(",")]
    temperatures = [float(t) for t in args.temperatures.split(",")]
    mcfg = model_config(args.preset, json.loads(args.model))
    tcfg = train_config({**cfg["train"], "max_steps": steps[-1], "threads": args.threads, "progress": False,
                         "tensorboard": False, **json.loads(args.train)})
    print(f"{args.preset} preset, train {len(train_data)} / val {len(val_data)} / test {len(test)} utterances; "
          f"lr {tcfg['lr']}, batch {tcfg['batch_size']}, {steps[-1]} steps; ASR: {info['description']}")
    print("| step | train s | mel | WER | CER | train mel L1 | val mel L1 (free) |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    run, seconds = Path(args.run), 0.0
    for stop in steps:
        started = time.perf_counter()
        result = train(mcfg, tcfg, train_data, val_data, run, resume=True, stop_at_step=stop)
        seconds += time.perf_counter() - started
        rows = {split: [h for h in result.history if h["split"] == split] for split in ("train", "val")}
        train_l1 = rows["train"][-1]["mel_l1"] if rows["train"] else float("nan")
        val_l1 = rows["val"][-1].get("mel_l1_free", float("nan")) if rows["val"] else float("nan")
        model = load_model(run / "ckpt" / "last.pt").model
        for i, t in enumerate(temperatures):
            mels = synthesize(model, test, temperature=t)
            kinds = [("coarse", "coarse")] if i == 0 else []
            for label, attr in kinds + [(f"post-net, t={t:g}", "post")]:
                hyps = [normalize_text(asr.transcribe(vocoder(getattr(m, attr)))) for m in mels]
                wer, cer = corpus_rates(refs, hyps)
                print(f"| {stop} | {seconds:.0f} | {label} | {wer:.3f} | {cer:.3f} | {train_l1:.3f} | {val_l1:.3f} |",
                      flush=True)


if __name__ == "__main__":
    main()
