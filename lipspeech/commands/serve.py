"""``lipspeech serve``: a web page for a trained model: a clip uploaded, or the live camera.

GET /                 the page (``lipspeech/resources/serve/``: index.html, app.js, style.css)
GET /api/info         the model: streaming or not, its latency by design, the limits, the example clips
POST /api/speak       a clip (multipart field ``video``, or ``?example=NAME``) -> what ``lipspeech speak`` makes of
                      it (the same code, :func:`lipspeech.commands.speak.speak_loaded`): a WAV, the mouth crops as a strip,
                      the mel, F0, timings
WS /ws/live           the camera: frames in as they are captured, speech out as it is made, through the engine
                      ``lipspeech live`` runs (:mod:`lipspeech.commands.servelive`)
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
import re
import secrets
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import numpy as np

from lipspeech.commands.liveengine import EngineOptions, check_streaming, options_from_args
from lipspeech.commands.speak import LoadedPipeline, SpeakError
from lipspeech.core.settings import EvaluateConfig, ProsodyConfig
from lipspeech.core.timing import SAMPLE_RATE

LOOPBACK = ("127.0.0.1", "localhost", "::1")
VIDEO_SUFFIXES = (".mp4", ".mpg", ".mpeg", ".mov", ".avi", ".mkv", ".webm")
PAGE_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}


@dataclass
class ServeOptions:
    """The server's limits and the live engine's settings (``lipspeech serve --help``; each default is written
    here only, or in :class:`~lipspeech.commands.liveengine.EngineOptions` for the engine's)."""

    max_upload_mb: float = 50.0
    max_seconds: float = 60.0
    max_streams: int = 2  # benchmarks/serve_live.py: 2 idle cores held 2 streams of the small 2 + 1 model in real time
    engine: EngineOptions = field(default_factory=EngineOptions)  # also the clips' temperature
    camera_timeout: float = 10.0  # seconds without a frame: the camera has stopped
    record: bool = False  # keep each stream's decoded frames (tests, benchmarks)
    examples: tuple[Path, ...] = ()  # clips on the server the page offers (e.g. the corpus's test clips)


def png_url(image: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", image)
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def _wav_b64(audio: np.ndarray) -> str:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()


def clip_views(res: Any, prosody: ProsodyConfig, silence_db: float) -> dict:
    """What the page shows of a spoken clip: the crops as a strip (every frame up to 15, else evenly spaced),
    the mel as a picture (low bins at the bottom), F0 per 10 ms (0: unvoiced, or more than ``silence_db``
    below the loudest frame, as the evaluation has it)."""
    import cv2

    from lipspeech.evaluation.metrics import loud_frames
    from lipspeech.features.prosody import world_f0

    crops = res.crops
    pick = np.linspace(0, len(crops) - 1, min(len(crops), 15)).round().astype(int)
    strip = np.concatenate([cv2.resize(crops[i], (64, 64), interpolation=cv2.INTER_AREA) for i in pick], axis=1)
    mel = res.mel.T[::-1]
    lo, hi = np.percentile(mel, 1), np.percentile(mel, 99.5)
    mel8 = (255 * np.clip((mel - lo) / max(hi - lo, 1e-6), 0, 1)).astype(np.uint8)
    f0 = world_f0(res.audio, prosody.f0_method, prosody.f0_floor, prosody.f0_ceil)
    n = len(f0)  # frame k: samples 160k .. 160k + 159
    frames = np.pad(res.audio, (0, max(0, 160 * n - len(res.audio))))[: 160 * n].reshape(n, 160)
    f0 = np.where(loud_frames(np.sqrt((frames.astype(np.float64) ** 2).mean(1)), silence_db), f0, 0.0)
    mel_png = png_url(cv2.applyColorMap(mel8, cv2.COLORMAP_VIRIDIS))
    return {"crops": png_url(strip), "crop_frames": pick.tolist(), "mel": mel_png,
            "f0": [round(float(x), 1) for x in f0], "audio": _wav_b64(res.audio), "frames": res.n_frames,
            "duration": res.duration, "seconds": {k: round(v, 3) for k, v in res.seconds.items()},
            "rtf": round(res.rtf(), 3), "vocoder": res.vocoder.get("kind", "?")}


class Server:
    """The page, the clip path and the live streams of one loaded model (module docstring).

    Args:
        loaded: the model's pipeline (:func:`lipspeech.commands.speak.load_pipeline`).
        model_ckpt: its checkpoint path (for messages).
        device: where the model runs.
        options: limits and live settings.
        token: the access token (None: none needed, for loopback addresses only).
    """

    def __init__(self, loaded: LoadedPipeline, model_ckpt: Any, device: Any, options: ServeOptions,
                 token: Optional[str] = None):
        self.loaded, self.model_ckpt, self.device, self.opt, self.token = loaded, model_ckpt, device, options, token
        # the page's F0 as the evaluation computes it, with the schema's settings
        self.prosody, self.f0_silence_db = ProsodyConfig.default(), EvaluateConfig.default().f0_silence_db
        self.clips = ThreadPoolExecutor(1, thread_name_prefix="clip")  # one clip at a time; queued beyond
        self.streams = 0
        self.lock = threading.Lock()
        self.records: list[Any] = []  # servelive.StreamRecord, one per stream ended
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
                "vocoder": self.loaded.vocoder.describe().get("kind", "?"),
                "examples": [p.name for p in self.opt.examples]}
        if model.streaming is not None:
            chunk = self.opt.engine.chunk_frames or model.streaming.chunk_frames
            info["chunk_frames"], info["lookahead_frames"] = chunk, model.streaming.lookahead_frames
            info["decoder_lookahead_frames"] = model.streaming.decoder_lookahead_frames
        return web.json_response(info)

    # ------------------------------------------------------------------ a clip
    async def speak(self, request: Any) -> Any:
        from aiohttp import web

        def fail(status: int, message: str) -> Any:
            return web.json_response({"error": message}, status=status)

        if "example" in request.query:
            names = [p.name for p in self.opt.examples]
            name = request.query["example"]
            if name not in names:
                return fail(404, f"no example clip {name!r} (lipspeech serve --examples)")
            try:
                views = await asyncio.get_running_loop().run_in_executor(
                    self.clips, self._speak_clip, self.opt.examples[names.index(name)])
            except SpeakError as exc:
                return fail(422, str(exc))
            return web.json_response(views)
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
            # the name is shown in messages; on disk only letters, digits, '.', '-' and '_' (no '..', no path)
            name = re.sub(r"[^\w.-]", "_", Path(part.filename or "clip").name).lstrip(".") or "clip"
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
        from lipspeech.commands.speak import probe_video, speak_loaded

        t0 = time.perf_counter()
        info = probe_video(path)
        if info.duration is not None and info.duration > self.opt.max_seconds:
            raise SpeakError(f"{path}: {info.duration:.1f} s, longer than the limit of {self.opt.max_seconds:g} s "
                             "(lipspeech serve --max-seconds)")
        res = speak_loaded(path, None, self.loaded, self.device, self.opt.engine.temperature)
        views = clip_views(res, self.prosody, self.f0_silence_db)
        views["seconds"]["total"] = round(time.perf_counter() - t0, 3)
        return views

    # ------------------------------------------------------------------ live
    async def live(self, request: Any) -> Any:
        from lipspeech.commands.servelive import live_stream

        return await live_stream(self, request)

    async def report(self, request: Any) -> Any:
        from aiohttp import web

        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "a report is a JSON object"}, status=400)
        self.reports = [*self.reports[-9:], body]  # the last 10 (a live report carries its PCM)
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
    from lipspeech.commands.speak import load_pipeline
    from lipspeech.core.config import validate_config
    from lipspeech.core.runtime import resolve_device

    cfg = config if config is not None else validate_config({})
    dev = resolve_device(device)
    loaded = load_pipeline(Path(model_ckpt), vocoder, cfg["vocoder"], dev, speaker)
    options = options or ServeOptions()
    if loaded.bundle.model.streaming is not None:
        check_streaming(loaded, model_ckpt, options.engine.roi_lag)
    if host not in LOOPBACK:
        token = token or secrets.token_urlsafe(24)
    return Running(Server(loaded, model_ckpt, dev, options, token), host, port)


def example_clips(paths: list[str]) -> tuple[Path, ...]:
    """``--examples``: files, and the videos in folders (sorted, at most 20 a folder)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.suffix.lower() in VIDEO_SUFFIXES)[:20]
        elif p.is_file():
            found.append(p)
        else:
            raise SpeakError(f"--examples {p}: no such file or folder")
    if len({p.name for p in found}) < len(found):
        raise SpeakError("--examples: two clips of the same name")
    return tuple(found)


def main_serve(args: Any) -> int:
    """The command (registered in :mod:`lipspeech.commands.toolcli`)."""
    import torch

    from lipspeech.core.config import load_config

    # the parser leaves out the options not given (argparse.SUPPRESS): their defaults are the dataclasses' and serve()'s
    opts = options_from_args(ServeOptions, args, engine=options_from_args(EngineOptions, args),
                             examples=example_clips(args.examples or []))
    torch.set_num_threads(args.threads)
    given = {k: v for k, v in vars(args).items() if k in ("host", "port", "device")}
    running = serve(args.model, options=opts, vocoder=args.vocoder, config=load_config(args.config) if args.config else None,
                    speaker=args.speaker, **given)
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

