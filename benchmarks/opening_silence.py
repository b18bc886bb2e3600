"""Does a model murmur where the speaker is silent? The level of each system's audio before the speech starts.

    python benchmarks/opening_silence.py --results results/synthgrid_grid ltbs_init_more3 ltbs_stream_dla2_more3_c1
    python benchmarks/opening_silence.py --results results/synthgrid_grid \\
        --live results/synthgrid_grid/models/ltbs_stream_dla2_more3/ckpt/best.pt --still 1 3 --clips 24

A test clip opens on the speaker's still, closed mouth; the ground truth's speech span
(``voice_halves.speech_span``: its first 30 ms window that the speaker scorer's silence gate keeps) marks
where the speech starts. A system's *opening* is its audio before that sample. For each system: the mean
level of the openings (dB of the mean square, full scale 0 dB), their 95th percentile, and the share of
clips whose opening is above -80 dB. The models' openings are mostly at the floor (-97 dB at grid scale:
Griffin-Lim's residue of a silent mel; -100 dB is digital silence), so a clip above -80 dB is a murmur.
Systems are ``eval/`` folders' names, or with a slash folders under the results
(``hybrids/shift25_<model>_c1``: time_shift.py's delayed clips, whose opening follows 1 s of still face).

With ``--live CKPT`` the same is measured through ``lipspeech live`` itself: for each ``S`` of ``--still``
the first ``--clips`` test videos are put one after another into one stream, each opening on ``S`` more
seconds of its own first frame (the still face a camera shows between sentences), and the stream goes
through :func:`lipspeech.commands.live.run_live` with the checkpoint (its own chunks, face tracking,
windowed Griffin-Lim). The table has the still seconds before each clip and the clip's own opening after
them as two columns. ``--apart`` streams each clip alone instead: every still stretch then follows the
stream's start, as when a camera has just been opened (``time_shift.py``'s delayed clips, through live).
The file is read as fast as it decodes (no frame is dropped), so the audio is what a camera would get
without the clock. 24 clips after 1 s of still face took 6 minutes beside a training run on 2 cores
(``--threads 1``, niced).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import soundfile as sf

from lipspeech.core.timing import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mel_gap import ground_truth  # noqa: E402
from voice_halves import speech_span, system_audio  # noqa: E402

#: an opening louder than this is counted as a murmur (digital silence is -100 dB)
MURMUR_DB = -80.0


def level_db(x: np.ndarray) -> float:
    """The level of ``x`` in dB of its mean square (-100 dB for digital silence; NaN for no samples)."""
    x = np.asarray(x, np.float64)
    return float(10.0 * np.log10(np.mean(np.square(x)) + 1e-10)) if x.size else float("nan")


def summary(levels: Sequence[float]) -> str:
    """``mean dB, 95th percentile dB, share above MURMUR_DB`` of a column of levels (NaNs left out)."""
    v = np.asarray([x for x in levels if np.isfinite(x)])
    if not v.size:
        return "- | - | -"
    return f"{v.mean():.1f} | {np.percentile(v, 95):.1f} | {100.0 * np.mean(v > MURMUR_DB):.0f} %"


def openings(results: Path, systems: Sequence[str]) -> None:
    """Print each system's opening levels (module docstring) over the utterances all of them have."""
    audio = {s: system_audio(results, s) for s in systems}
    utts = sorted(set.intersection(*(set(a) for a in audio.values())))
    spans = {u: speech_span(g) for u, g in ground_truth(results, set(utts), "audio").items()}
    starts = {u: spans[u].start or 0 for u in utts}
    mean_s = np.mean(list(starts.values())) / SAMPLE_RATE
    print(f"{len(utts)} utterances; openings before the ground truth's speech (mean {mean_s:.2f} s)\n")
    print("| system | opening: mean dB | 95th percentile dB | above -80 dB | speech: mean dB |\n"
          "| --- | ---: | ---: | ---: | ---: |")
    for s in systems:
        speech = np.mean([level_db(audio[s][u][spans[u]]) for u in utts])
        print(f"| {s} | {summary([level_db(audio[s][u][:starts[u]]) for u in utts])} | {speech:.1f} |")


