"""ROI stage throughput: tracking (detect on key frames) vs detecting on every frame.

    python benchmarks/roi_throughput.py [--frames 100] [--repeat 3]

Scenes: skimage's astronaut photo translated along a Lissajous path (sub-pixel), on
a 360x288 canvas (GRID's size), on a 1280x720 canvas, and shrunk to a small face on
a 1920x1080 canvas. Both modes run :func:`lipspeech.vision.roi.process_frames` with
the default config (``--backend``: dlib unless told), once with ``keyframe_interval`` 25 (tracking,
the default) and once with 1 (the detector on every frame), in the same run.
Frames per second cover landmarks, smoothing, alignment and the 96x96 crops, not
the video decode. "Centre dev." is the RMS deviation, in crop pixels, of the
motion-compensated crop centre from its median (0 for a perfect tracker).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import cv2
import numpy as np
import skimage.data

from lipspeech.vision.backends import make_backend
from lipspeech.vision.roi import RoiConfig, RoiRejected, process_frames


def scene(n: int, size: tuple[int, int], face_scale: float, origin: tuple[float, float]):
    img = skimage.data.astronaut()
    t = np.arange(n) / n
    off = np.stack([40 * np.sin(2 * np.pi * t) + 30 * t, 25 * np.sin(4 * np.pi * t)], 1) * face_scale
    off += np.array(origin)
    frames = np.stack([
        cv2.warpAffine(img, np.array([[face_scale, 0, dx], [0, face_scale, dy]]), size,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 90, 90))
        for dx, dy in off
    ])
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]), off


def centre_dev(res, off: np.ndarray) -> float:
    inv = np.stack([cv2.invertAffineTransform(A.astype(np.float64)) for A in res.affine])
    c = (inv[:, :, :2] @ np.array([47.5, 47.5]) + inv[:, :, 2]) - off
    scale = np.hypot(res.affine[:, 0, 0], res.affine[:, 1, 0])
    d = np.linalg.norm(c - np.median(c, 0), axis=1) * scale
    return float(np.sqrt(np.mean(d**2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backend", default="dlib", help="roi.backend (dlib, mediapipe)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    default = replace(RoiConfig.default(), backend=args.backend)
    backend = make_backend(args.backend, default.detect_max_side, default.detect_upsample)
    scenes = {
        "360x288, face ~95 px": ((360, 288), 1.0, (-70, -40)),
        "1280x720, face ~95 px": ((1280, 720), 1.0, (300, 100)),
        "1920x1080, small face ~60 px": ((1920, 1080), 0.65, (1200, 500)),
        "1280x720, small face ~50 px": ((1280, 720), 0.52, (500, 250)),
    }
    print("| scene | mode | detector calls | frames/s | centre dev. (crop px) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, (size, scale, origin) in scenes.items():
        frames, off = scene(args.frames, size, scale, origin)
        for mode, k in (("tracking (keyframe_interval 25)", 25), ("detect every frame", 1)):
            cfg = replace(default, keyframe_interval=k)
            best = np.inf
            try:
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    res = process_frames(frames, backend, cfg)
                    best = min(best, time.perf_counter() - t0)
            except RoiRejected as exc:
                print(f"| {name} | {mode} | - | rejected: {exc} | - |", flush=True)
                continue
            print(f"| {name} | {mode} | {res.qc['detections']} | {len(frames) / best:.0f} | {centre_dev(res, off):.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
