"""``lipspeech serve``: a web page for a trained model: a clip uploaded, or the live camera.

GET /                 the page (``lipspeech/resources/serve/``: index.html, app.js, style.css)
GET /api/info         the model: streaming or not, its latency by design, the limits
POST /api/speak       a clip (multipart field ``video``) -> what ``lipspeech speak`` makes of it (the same code,
                      :func:`lipspeech.speak.speak_loaded`): a WAV, the mouth crops as a strip, the mel, F0, timings
WS /ws/live           the camera: the page sends each frame as a JPEG as it is captured; the server feeds them to
                      the engine ``lipspeech live`` runs (:class:`lipspeech.liveengine.LiveEngine`) and sends the
                      audio back as it is made (binary: u32 n, n u32 timeline indices of the spoken frames the
                      stretch completes, then 16-bit PCM), with JSON lines for events, state and the end
POST /api/report      the page's own measurements (``?report=1``: latency from capture to playback, the PCM it got)

Safe by default: it binds 127.0.0.1; any other address needs the access token printed at start
(``?token=...``, as Jupyter does; 403 without it). Uploads have a size and a duration limit; live
streams beyond ``max_streams`` are told the machine is busy rather than everyone falling behind.

aiohttp serves it: one library for HTTP, multipart uploads and WebSockets (and the tests' client),
with no ASGI server and multipart parser beside it.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import queue
import secrets
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import numpy as np

from lipspeech.speak import LoadedPipeline, SpeakError
from lipspeech.timing import SAMPLE_RATE

LOOPBACK = ("127.0.0.1", "localhost", "::1")
PAGE_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}


@dataclass
class ServeOptions:
    """The server's limits and the live engine's settings (``lipspeech serve --help``)."""

    max_upload_mb: float = 50.0
    max_seconds: float = 60.0
    max_streams: int = 2
    on_lag: str = "drop"
    max_lag_ms: float = 1000.0
    chunk_frames: Optional[int] = None
    roi_lag: int = 0
    keyframe_interval: Optional[int] = 5
    temperature: Optional[float] = None
    camera_timeout: float = 10.0  # seconds without a frame: the camera has stopped
    record: bool = False  # keep each stream's decoded frames (tests, benchmarks)


@dataclass
class StreamRecord:
    """One live stream as the server saw it: the frames it fed the engine (``record``), the PCM it sent, the
    engine's result, and how it ended ("end": the page ended it, "gone": the connection dropped, "camera")."""

    frames: list[np.ndarray] = field(default_factory=list)
    pcm: bytearray = field(default_factory=bytearray)
    result: Any = None
    ended: str = ""


def own_backend(loaded: LoadedPipeline) -> LoadedPipeline:
    """The pipeline with a face backend of its own (a backend tracks one stream and is not thread-safe)."""
    from lipspeech.vision.backends import make_backend

    cfg = loaded.roi_cfg
    return replace(loaded, backend=make_backend(cfg.backend, cfg.detect_max_side, cfg.detect_upsample))


