"""`lipspeech live` on a small face: frames at the source's own size against frames scaled into 640x480.

    python benchmarks/live_frame_size.py [--frames 208] [--backends dlib mediapipe]

A 1280x720 H.264 clip of a face 40 px wide (jaw to jaw; skimage's astronaut moving about the
middle of the frame, ``tests/footage.py`` ``Condition(face_px=40)``, as a webcam across a room
shows a face) goes through :func:`lipspeech.commands.live.run_live` with the default frame size (the
picture's own) and with ``size=(640, 480)`` (the default before issue #26), per face backend:
as fast as it decodes (every frame processed: frames whose crop reached the model, "with a face"
of the summary; the detector's calls on key frames; compute per second of video, RTF), and at
its own pace (``--realtime``, as a camera delivers it: frames with a face, frames dropped to keep
up). The roi stage on the same decoded frames is the reference. The model is a freshly initialised tiny streaming
checkpoint with Griffin-Lim: the face counts do not depend on its weights.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from footage import Condition, clip  # noqa: E402

import lipspeech.commands.speak  # noqa: E402
from lipspeech.commands.live import LiveOptions, run_live  # noqa: E402
from lipspeech.core.media import read_frames  # noqa: E402
from lipspeech.models.presets import model_config  # noqa: E402
from lipspeech.training import synthetic_utterances, train, train_config  # noqa: E402
from lipspeech.vision.backends import make_backend  # noqa: E402
from lipspeech.vision.roi import RoiConfig, RoiRejected, process_frames  # noqa: E402


def _with_backend(name: str, counted: list):
    """load_pipeline, with the face backend ``name`` whatever the checkpoint's roi section says, its
    detector counted (appended to ``counted``)."""
    from dataclasses import replace

    original = lipspeech.commands.speak.load_pipeline

    def load(*args, **kwargs):
        loaded = original(*args, **kwargs)
        loaded.roi_cfg = replace(loaded.roi_cfg, backend=name)
        loaded.backend = _CountDetections(make_backend(name, loaded.roi_cfg.detect_max_side,
                                                       loaded.roi_cfg.detect_upsample))
        counted.append(loaded.backend)
        return loaded

    return load


class _CountDetections:
    """Counts the detector's calls and the frames where it found a face."""

    def __init__(self, backend):
        self.backend, self.calls, self.found = backend, 0, 0

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def detect(self, gray):
        boxes = self.backend.detect(gray)
        self.calls += 1
        self.found += bool(boxes)
        return boxes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=208)
    ap.add_argument("--backends", nargs="+", default=["dlib", "mediapipe"])
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="live_frame_size_"))
    frames, _ = clip(Condition(face_px=40), T=args.frames)
    video = tmp / "face40_720p.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", "1280x720", "-r", "25",
                    "-i", "pipe:", "-c:v", "libx264", "-crf", "23", "-pix_fmt", "yuv420p", str(video)],
                   input=frames.tobytes(), check=True)
    tcfg = train_config({"max_steps": 1, "batch_size": 1, "warmup_steps": 1, "device": "cpu", "tensorboard": False,
                         "progress": False, "val_every": 1})
    cfg = model_config("tiny", {"enc_layers": 1, "dec_layers": 1, "streaming": True})
    ckpt = train(cfg, tcfg, synthetic_utterances(1, 8, n_mels=cfg["n_mels"], n_units=cfg["n_units"]), None,
                 tmp / "model").last_checkpoint
    decoded = read_frames(video, gray=True)

    rows = []
    for name in args.backends:
        try:
            roi_cfg = replace(RoiConfig.default(), backend=name)
            backend = make_backend(name, roi_cfg.detect_max_side, roi_cfg.detect_upsample)
        except Exception as exc:  # a backend that cannot run here: said, not measured
            print(f"{name}: skipped ({exc})")
            continue
        t0 = time.perf_counter()
        try:
            qc = process_frames(decoded, backend, roi_cfg).qc
            stage = f"{qc['detection_rate']:.2f}"
        except RoiRejected as exc:
            stage = f"rejected ({exc})"
        stage_s = time.perf_counter() - t0
        original = lipspeech.commands.speak.load_pipeline
        for size in (None, (640, 480)):
            counted: list[_CountDetections] = []
            lipspeech.commands.speak.load_pipeline = _with_backend(name, counted)
            res = run_live(str(video), ckpt, out=None, options=LiveOptions(vocoder="griffin-lim", threads=1, size=size))
            det = counted[0]
            paced = run_live(str(video), ckpt, out=None,
                             options=LiveOptions(vocoder="griffin-lim", threads=1, size=size, realtime=True))
            rows.append((name, "1280x720 (default)" if size is None else "640x480 (--size)", res.frames,
                         res.spoken_frames, f"{det.found}/{det.calls}", f"{res.rtf:.2f}",
                         f"{paced.spoken_frames} ({paced.dropped} dropped)", stage,
                         f"{stage_s / (len(decoded) / 25):.2f}"))
            lipspeech.commands.speak.load_pipeline = original
    print("| backend | live frames | frames | with a face | key-frame detections (found/tried) | live RTF | "
          "at pace: with a face | roi stage detection_rate | roi stage RTF |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")


if __name__ == "__main__":
    main()
