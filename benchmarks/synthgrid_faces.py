"""ROI backends on SynthGRID: detection, rejections and crop accuracy against the generator's true mouth.

Generates a one-speaker SynthGRID corpus from one face photo (``--face``: astronaut, grace_hopper, or
cameraman, a real face turned nearly to profile that dlib's frontal detector misses), optionally
degrades every clip as a webcam would (``--webcam``: sensor noise and MJPEG at a low quality), and
runs the ROI stage's per-utterance path with each backend: the share of frames with a face, the
utterances rejected (and why), and the crop centre's distance to the generator's true mouth centre
(crop px; the bar is 3 px on >= 99 % of frames).

    .venv/bin/python benchmarks/synthgrid_faces.py --face cameraman --utterances 100 --webcam
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from footage import crop_centre_error  # noqa: E402

from lipspeech.core.config import validate_config  # noqa: E402
from lipspeech.data.synth.corpus import generate_corpus  # noqa: E402
from lipspeech.vision.backends import make_backend  # noqa: E402
from lipspeech.vision.roi import RoiConfig, RoiRejected, roi_utterance  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--face", default="cameraman")
    ap.add_argument("--utterances", type=int, default=100)
    ap.add_argument("--webcam", action="store_true", help="noise + MJPEG at quality 20 (ffmpeg -q:v 20)")
    ap.add_argument("--backends", default="mediapipe,dlib")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        t0 = time.perf_counter()
        generate_corpus({"seed": 11, "speakers": ["s1"], "utterances_per_speaker": args.utterances,
                         "faces": [args.face], "frame_size": [360, 288]}, raw, threads=args.threads, progress=False)
        videos = sorted((raw / "s1").glob("*.mpg"))
        print(f"{len(videos)} utterances of {args.face} generated in {time.perf_counter() - t0:.0f} s", flush=True)
        if args.webcam:
            for v in videos:
                out = v.with_suffix(".avi")
                subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(v), "-vf", "noise=alls=8:allf=t",
                                "-c:v", "mjpeg", "-q:v", "20", "-an", str(out)], check=True)
                out.replace(v.with_suffix(".webcam.avi"))
        for name in args.backends.split(","):
            cfg = RoiConfig.from_section({**validate_config({})["roi"], "backend": name})
            backend = make_backend(name, cfg.detect_max_side, cfg.detect_upsample)
            rates, errs, rejected = [], [], []
            t0 = time.perf_counter()
            frames = 0
            for v in videos:
                true = np.load(v.parent / "mouth" / f"{v.stem}.npz")["centre"]
                clip = v.with_suffix(".webcam.avi") if args.webcam else v
                frames += len(true)
                try:
                    r = roi_utterance(str(clip), len(true), backend, cfg)
                except RoiRejected as exc:
                    rejected.append(f"{v.stem}: {exc}")
                    continue
                rates.append(r.qc["detection_rate"])
                errs.append(crop_centre_error(r.affine, true[:len(r.affine)], cfg.crop_size))
            err = np.concatenate(errs) if errs else np.zeros(0)
            ms = 1e3 * (time.perf_counter() - t0) / frames
            print(f"{name}: rejected {len(rejected)}/{len(videos)}; frames with a face (kept utterances) "
                  f"{np.mean(rates) if rates else 0:.4f} (lowest {min(rates) if rates else 0:.2f}); crop error <= 3 px "
                  f"{(err <= 3).mean() if len(err) else 0:.4f}, median {np.median(err) if len(err) else 0:.2f}, "
                  f"max {err.max() if len(err) else 0:.1f}; {ms:.1f} ms/frame", flush=True)
            for line in rejected[:5]:
                print("   ", line)


if __name__ == "__main__":
    main()
