"""The commands that are not workflow stages: speak (any video -> WAV), live (a live source -> audio as it
arrives), serve (a web page for both), summary, config, store-info."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lipspeech.core import stagecli as sc

#: the default of an option whose default is its options dataclass's (live.LiveOptions, liveengine.EngineOptions,
#: serve.ServeOptions, serve()'s): left out of args when not given, so the dataclass's default stands (written once)
OWN = argparse.SUPPRESS


def cmd_speak(args: argparse.Namespace) -> int:
    from lipspeech.commands.speak import format_report, speak
    from lipspeech.core.config import load_config

    cfg = load_config(args.config) if args.config else None
    sc.torch_threads(args.threads)
    res = speak(args.video, args.out, args.model, vocoder=args.vocoder, config=cfg, device=args.device,
                temperature=args.temperature, speaker=args.speaker)
    print(format_report(args.video, args.out, res))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from lipspeech.commands.summary import corpus_summary, format_summary, summarize
    from lipspeech.core.store import write_text_atomic

    if args.manifest:
        summary = summarize(Path(args.manifest), sc.paths(args.stores), sc.paths(args.rejected_tables),
                            args.corpus or Path(args.manifest).parent.name)
    elif args.results:
        summary = corpus_summary(Path(args.results))
    else:
        raise SystemExit("summary: give a results folder, or --manifest with --stores and --rejected-tables")
    text = format_summary(summary)
    if args.out:
        write_text_atomic(args.out, text)
        write_text_atomic(Path(args.out).with_suffix(".json"), json.dumps(summary, indent=1, sort_keys=True))
    print(text, end="")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from lipspeech.core.config import ConfigError, describe_config, load_config

    view: Any = load_config(*args.config)
    if args.resolve:
        from lipspeech.training.stage import experiment_model_config

        view["resolved_models"] = {e["name"]: experiment_model_config(e, view["model"])
                                   for e in view["experiments"] if not e.get("model_from")}
    for name in (args.section.split(".") if args.section else []):
        if not isinstance(view, dict) or name not in view:
            raise ConfigError(f"config --section {args.section}: no such section (known here: "
                              f"{', '.join(view) if isinstance(view, dict) else 'none'})")
        view = view[name]
    if args.describe:
        print(describe_config(view, args.section or ""), end="")
    else:
        print(yaml.safe_dump(view, sort_keys=False, width=100, default_flow_style=None), end="")
    return 0


def cmd_store_info(args: argparse.Namespace) -> int:
    from lipspeech.core.store import Store

    store = Store(args.path)
    print(json.dumps(store.meta_dict, indent=1, sort_keys=True))
    print(f"{len(store)} rows; columns: {', '.join(store.table.column_names)}")
    print(store.df.head(args.rows).to_string())
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    from lipspeech.commands.live import main_live

    return main_live(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from lipspeech.commands.serve import main_serve

    return main_serve(args)


def register_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="a web page for a model: upload a clip, or speak live from the camera")
    p.add_argument("--model", required=True, help="model checkpoint (a streaming one for the live camera; any for clips)")
    p.add_argument("--host", default=OWN, help="address to bind (default 127.0.0.1: this machine only); any "
                   "other needs the access token printed at start")
    p.add_argument("--port", type=int, default=OWN)
    p.add_argument("--vocoder", help="HiFi-GAN checkpoint or griffin-lim (default: the --config's, else Griffin-Lim)")
    p.add_argument("--config", help="config.yaml whose vocoder section to use")
    p.add_argument("--examples", nargs="*", help="clips (or folders of clips) on this machine that the page offers, "
                   "e.g. a corpus's test videos")
    p.add_argument("--max-upload-mb", type=float, default=OWN, help="largest clip accepted")
    p.add_argument("--max-seconds", type=float, default=OWN, help="longest clip accepted")
    p.add_argument("--max-streams", type=int, default=OWN, help="live streams at once; one more is told the machine "
                   "is busy (2: what 2 idle CPU cores held in real time with the small 2 + 1 model, "
                   "benchmarks/serve_live.py; cores shared with other work held 1)")
    p.add_argument("--on-lag", choices=["drop", "wait"], default=OWN, help="as for lipspeech live")
    p.add_argument("--max-lag-ms", type=float, default=OWN)
    p.add_argument("--chunk-frames", type=int, default=OWN, help="video frames per model chunk (default: the model's)")
    p.add_argument("--roi-lag", type=int, default=OWN, help="frames the mouth crops wait for smoothing")
    p.add_argument("--keyframe-interval", type=int, default=OWN, help="face detection every N frames")
    p.add_argument("--device", default=OWN, help="cpu, cuda, cuda:N, auto")
    p.add_argument("--temperature", type=float, default=OWN, help="std of the post-net prior (default: the model's)")
    p.add_argument("--speaker", help="speaker name or index, for models with a speaker embedding")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (shared by all streams)")
    p.set_defaults(func=cmd_serve)


def register(sub: Any) -> None:
    p = sub.add_parser("speak", help="speech from any talking-face video with a trained model: VIDEO -> WAV")
    p.add_argument("video", help="video file (any format ffmpeg reads)")
    p.add_argument("-o", "--out", required=True, help="WAV file to write (16 kHz mono)")
    p.add_argument("--model", required=True, help="model checkpoint (results/{corpus}/models/{exp}/ckpt/best.pt); it "
                   "carries the model, mel and ROI settings and speaker names it was trained with")
    p.add_argument("--vocoder", help="HiFi-GAN checkpoint or griffin-lim (default: the --config's vocoder, else "
                   "Griffin-Lim)")
    p.add_argument("--config", help="config.yaml whose vocoder section to use (nothing else is read from it)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--temperature", type=float, help="std of the post-net prior (default: the model's)")
    p.add_argument("--speaker", help="speaker name or index, for models with a speaker embedding")
    p.add_argument("--threads", type=int, default=sc.DEFAULT_THREADS, help="torch CPU threads")
    p.set_defaults(func=cmd_speak)

    p = sub.add_parser("live", help="speech from a live talking-face video (file, camera, network stream) as it "
                       "arrives, with a streaming model")
    p.add_argument("source", help="anything ffmpeg reads: a file (with --realtime: at its own pace), /dev/videoN, "
                   "udp://, rtp://, rtsp://, http(s)://, tcp://, srt://")
    p.add_argument("-o", "--out", help="WAV written as it grows (16 kHz mono; valid at any moment); - = stdout")
    p.add_argument("--stdout", action="store_true", help="raw 16 kHz 16-bit mono PCM on stdout "
                   "(| aplay -f S16_LE -r 16000 -c 1, | ffplay -f s16le -ar 16000 -ac 1 -)")
    p.add_argument("--model", required=True, help="checkpoint of a model trained with model.streaming")
    p.add_argument("--vocoder", default=OWN, help="HiFi-GAN checkpoint (streamed with its receptive field) or griffin-lim "
                   "(windowed); default: the --config's vocoder, else Griffin-Lim")
    p.add_argument("--config", help="config.yaml whose vocoder section to use")
    p.add_argument("--realtime", action="store_true", default=OWN, help="read a file at its own pace, as a camera "
                   "delivers frames")
    p.add_argument("--chunk-frames", type=int, default=OWN, help="video frames per model chunk (default: the model's)")
    p.add_argument("--roi-lag", type=int, default=OWN, help="frames the mouth crops wait for smoothing "
                   "(0: none; roi.smoothing // 2: the roi stage's centred smoothing)")
    p.add_argument("--keyframe-interval", type=int, default=OWN, help="face detection every N frames (the "
                   "tracker fits in between); more often than the roi stage's 25, so a face that goes is noticed")
    p.add_argument("--on-lag", choices=["drop", "wait"], default=OWN, help="when processing falls behind by "
                   "more than --max-lag-ms: drop the waiting frames (silence) or keep every frame and drift")
    p.add_argument("--max-lag-ms", type=float, default=OWN)
    p.add_argument("--timeout", type=float, default=OWN, help="seconds without a frame after which the source "
                   "counts as stopped")
    p.add_argument("--open-timeout", type=float, default=OWN, help="seconds to wait for the first frame")
    p.add_argument("--size", help="WIDTHxHEIGHT to scale the picture into (aspect kept), e.g. 640x480 for "
                   "cheaper face detection; default: the source's own size (the longer side at most 1920), so a "
                   "small face stays as large as the camera shows it")
    p.add_argument("--device", default=OWN, help="cpu, cuda, cuda:N, auto")
    p.add_argument("--temperature", type=float, default=OWN, help="std of the post-net prior (default: the model's)")
    p.add_argument("--speaker", default=OWN, help="speaker name or index, for models with a speaker embedding")
    p.add_argument("--seed", type=int, default=OWN)
    # the command's own default (LiveOptions.threads None: run_live leaves torch's threads as they are)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: ffmpeg and the face "
                   "tracker need a core too; on 2 cores, 2 threads made the whole 3x slower)")
    p.add_argument("--quiet", action="store_true", help="no status line")
    p.set_defaults(func=cmd_live)

    register_serve(sub)

    p = sub.add_parser("summary", help="one-screen summary of a corpus's results folder (or of the files given)")
    p.add_argument("results", nargs="?", help="results/{corpus} folder (its stores and rejected tables)")
    p.add_argument("--manifest", help="instead of a folder: the manifest ...")
    p.add_argument("--stores", nargs="*", help="... the per-shard stores (any stage; each says its own) ...")
    p.add_argument("--rejected-tables", nargs="*", help="... and the rejected tables")
    p.add_argument("--corpus", help="corpus name shown (default: the manifest's folder)")
    p.add_argument("--out", help="also write the text here (and .json beside it)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("config", help="the config the workflow runs: config files merged in order over the schema's "
                       "defaults, validated (every key, with the values left out filled in)")
    p.add_argument("config", nargs="*", help="config files, later over earlier, as snakemake's --configfile "
                   "(none: the defaults)")
    p.add_argument("--section", help="only this section (e.g. train, model, vocoder.train)")
    p.add_argument("--describe", action="store_true", help="comment each key with the first sentence of its "
                   "description in the schema")
    p.add_argument("--resolve", action="store_true", help="also each experiment's full flat model config (its "
                   "preset, the model section's overrides and streaming, its own) under resolved_models")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("store-info", help="show a feature store's metadata and first rows")
    p.add_argument("path")
    p.add_argument("--rows", type=int, default=5)
    p.set_defaults(func=cmd_store_info)