def _png(image: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", image)
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def _wav_b64(audio: np.ndarray) -> str:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()


def clip_views(res: Any, prosody: dict) -> dict:
    """What the page shows of a spoken clip: the crops as a strip (every frame up to 40, else evenly spaced),
    the mel as a picture (low bins at the bottom), F0 per 10 ms (0: unvoiced)."""
    import cv2

    from lipspeech.features.prosody import world_f0

    crops = res.crops
    pick = np.linspace(0, len(crops) - 1, min(len(crops), 40)).round().astype(int)
    strip = np.concatenate([cv2.resize(crops[i], (64, 64), interpolation=cv2.INTER_AREA) for i in pick], axis=1)
    mel = res.mel.T[::-1]
    lo, hi = np.percentile(mel, 1), np.percentile(mel, 99.5)
    mel8 = (255 * np.clip((mel - lo) / max(hi - lo, 1e-6), 0, 1)).astype(np.uint8)
    f0 = world_f0(res.audio, prosody["f0_method"], prosody["f0_floor"], prosody["f0_ceil"])
    return {"crops": _png(strip), "crop_frames": pick.tolist(), "mel": _png(cv2.applyColorMap(mel8, cv2.COLORMAP_VIRIDIS)),
            "f0": [round(float(x), 1) for x in f0], "audio": _wav_b64(res.audio), "frames": res.n_frames,
            "duration": res.duration, "seconds": {k: round(v, 3) for k, v in res.seconds.items()},
            "rtf": round(res.rtf(), 3), "vocoder": res.vocoder.get("kind", "?")}


class Server:
    """The page, the clip path and the live streams of one loaded model (module docstring).

    Args:
        loaded: the model's pipeline (:func:`lipspeech.speak.load_pipeline`).
        model_ckpt: its checkpoint path (for messages).
        device: where the model runs.
        options: limits and live settings.
        token: the access token (None: none needed, for loopback addresses only).
    """

    def __init__(self, loaded: LoadedPipeline, model_ckpt: Any, device: Any, options: ServeOptions,
                 token: Optional[str] = None):
        from lipspeech.config import validate_config

        self.loaded, self.model_ckpt, self.device, self.opt, self.token = loaded, model_ckpt, device, options, token
        self.prosody = validate_config({})["prosody"]
        self.clips = ThreadPoolExecutor(1, thread_name_prefix="clip")  # one clip at a time; queued beyond
        self.streams = 0
        self.lock = threading.Lock()
        self.records: list[StreamRecord] = []
        self.reports: list[dict] = []
        model = loaded.bundle.model
        self.streaming_error = ""
        if model.streaming is None:
            self.streaming_error = (f"this model ({Path(str(model_ckpt)).name}) is not a streaming model: live speech "
                                    "needs one trained with model.streaming (configs/streaming.yaml); clips work")

    # ------------------------------------------------------------------ the app
    def app(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def need_token(request: Any, handler: Any) -> Any:
            if self.token is not None:
                given = request.query.get("token", "") or request.headers.get("Authorization", "").removeprefix("token ")
                if not hmac.compare_digest(given.encode(), self.token.encode()):
                    return web.Response(status=403, text="403: this server needs its access token: open the URL "
                                        "with ?token=... that lipspeech serve printed\n")
            return await handler(request)

        app = web.Application(middlewares=[need_token], client_max_size=8 * 2**20)
        app.add_routes([web.get("/", self.page), web.get("/static/{name}", self.page),
                        web.get("/api/info", self.info), web.post("/api/speak", self.speak),
                        web.get("/ws/live", self.live), web.post("/api/report", self.report)])
        return app

    async def page(self, request: Any) -> Any:
        from aiohttp import web

        name = request.match_info.get("name", "index.html")
        if name not in PAGE_FILES:
            raise web.HTTPNotFound()
        text = resources.files("lipspeech").joinpath("resources", "serve", name).read_text()
        return web.Response(text=text, content_type=PAGE_FILES[name], headers={"Cache-Control": "no-store"})

    async def info(self, request: Any) -> Any:
        from aiohttp import web

        model = self.loaded.bundle.model
        info = {"model": Path(str(self.model_ckpt)).name, "streaming": model.streaming is not None,
                "live_error": self.streaming_error, "max_upload_mb": self.opt.max_upload_mb,
                "max_seconds": self.opt.max_seconds, "max_streams": self.opt.max_streams,
                "vocoder": self.loaded.vocoder.describe().get("kind", "?")}
        if model.streaming is not None:
            chunk = self.opt.chunk_frames or model.streaming.chunk_frames
            info["chunk_frames"], info["lookahead_frames"] = chunk, model.streaming.lookahead_frames
        return web.json_response(info)

    # ------------------------------------------------------------------ a clip
    async def speak(self, request: Any) -> Any:
        from aiohttp import web

        def fail(status: int, message: str) -> Any:
            return web.json_response({"error": message}, status=status)

        limit = int(self.opt.max_upload_mb * 2**20)
        try:
            reader = await request.multipart()
            part = await reader.next()
            while part is not None and part.name != "video":
                part = await reader.next()
        except (AssertionError, ValueError, KeyError):
            return fail(400, "send the clip as multipart/form-data, field 'video'")
        if part is None:
            return fail(400, "no clip: send it in the form field 'video'")
        with tempfile.TemporaryDirectory(prefix="lipspeech-serve-") as tmp:
            name = Path(part.filename or "clip").name or "clip"
            path = Path(tmp) / name
            size = 0
            with open(path, "wb") as f:
                while chunk := await part.read_chunk(2**20):
                    size += len(chunk)
                    if size > limit:
                        return fail(413, f"{name}: larger than the limit of {self.opt.max_upload_mb:g} MB "
                                         "(lipspeech serve --max-upload-mb)")
                    f.write(chunk)
            try:
                views = await asyncio.get_running_loop().run_in_executor(self.clips, self._speak_clip, path)
            except SpeakError as exc:
                return fail(422, str(exc).replace(str(path), name))
        return web.json_response(views)

    def _speak_clip(self, path: Path) -> dict:
        from lipspeech.speak import probe_video, speak_loaded

        t0 = time.perf_counter()
        info = probe_video(path)
        if info.duration is not None and info.duration > self.opt.max_seconds:
            raise SpeakError(f"{path}: {info.duration:.1f} s, longer than the limit of {self.opt.max_seconds:g} s "
                             "(lipspeech serve --max-seconds)")
        res = speak_loaded(path, None, self.loaded, self.device, self.opt.temperature)
        views = clip_views(res, self.prosody)
        views["seconds"]["total"] = round(time.perf_counter() - t0, 3)
        return views

    # ------------------------------------------------------------------ live
    async def live(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(max_msg_size=8 * 2**20)
        await ws.prepare(request)
        if self.streaming_error:
            await ws.send_json({"error": self.streaming_error})
            await ws.close()
            return ws
        with self.lock:
            admitted = self.streams < self.opt.max_streams
            self.streams += admitted
        if not admitted:
            await ws.send_json({"error": f"busy: this machine is serving {self.opt.max_streams} live streams, its "
                                "limit (lipspeech serve --max-streams); try again later"})
            await ws.close(code=1013, message=b"busy")
            return ws
        loop, out = asyncio.get_running_loop(), asyncio.Queue()
        frames: queue.Queue = queue.Queue()
        record = StreamRecord()

        def send(msg: Any) -> None:  # from the engine's thread
            loop.call_soon_threadsafe(out.put_nowait, msg)

        async def sender() -> None:
            while (msg := await out.get()) is not None:
                try:
                    await (ws.send_bytes(msg) if isinstance(msg, bytes) else ws.send_json(msg))
                except (ConnectionError, RuntimeError):
                    pass  # the page has gone; the reader ends the stream

        worker = threading.Thread(target=self._stream, args=(frames, send, record), daemon=True)
        sending = asyncio.create_task(sender())
        worker.start()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    frames.put((msg.data, time.monotonic()))
                elif msg.type == WSMsgType.TEXT and msg.data == "end":
                    frames.put("end")
                    break
            else:
                frames.put("gone")
            await loop.run_in_executor(None, worker.join)
            await out.put(None)
            await sending
            if not ws.closed:
                await ws.close()
        finally:
            frames.put("gone")
            with self.lock:
                self.streams -= 1
        return ws

    def _stream(self, frames: queue.Queue, send: Any, record: StreamRecord) -> None:
        """One stream's engine, in its own thread: JPEGs in, PCM and state out (``send``)."""

        from lipspeech.liveengine import LiveEngine

        def sink(pcm: bytes, spoken: list[int]) -> None:
            record.pcm += pcm
            send(np.array([len(spoken), *spoken], "<u4").tobytes() + pcm)

        try:
            engine = LiveEngine(own_backend(self.loaded), self.opt.chunk_frames, self.opt.roi_lag,
                                self.opt.keyframe_interval, self.opt.temperature, sinks=[sink],
                                on_event=lambda line: send({"event": line}))
        except Exception as exc:  # noqa: BLE001 (a backend that cannot start: said to the page, the server goes on)
            send({"error": f"the live engine could not start: {exc}"})
            return
        send({"ready": True, "algorithmic_ms": engine.res.algorithmic_ms, "max_lag_ms": self.opt.max_lag_ms})
        try:
            self._feed(engine, frames, send, record)
        except Exception as exc:  # noqa: BLE001 (this stream ends with the reason; the others go on)
            send({"error": f"the live stream failed: {type(exc).__name__}: {exc}"})
            record.ended = "failed"
            self.records.append(record)

    def _feed(self, engine: Any, frames: queue.Queue, send: Any, record: StreamRecord) -> None:
        import cv2

        last_state = 0.0
        ended = ""
        while not ended:
            try:
                items = [frames.get(timeout=self.opt.camera_timeout)]
            except queue.Empty:
                send({"event": f"camera stopped: no frame for {self.opt.camera_timeout:g} s"})
                ended = "camera"
                break
            while not frames.empty():
                items.append(frames.get_nowait())
            ended = next((i for i in items if isinstance(i, str)), "")
            if ended:
                items = items[: items.index(ended)]
            decoded = []
            for data, arrived in items:
                frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
                if frame is None:
                    send({"error": "a frame that is not a JPEG: stream ended"})
                    ended = "bad frame"
                    break
                decoded.append((frame, arrived))
            if self.opt.record:
                record.frames += [f for f, _ in decoded]
            if ended == "gone":
                break  # nobody listens: stop at once, the slot is free
            behind = engine.push(decoded, self.opt.on_lag, self.opt.max_lag_ms)
            if time.monotonic() - last_state > 0.2 or ended:
                last_state = time.monotonic()
                crop = engine.last_crop
                send({"state": {"frame": engine.t_next, "face": engine.had_face, "behind_ms": round(behind),
                                "dropped": engine.res.dropped, "rtf": round(engine.res.rtf, 3)},
                      "crop": _png(crop) if crop is not None else None})
        if ended != "gone":
            engine.finish()
        res = engine.close()
        record.result, record.ended = res, ended
        self.records.append(record)
        send({"done": {"frames": res.frames, "spoken": res.spoken_frames, "dropped": res.dropped,
                       "samples": res.samples, "server_latency_p50_ms": res.percentile(50),
                       "server_latency_p95_ms": res.percentile(95), "rtf": res.rtf, "ended": ended}})

    async def report(self, request: Any) -> Any:
        from aiohttp import web

        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "a report is a JSON object"}, status=400)
        self.reports = [*self.reports[-99:], body]
        return web.json_response({"ok": True})


class Running:
    """A server running on its own event loop in a thread (``lipspeech serve``, tests, benchmarks)."""

    def __init__(self, server: Server, host: str, port: int):
        from aiohttp import web

        self.server, self.loop = server, asyncio.new_event_loop()
        self.runner = web.AppRunner(server.app(), access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, host, port)
        try:
            self.loop.run_until_complete(site.start())
        except OSError as exc:
            self.loop.run_until_complete(self.runner.cleanup())
            raise SpeakError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.port = site._server.sockets[0].getsockname()[1]  # the port the system gave for port 0
        shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        self.url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{self.port}/"
        if server.token:
            self.url += f"?token={server.token}"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.server.clips.shutdown(wait=False)


def serve(model_ckpt: str, host: str = "127.0.0.1", port: int = 8000, options: Optional[ServeOptions] = None,
          vocoder: Optional[str] = None, config: Any = None, device: str = "cpu", speaker: Optional[str] = None,
          token: Optional[str] = None) -> Running:
    """Load the model and start serving (returns at once; :meth:`Running.stop` ends it). Any address but
    loopback gets an access token (``token``, else a new random one)."""
    from lipspeech.config import validate_config
    from lipspeech.runtime import resolve_device
    from lipspeech.speak import load_pipeline

    cfg = config if config is not None else validate_config({})
    dev = resolve_device(device)
    loaded = load_pipeline(Path(model_ckpt), vocoder, cfg["vocoder"], dev, speaker)
    if host not in LOOPBACK:
        token = token or secrets.token_urlsafe(24)
    return Running(Server(loaded, model_ckpt, dev, options or ServeOptions(), token), host, port)


def main_serve(args: Any) -> int:
    """The command (registered in :mod:`lipspeech.toolcli`)."""
    import torch

    from lipspeech.config import load_config

    if args.on_lag not in ("drop", "wait"):
        raise SpeakError(f"--on-lag {args.on_lag!r}: must be drop or wait")
    torch.set_num_threads(args.threads)
    opts = ServeOptions(max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds, max_streams=args.max_streams,
                        on_lag=args.on_lag, max_lag_ms=args.max_lag_ms, chunk_frames=args.chunk_frames,
                        roi_lag=args.roi_lag, keyframe_interval=args.keyframe_interval, temperature=args.temperature)
    running = serve(args.model, args.host, args.port, opts, args.vocoder,
                    load_config(args.config) if args.config else None, args.device, args.speaker)
    note = "" if running.server.token is None else " (anyone with this URL, token included, can use the server)"
    print(f"lipspeech serve: {args.model} at {running.url}{note}", flush=True)
    if running.server.streaming_error:
        print(f"  live: {running.server.streaming_error}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    return 0

