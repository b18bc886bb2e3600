"""lipspeech serve: the upload path equals `lipspeech speak`; a live stream over the WebSocket equals `lipspeech
live` on the frames the server received; bad uploads, a dropped connection, a stream beyond the limit, a
token-less request on a non-loopback address: a clear answer and the server goes on; the page itself in
headless Chromium with a fake camera."""

import asyncio
import base64
import io
import json
import subprocess

import numpy as np
import pytest
from needs import chromium_binary, needs_chromium, needs_synthgrid

from lipspeech.cli import main

pytestmark = [
    pytest.mark.usefixtures("one_thread"),  # tests/conftest.py
    needs_synthgrid,  # tests/needs.py
]  # live_models: tests/conftest.py


@pytest.fixture(scope="module")
def server(live_models):
    from lipspeech.commands.liveengine import EngineOptions
    from lipspeech.commands.serve import ServeOptions, serve

    opts = ServeOptions(record=True, engine=EngineOptions(on_lag="wait"), max_streams=1, examples=(live_models["video"],))
    running = serve(str(live_models["stream"]), "127.0.0.1", 0, opts, vocoder=live_models["vocoder"])
    yield running
    running.stop()


def _run(coro):
    return asyncio.run(coro)


async def _post_clip(url, data: bytes, name: str):
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("video", data, filename=name, content_type="application/octet-stream")
    async with aiohttp.ClientSession() as s, s.post(url + "api/speak", data=form) as r:
        return r.status, await r.json()


def _wav_bytes(data_url: str) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])), dtype="int16")
    assert rate == 16000
    return audio


def _wav(path) -> np.ndarray:
    import soundfile as sf

    return sf.read(str(path), dtype="int16")[0]


def test_upload_equals_speak(live_models, server, tmp_path):
    """The page's clip path gives `lipspeech speak`'s audio, bit for bit, with the crops, mel, F0 and timings."""
    ref = tmp_path / "speak.wav"
    assert main(["speak", str(live_models["video"]), "--model", str(live_models["stream"]),
                 "--vocoder", live_models["vocoder"], "-o", str(ref), "--device", "cpu", "--threads", "1"]) == 0
    status, res = _run(_post_clip(server.url, live_models["video"].read_bytes(), live_models["video"].name))
    assert status == 200, res
    got, want = _wav_bytes(res["audio"]), _wav(ref)
    assert np.array_equal(got, want) and np.abs(want).max() > 0
    assert res["frames"] * 640 == len(want) and len(res["f0"]) == len(want) // 160
    assert res["crops"].startswith("data:image/png;base64,") and res["mel"].startswith("data:image/png;base64,")
    assert set(res["seconds"]) >= {"decode", "roi", "model", "vocoder", "total"}
    # the same clip as one of the server's examples
    status, ex = _run(_post(server.url + f"api/speak?example={live_models['video'].name}"))
    assert status == 200 and ex["audio"] == res["audio"]
    status, ex = _run(_post(server.url + "api/speak?example=nothing.mp4"))
    assert status == 404 and "no example clip 'nothing.mp4'" in ex["error"]


async def _post(url):
    import aiohttp

    async with aiohttp.ClientSession() as s, s.post(url) as r:
        return r.status, await r.json()


def test_bad_uploads_are_answered_and_the_server_goes_on(live_models, server, tmp_path):
    """Not a video, too large, too long, no face: one line each (4xx); then a good clip is spoken."""
    clip = live_models["video"].read_bytes()
    status, res = _run(_post_clip(server.url, b"not a video at all" * 100, "notes.mp4"))
    assert status == 422 and res["error"].startswith("notes.mp4: ") and "\n" not in res["error"], res
    status, res = _run(_post_clip(server.url, b"not a video at all", ".."))  # a name that is not a file's
    assert status == 422 and res["error"].startswith("clip: "), res
    noface = tmp_path / "noface.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=rate=25:size=320x240", "-frames:v", "25",
                    "-pix_fmt", "yuv420p", str(noface)], check=True)
    status, res = _run(_post_clip(server.url, noface.read_bytes(), "noface.mp4"))
    assert status == 422 and res["error"].startswith("noface.mp4: no usable face"), res
    opt = server.server.opt
    saved = opt.max_upload_mb, opt.max_seconds
    try:
        opt.max_upload_mb = len(clip) / 2 / 2**20
        status, res = _run(_post_clip(server.url, clip, "big.mpg"))
        assert status == 413 and "larger than the limit" in res["error"] and "--max-upload-mb" in res["error"], res
        opt.max_upload_mb, opt.max_seconds = saved[0], 1.0
        status, res = _run(_post_clip(server.url, clip, "long.mpg"))
        assert status == 422 and "longer than the limit of 1 s" in res["error"], res
    finally:
        opt.max_upload_mb, opt.max_seconds = saved
    assert _run(_post_clip(server.url, clip, "good.mpg"))[0] == 200