def still_stream(videos: Sequence[str], seconds: float, out: Path) -> list[int]:
    """One video of ``videos`` in turn, each opening on ``seconds`` more of its own first frame (the still
    face between sentences), written losslessly (FFV1) to ``out``; returns the frame where each clip starts."""
    from lipspeech.core.media import read_frames

    lead, starts, t = int(round(seconds * FPS)), [], 0
    enc = None
    for video in videos:
        frames = read_frames(video)
        if enc is None:
            h, w = frames.shape[1:3]
            enc = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt",
                                    "rgb24", "-s", f"{w}x{h}", "-r", str(FPS), "-i", "-", "-c:v", "ffv1", str(out)],
                                   stdin=subprocess.PIPE)
        enc.stdin.write(np.repeat(frames[:1], lead, axis=0).tobytes() + frames.tobytes())
        starts.append(t + lead)
        t += lead + len(frames)
    enc.stdin.close()
    if enc.wait() != 0:
        raise SystemExit(f"ffmpeg could not write {out}")
    return starts


def live_levels(ckpt: Path, videos: Sequence[str], spans: Sequence[slice], still: float, tmp: Path,
                threads: int) -> tuple[list[float], list[float], list[float]]:
    """``videos`` as one stream, each after ``still`` seconds of its first frame, through ``run_live``: the
    levels of each still stretch (NaN for none), of each clip's own opening and of its speech (``spans``:
    each clip's speech, in samples from the clip's first frame)."""
    from lipspeech.commands.live import LiveOptions, run_live

    clip_starts = still_stream(videos, still, tmp / "stream.mkv")
    run_live(str(tmp / "stream.mkv"), ckpt, out=tmp / "live.wav", options=LiveOptions(vocoder="griffin-lim",
                                                                                      threads=threads))
    y, sr = sf.read(tmp / "live.wav", dtype="float32")
    if sr != SAMPLE_RATE:
        raise SystemExit(f"live wrote {sr} Hz, expected {SAMPLE_RATE}")
    lead = int(round(still * FPS)) * SAMPLES_PER_FRAME
    added, own, speech = [], [], []
    for t, span in zip(clip_starts, spans):
        a = t * SAMPLES_PER_FRAME
        added.append(level_db(y[a - lead:a]) if lead else float("nan"))
        own.append(level_db(y[a:a + (span.start or 0)]))
        speech.append(level_db(y[a + (span.start or 0):a + (span.stop or 0)]))
    return added, own, speech


def live_openings(results: Path, ckpt: Path, stills: Sequence[float], clips: int, threads: int,
                  apart: bool = False) -> None:
    """Stream ``clips`` test videos one after another (``apart``: each in a stream of its own), each after
    ``S`` seconds of still face, for each ``S`` of ``stills``, through ``run_live``; print the levels of the
    still seconds and of each clip's own opening."""
    manifest = pd.read_parquet(results / "manifest.parquet")
    test = manifest[manifest["split"] == "test"].sort_values("utt").head(clips)
    gt = ground_truth(results, set(test["utt"]), "audio")
    videos, spans = list(test["video_path"]), [speech_span(gt[u]) for u in test["utt"]]
    how = "each in a stream of its own" if apart else "in one stream"
    print(f"{len(test)} test clips {how} through lipspeech live ({ckpt}, windowed Griffin-Lim)\n")
    print("| still face before each clip | still: mean dB | 95th dB | above -80 dB | own opening: mean dB | 95th dB "
          "| above -80 dB | speech: mean dB |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for still in stills:
            runs = [([v], [s]) for v, s in zip(videos, spans)] if apart else [(videos, spans)]
            added, own, speech = [], [], []
            for v, s in runs:
                a, o, p = live_levels(ckpt, v, s, still, Path(tmp), threads)
                added, own, speech = added + a, own + o, speech + p
            print(f"| {still:g} s | {summary(added)} | {summary(own)} | {np.nanmean(speech):.1f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, required=True, help="a corpus's results folder")
    ap.add_argument("systems", nargs="*", help="evaluated systems (eval/ names, or hybrids/<name>)")
    ap.add_argument("--live", type=Path, help="a streaming model's checkpoint: measure through lipspeech live")
    ap.add_argument("--still", type=float, nargs="+", default=[1.0, 3.0],
                    help="seconds of still face put before each clip (with --live)")
    ap.add_argument("--clips", type=int, default=24, help="test clips streamed (with --live)")
    ap.add_argument("--apart", action="store_true",
                    help="each clip in a stream of its own (a camera just opened), not all in one (with --live)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (with --live)")
    args = ap.parse_args()
    if not args.systems and args.live is None:
        ap.error("name systems, or --live CKPT")
    if any(s < 0 for s in args.still) or args.clips < 1:
        ap.error("--still must be >= 0 and --clips >= 1")
    if args.systems:
        openings(args.results, args.systems)
    if args.live is not None:
        print()
        live_openings(args.results, args.live, args.still, args.clips, args.threads, args.apart)


if __name__ == "__main__":
    main()
