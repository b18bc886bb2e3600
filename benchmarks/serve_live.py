"""`lipspeech serve` live: capture-to-playback latency in the page, and how many live streams the machine holds.

    python benchmarks/serve_live.py [--seconds 20] [--streams 1,2,3,4] [--no-browser]

The model is the one `lipspeech live` measured at 190 ms algorithmic latency: the small preset streaming in
chunks of 2 frames with 1 of look-ahead, HiFi-GAN tiny (freshly initialised, one training step: compute does
not depend on trained weights). The server runs as `lipspeech serve` does (one torch thread, frames dropped
when it falls behind by more than 1 s).

1. The page: headless Chromium opens it with a fake camera fed from a SynthGRID clip (y4m, which the fake
   device loops), streams ``--seconds`` of frames, plays the speech with Web Audio and reports, per spoken
   frame, the time from its capture (the page's frame callback) to the moment its last sample is heard
   (the Web Audio schedule plus the context's output latency), and the server's own arrival-to-written
   latency of the same frames. The browser runs on the same cores as the server, as it would on a laptop.
2. Streams: N clients at once (Python, in this process), each sending the clip's frames as JPEGs at 25 fps
   for ``--seconds``; a stream is held in real time when none of its frames was dropped and its server-side
   p95 latency stays within the algorithmic latency + 250 ms. CPU s per stream-second: this process's CPU
   time (all threads; the clients' share is small: they send ready-made JPEGs) over streams x seconds, what
   the count would be on idle cores where the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_latency import checkpoint, hifigan  # noqa: E402

from lipspeech.commands.serve import ServeOptions, serve  # noqa: E402
from lipspeech.core.media import read_frames  # noqa: E402
from lipspeech.data.synth.corpus import generate_corpus  # noqa: E402


def page_latency(running, clip: Path, frames: int, root: Path) -> dict:
    y4m = root / "camera.y4m"
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-i", str(clip), "-pix_fmt", "yuv420p", str(y4m)], check=True)
    n = len(running.server.reports)
    browser = subprocess.Popen(
        ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         f"--user-data-dir={root / 'profile'}", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
         f"--use-file-for-fake-video-capture={y4m}", "--autoplay-policy=no-user-gesture-required",
         f"{running.url}?live={frames}&report=1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + frames / 25 + 120
        while len(running.server.reports) == n and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        browser.terminate()
        browser.wait(timeout=30)
    if len(running.server.reports) == n:
        raise SystemExit("the page reported nothing")
    return running.server.reports[-1]


async def client(url: str, jpegs: list[bytes], frames: int) -> dict:
    import aiohttp

    ws_url = url.replace("http", "ws", 1) + "ws/live"
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url, max_msg_size=0) as ws:
        first = await ws.receive_json()
        if "ready" not in first:
            return {"error": first.get("error", "?")}
        done: dict = {}

        async def receive() -> None:
            async for m in ws:
                if m.type == aiohttp.WSMsgType.TEXT and '"done"' in m.data:
                    done.update(m.json()["done"])
                    return

        reader = asyncio.create_task(receive())
        start = time.monotonic()
        for i in range(frames):
            await asyncio.sleep(max(0.0, start + i / 25 - time.monotonic()))
            await ws.send_bytes(jpegs[i % len(jpegs)])
        await ws.send_str("end")
        await reader
        return {**done, "algorithmic_ms": first["algorithmic_ms"]["total"]}


async def streams_at_once(url: str, jpegs: list[bytes], frames: int, n: int) -> list[dict]:
    return await asyncio.gather(*(client(url, jpegs, frames) for _ in range(n)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--streams", default="1,2,3,4")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="serve-live-"))
    generate_corpus({"seed": 3, "speakers": ["s1"], "utterances_per_speaker": 1, "faces": ["astronaut"]},
                    root / "raw", threads=1, progress=False)
    clip = next((root / "raw" / "s1").glob("*.mpg"))
    ckpt, voc = checkpoint("small", 1, 2, root), hifigan(root)
    counts = [int(x) for x in args.streams.split(",")]
    running = serve(str(ckpt), "127.0.0.1", 0, ServeOptions(max_streams=max(counts)), vocoder=str(voc))
    frames = int(args.seconds * 25)
    print(f"{time.strftime('%Y-%m-%d')}, small preset streaming 2 + 1 frames, HiFi-GAN tiny, one torch thread, "
          f"{args.seconds:g} s per stream\n")
    try:
        if not args.no_browser:
            rep = page_latency(running, clip, frames, root)
            d = rep["done"]
            print("| in the page (headless Chromium, fake camera) | frames | spoken | dropped | capture to playback "
                  "p50 / p95 (ms) | server: arrival to written p50 / p95 (ms) | server RTF |")
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            print(f"| 1 stream | {d['frames']} | {d['spoken']} | {d['dropped']} | {rep['p50_ms']:.0f} / "
                  f"{rep['p95_ms']:.0f} | {d['server_latency_p50_ms']:.0f} / {d['server_latency_p95_ms']:.0f} "
                  f"| {d['rtf']:.2f} |", flush=True)
            print(f"\nthe page skipped {rep['skipped_samples'] / 16000:.2f} s of audio to catch up after bursts "
                  f"({rep['unheard_frames']} spoken frames not heard); median capture to sent "
                  f"{rep['capture_to_sent_p50_ms']:.0f} ms, audio waiting to be played {rep['audio_wait_p50_ms']:.0f} "
                  f"ms, output latency {rep['output_latency_ms']:.0f} ms\n", flush=True)
        jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in read_frames(clip, gray=True)]
        print("| streams at once | dropped frames (each) | server latency p95 (ms, each) | server RTF (each) "
              "| CPU s per stream-second | held in real time |")
        print("| ---: | --- | --- | --- | ---: | --- |")
        for n in counts:
            cpu = time.process_time()
            res = asyncio.run(streams_at_once(running.url, jpegs, frames, n))
            cpu = (time.process_time() - cpu) / (n * args.seconds)
            if any("error" in r for r in res):
                print(f"| {n} | {[r.get('error') for r in res]} | | | |")
                continue
            held = all(r["dropped"] == 0 and r["server_latency_p95_ms"] <= r["algorithmic_ms"] + 250 for r in res)
            dropped = ", ".join(str(r["dropped"]) for r in res)
            p95 = ", ".join(f"{r['server_latency_p95_ms']:.0f}" for r in res)
            rtf = ", ".join(f"{r['rtf']:.2f}" for r in res)
            print(f"| {n} | {dropped} | {p95} | {rtf} | {cpu:.2f} | {'yes' if held else 'no'} |", flush=True)
    finally:
        running.stop()


if __name__ == "__main__":
    main()