def _jpegs(video) -> list[bytes]:
    import cv2

    from lipspeech.core.media import read_frames

    return [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in read_frames(video, gray=True)]


async def _stream(url: str, frames: list[bytes], stop_after=None, hold=None):
    """Stream JPEG frames over /ws/live; returns (the first message, PCM received, the JSON messages). With
    ``stop_after`` the connection is dropped after that many frames; ``hold`` (an asyncio.Event) keeps the
    stream open after its frames until it is set."""
    import aiohttp

    pcm, msgs = bytearray(), []
    base, _, query = url.partition("?")
    ws_url = base.replace("http", "ws", 1) + "ws/live" + ("?" + query if query else "")
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url) as ws:
        first = await ws.receive_json()
        if "ready" not in first:
            return first, pcm, [await ws.receive()]
        for i, f in enumerate(frames):
            if stop_after is not None and i == stop_after:
                await ws.close()
                return first, pcm, msgs
            await ws.send_bytes(f)
            await asyncio.sleep(0.04)  # a camera's pace
        if hold is not None:
            await hold.wait()
        await ws.send_str("end")
        async for m in ws:
            if m.type == aiohttp.WSMsgType.BINARY:
                n = int.from_bytes(m.data[:4], "little")
                pcm += m.data[4 + 4 * n :]
            else:
                msgs.append(json.loads(m.data))
                if "done" in msgs[-1]:
                    break
    return first, pcm, msgs


def live_reference(live_models, frames: list[np.ndarray], tmp_path) -> np.ndarray:
    """`lipspeech live` (the command) on these frames, written losslessly to a file; its WAV as int16."""
    h, w = frames[0].shape
    clip, out = tmp_path / "received.mkv", tmp_path / "received.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}", "-r", "25",
                    "-i", "pipe:", "-c:v", "ffv1", str(clip)], input=np.stack(frames).tobytes(), check=True)
    assert main(["live", str(clip), "--model", str(live_models["stream"]), "--vocoder", live_models["vocoder"],
                 "-o", str(out), "--quiet"]) == 0
    return _wav(out)


def test_live_stream_equals_lipspeech_live_on_the_frames_received(live_models, server, tmp_path):
    frames = _jpegs(live_models["video"])
    first, pcm, msgs = _run(_stream(server.url, frames))
    assert first["ready"] and first["algorithmic_ms"]["total"] > 0
    done = msgs[-1]["done"]
    assert done["frames"] == len(frames) and done["ended"] == "end" and done["spoken"] > 0
    record = server.server.records[-1]
    assert len(record.frames) == len(frames) and bytes(record.pcm) == bytes(pcm)
    got, want = np.frombuffer(bytes(pcm), "<i2"), live_reference(live_models, record.frames, tmp_path)
    assert len(got) == len(want) == 640 * len(frames)
    assert np.abs(got.astype(int) - want).max() <= 1 and np.abs(want).max() > 0
    assert any("state" in m for m in msgs)


def _wait_free(server):
    """The server has noticed a stream's end and freed its slot (a client that just drops is not waited for)."""
    import time

    deadline = time.monotonic() + 10
    while server.server.streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.server.streams == 0


def test_dropped_connection_frees_its_slot(live_models, server):
    """A client that goes away mid-stream: its stream ends ('gone'), the limit's one slot is free again and the
    next stream is served in full."""
    frames = _jpegs(live_models["video"])
    n = len(server.server.records)
    first, _, _ = _run(_stream(server.url, frames, stop_after=10))
    assert first["ready"]
    _wait_free(server)
    first, pcm, msgs = _run(_stream(server.url, frames[:20]))
    assert first["ready"] and msgs[-1]["done"]["frames"] == 20 and len(pcm) == 2 * 640 * 20
    assert [r.ended for r in server.server.records[n:]] == ["gone", "end"]


