"""Peak memory of the ROI stage against clip length: a long 1080p talking-head clip.

    python benchmarks/roi_memory.py [--minutes 0.5 2 10] [--size 1920x1080] [--work /tmp/roi-memory]

Makes each clip with ffmpeg (the astronaut face of skimage drifting across the frame, at the
given size and 25 fps, H.264), then in a fresh process per clip crops its mouth with
``roi_utterance`` (the roi stage's per-utterance work) and prints the peak RSS, the time
and the frames. A clip whose frames exceed ``FRAME_BUFFER_BYTES`` (256 MB: 5 s of 1080p) is
decoded twice, a chunk at a time; ``--hold`` forces the in-memory path (one decode, every frame
held: what the stage did before) for comparison on the shorter clips.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

RUN = """
import json, resource, sys, time
import lipspeech.vision.roi as roi
from lipspeech.core.config import validate_config
from lipspeech.core.media import count_frames
from lipspeech.vision.backends import make_backend

path, hold = sys.argv[1], sys.argv[2] == "hold"
if hold:
    roi.FRAME_BUFFER_BYTES = 1 << 62
cfg = roi.RoiConfig.from_section(validate_config({})["roi"])
n = count_frames(path)
t = time.perf_counter()
res = roi.roi_utterance(path, n, make_backend(cfg.backend, cfg.detect_max_side, cfg.detect_upsample), cfg)
print(json.dumps({"frames": len(res.roi), "seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "detection_rate": res.qc["detection_rate"]}))
"""


def make_clip(path: Path, minutes: float, size: str) -> None:
    """The face drifting slowly across the frame (a window moving over a larger canvas), ``minutes`` long."""
    import cv2
    from skimage import data

    if path.exists():
        return
    face = path.with_suffix(".png")
    cv2.imwrite(str(face), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    w, h = (int(x) for x in size.split("x"))
    side = int(h * 0.8)
    vf = (f"scale={side}:{side},pad={w + 80}:{h + 40}:(ow-iw)/2:(oh-ih)/2,"
          f"crop={w}:{h}:'40+40*sin(n/40)':'20+20*sin(n/55)'")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-loop", "1", "-framerate", "25", "-i", str(face), "-t",
                    str(minutes * 60), "-vf", vf, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    str(path)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[0.5, 2, 10])
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--work", type=Path, default=Path("/tmp/roi-memory"))
    ap.add_argument("--hold", type=float, default=0.5, help="also run the in-memory path on clips up to this long")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for minutes in args.minutes:
        clip = args.work / f"face-{args.size}-{minutes:g}min.mp4"
        make_clip(clip, minutes, args.size)
        for mode in ["stream"] + (["hold"] if minutes <= args.hold else []):
            out = subprocess.run([sys.executable, "-c", textwrap.dedent(RUN), str(clip), mode],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(out.stderr[-3000:])
            row = {"minutes": minutes, "mode": mode, **json.loads(out.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n| clip ({args.size}) | frames | frames held | peak RSS (MB) | seconds | frames/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        held = "all (one decode)" if r["mode"] == "hold" else "a chunk (two decodes)"
        print(f"| {r['minutes']:g} min | {r['frames']} | {held} | {r['peak_rss_mb']:.0f} | {r['seconds']:.1f} | "
              f"{r['frames'] / r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
