"""Face backends on the footage conditions of ``tests/footage.py``: detection rate, mouth error, speed.

For every condition (a real photo moved, tilted, turned, blurred, shrunk, darkened, re-encoded, with
glasses, a microphone, a second face) and backend: the ROI stage's tracker over 50 frames
(``process_frames`` with the schema's ``roi`` defaults), the share of frames with a face, the mouth
centre's error against the truth (frame px, mean and max), the crop centre's error (crop px: share of
frames within 3, and max), and ms per frame (one thread). Then detection + fit alone per frame size.

    .venv/bin/python benchmarks/face_backends.py [--backends dlib,mediapipe] [--conditions "tilt 30 deg;..."]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from footage import CONDITIONS, clip, crop_centre_error, photo  # noqa: E402

from lipspeech.core.config import validate_config  # noqa: E402
from lipspeech.vision.backends import make_backend  # noqa: E402
from lipspeech.vision.roi import RoiConfig, RoiRejected, process_frames  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="dlib,mediapipe")
    ap.add_argument("--conditions", default=";".join(CONDITIONS))
    ap.add_argument("--frames", type=int, default=50)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    backends = args.backends.split(",")
    cfg = RoiConfig.from_section(validate_config({})["roi"])
    print("| condition | backend | detected | mouth err px (mean / max) | crop err <= 3 px | crop err max | ms / frame |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in args.conditions.split(";"):
        frames, truth = clip(CONDITIONS[name], args.frames)
        for b in backends:
            backend = make_backend(b, cfg.detect_max_side, cfg.detect_upsample)
            t0 = time.perf_counter()
            try:
                r = process_frames(frames, backend, cfg)
            except RoiRejected as exc:
                print(f"| {name} | {b} | rejected: {exc} | | | | {1e3 * (time.perf_counter() - t0) / len(frames):.0f} |")
                continue
            ms = 1e3 * (time.perf_counter() - t0) / len(frames)
            err = np.linalg.norm(r.landmarks[:, 48:68].mean(1) - truth, axis=1)
            ce = crop_centre_error(r.affine, truth, cfg.crop_size)
            print(f"| {name} | {b} | {r.qc['detection_rate']:.2f} | {err.mean():.1f} / {err.max():.1f} | "
                  f"{(ce <= 3).mean():.2f} | {ce.max():.1f} | {ms:.0f} |", flush=True)
    print("\n| frame | backend | detect ms | fit ms |")
    print("| --- | --- | ---: | ---: |")
    img, _ = photo("astronaut")
    for w, h in ((360, 288), (1280, 720), (1920, 1080)):
        frame = np.full((h, w), 90, np.uint8)
        k = 0.6 * h / img.shape[0]
        face = cv2.resize(img, None, fx=k, fy=k)
        y0, x0 = (h - face.shape[0]) // 2, (w - face.shape[1]) // 2
        frame[y0:y0 + face.shape[0], x0:x0 + face.shape[1]] = face
        for b in backends:
            backend = make_backend(b, cfg.detect_max_side, cfg.detect_upsample)
            box = backend.detect(frame)[0]
            n = 10
            t0 = time.perf_counter()
            for _ in range(n):
                backend.detect(frame)
            t1 = time.perf_counter()
            for _ in range(n):
                backend.fit(frame, box)
            t2 = time.perf_counter()
            print(f"| {w}x{h} | {b} | {1e3 * (t1 - t0) / n:.1f} | {1e3 * (t2 - t1) / n:.1f} |", flush=True)


if __name__ == "__main__":
    main()