def test_other_stream_unaffected_by_one_that_drops(live_models, server, tmp_path):
    """Two streams at once; one drops mid-stream: the other goes on to the end, its audio still `lipspeech live`'s
    on its frames."""
    frames = _jpegs(live_models["video"])

    async def both():
        whole = asyncio.create_task(_stream(server.url, frames))
        await asyncio.sleep(0.5)
        dropped = await _stream(server.url, frames, stop_after=10)
        return await whole, dropped

    server.server.opt.max_streams = 2
    try:
        (first, pcm, msgs), (d_first, _, _) = _run(both())
    finally:
        server.server.opt.max_streams = 1
    assert first["ready"] and d_first["ready"] and msgs[-1]["done"]["ended"] == "end"
    _wait_free(server)
    record = next(r for r in server.server.records[::-1] if r.ended == "end")
    assert len(record.frames) == len(frames) and bytes(record.pcm) == bytes(pcm)
    got, want = np.frombuffer(bytes(pcm), "<i2"), live_reference(live_models, record.frames, tmp_path)
    assert len(got) == len(want) and np.abs(got.astype(int) - want).max() <= 1
    assert "gone" in [r.ended for r in server.server.records[-2:]]


def test_stream_beyond_the_limit_is_told_busy(live_models, server):
    """With --max-streams 1, a second stream is told the machine is busy (and closed with 1013) while the first
    goes on to the end unaffected."""
    frames = _jpegs(live_models["video"])[:15]

    async def both():
        hold = asyncio.Event()
        first = asyncio.create_task(_stream(server.url, frames, hold=hold))
        await asyncio.sleep(2.0)  # the first is streaming
        second = await _stream(server.url, frames)
        hold.set()
        return await first, second

    (a_first, a_pcm, a_msgs), (b_first, _, b_close) = _run(both())
    assert a_first["ready"] and a_msgs[-1]["done"]["frames"] == 15 and len(a_pcm) == 2 * 640 * 15
    assert b_first["error"].startswith("busy: this machine is serving 1 live streams"), b_first
    assert b_close[0].data == 1013


def test_camera_that_stops_ends_its_stream(live_models, server):
    """Frames that stop coming without an end: after the camera timeout the stream says so, ends with the audio
    of the frames it had, and frees its slot."""
    import aiohttp

    frames = _jpegs(live_models["video"])[:10]

    async def stalled():
        msgs = []
        async with aiohttp.ClientSession() as s, s.ws_connect(server.url + "ws/live") as ws:
            assert "ready" in await ws.receive_json()
            for f in frames:
                await ws.send_bytes(f)
            async for m in ws:  # and nothing more is sent
                if m.type == aiohttp.WSMsgType.TEXT:
                    msgs.append(json.loads(m.data))
                    if "done" in msgs[-1]:
                        break
        return msgs

    saved = server.server.opt.camera_timeout
    server.server.opt.camera_timeout = 1.0
    try:
        msgs = _run(stalled())
    finally:
        server.server.opt.camera_timeout = saved
    assert {"event": "camera stopped: no frame for 1 s"} in msgs
    done = msgs[-1]["done"]
    assert done["ended"] == "camera" and done["frames"] == 10 and done["samples"] == 640 * 10
    assert server.server.streams == 0  # free before the page is told the stream ended
    assert _run(_stream(server.url, frames))[0]["ready"]


def test_token_needed_off_loopback(live_models):
    """Bound to 0.0.0.0: a token is made and printed in the URL; without it (page, API, WebSocket) 403."""
    import aiohttp

    from lipspeech.commands.serve import ServeOptions, serve

    running = serve(str(live_models["offline"]), "0.0.0.0", 0, ServeOptions(), vocoder=live_models["vocoder"])
    try:
        assert running.server.token and f"?token={running.server.token}" in running.url
        base = f"http://127.0.0.1:{running.port}/"

        async def get(path):
            async with aiohttp.ClientSession() as s, s.get(base + path) as r:
                return r.status, await r.text()

        for path in ("", "api/info", "ws/live", f"?token={running.server.token}x"):
            status, text = _run(get(path))
            assert status == 403 and "access token" in text, path
        status, text = _run(get(f"?token={running.server.token}"))
        assert status == 200 and "lipspeech" in text
        status, text = _run(get(f"api/info?token={running.server.token}"))
        info = json.loads(text)
        assert status == 200 and info["streaming"] is False and "not a streaming model" in info["live_error"]
        # the offline model's live stream: the reason, not a crash
        first, _, _ = _run(_stream(running.url, []))
        assert "not a streaming model" in first["error"]
    finally:
        running.stop()


def _page_report(running, query: str, tmp_path, kind: str, camera=None) -> dict:
    """Open the page in headless Chromium (its camera a fake device fed from ``camera``, a y4m) and wait for the
    report of ``kind`` it posts (``report=1``)."""
    import time

    flags = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-video-capture={camera}"] if camera else []
    browser = subprocess.Popen(
        [chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--autoplay-policy=no-user-gesture-required",
         *flags, f"{running.url}?{query}&report=1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while (not any(r.get("kind") == kind for r in running.server.reports) and time.monotonic() < deadline
               and browser.poll() is None):
            time.sleep(0.2)
    finally:
        browser.terminate()
        _, err = browser.communicate(timeout=30)
    reports = [r for r in running.server.reports if r.get("kind") == kind]
    assert reports, f"the page reported nothing: {err[-2000:]}"
    return reports[-1]


@needs_chromium
def test_page_speaks_an_example_clip_in_headless_chromium(live_models, server, tmp_path):
    """The page asks for one of the server's clips and shows it: the crops strip, the mel (4 columns a frame),
    F0 and audio of 40 ms a frame, and how long it took."""
    rep = _page_report(server, f"example={live_models['video'].name}", tmp_path, "clip")
    n = rep["frames"]
    assert rep["crops_width"] == 64 * min(n, 15) and rep["mel_width"] == 4 * n and rep["f0_frames"] == 4 * n
    assert rep["audio_seconds"] == pytest.approx(n * 0.04, abs=0.01)
    assert f"{live_models['video'].name}: {n} frames" in rep["message"] and "s on the server" in rep["message"]


@needs_chromium
def test_page_streams_the_fake_camera_in_headless_chromium(live_models, tmp_path):
    """The real page in headless Chromium, its camera a fake device fed from the clip (y4m): it opens the camera,
    streams, plays the speech with Web Audio and reports what it received: the PCM the server sent, equal to
    `lipspeech live` on the frames the server received; its capture-to-playback latency is measured."""
    from lipspeech.commands.liveengine import EngineOptions
    from lipspeech.commands.serve import ServeOptions, serve

    y4m = tmp_path / "camera.y4m"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(live_models["video"]), "-pix_fmt", "yuv420p", str(y4m)], check=True)
    n = 75
    running = serve(str(live_models["stream"]), "127.0.0.1", 0,
                    ServeOptions(record=True, engine=EngineOptions(on_lag="wait")), vocoder=live_models["vocoder"])
    try:
        report = _page_report(running, f"live={n}", tmp_path, "live", camera=y4m)
    finally:
        running.stop()
    record = running.server.records[-1]
    assert report["frames_sent"] == n and report["done"]["frames"] == n and len(record.frames) == n
    got = np.frombuffer(base64.b64decode(report["pcm"]), "<i2")
    assert got.tobytes() == bytes(record.pcm) and len(got) == 640 * n
    want = live_reference(live_models, record.frames, tmp_path)
    assert np.abs(got.astype(int) - want).max() <= 1 and np.abs(want).max() > 0
    lat = np.array(report["latencies_ms"])
    # every spoken frame's audio was heard (its latency measured) or skipped to catch up after a burst
    assert report["done"]["spoken"] > 0 and len(lat) + report["unheard_frames"] == report["done"]["spoken"]
    assert (lat > 0).all()


def test_serve_command_prints_its_url(live_models):
    """`lipspeech serve` as a command: it prints the one line with the URL (a token in it off loopback), serves
    the page there, and a bad checkpoint is one line and exit 1."""
    import sys
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "lipspeech.cli", "serve", "--model", str(live_models["offline"]),
                             "--host", "0.0.0.0", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"lipspeech serve: {live_models['offline']} at http://127.0.0.1:") and "?token=" in line
        url = line.split(" at ", 1)[1].split()[0]
        assert "not a streaming model" in proc.stdout.readline()
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.status == 200 and b"lipspeech" in r.read()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    bad = subprocess.run([sys.executable, "-m", "lipspeech.cli", "serve", "--model", "nothing.pt"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "--model nothing.pt: no such checkpoint" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "lipspeech.cli", "serve", "--model", str(live_models["stream"]),
                          "--roi-lag", "9"], capture_output=True, text=True)
    assert bad.returncode == 1 and "--roi-lag 9: must be between 0 and" in bad.stderr


@needs_chromium
def test_page_beyond_the_limit_says_busy(live_models, server, tmp_path):
    """A page that opens the camera while the one live slot is taken shows the busy message (and the stream
    holding the slot goes on to its end)."""
    y4m = tmp_path / "camera.y4m"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(live_models["video"]), "-pix_fmt", "yuv420p", str(y4m)], check=True)
    frames = _jpegs(live_models["video"])[:10]

    async def held():
        hold = asyncio.Event()
        task = asyncio.create_task(_stream(server.url, frames, hold=hold))
        await asyncio.sleep(1.0)
        rep = await asyncio.to_thread(_page_report, server, "live=20", tmp_path, "live-error", y4m)
        hold.set()
        return rep, await task

    rep, (first, _, msgs) = _run(held())
    assert rep["shown"].startswith("busy: this machine is serving 1 live streams") and rep["shown"] == rep["error"]
    assert first["ready"] and msgs[-1]["done"]["frames"] == 10
