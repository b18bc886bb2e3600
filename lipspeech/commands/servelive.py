"""The live half of ``lipspeech serve``: one WebSocket stream of camera frames through the one live engine.

The page sends each frame as a JPEG as it is captured; the server decodes it in the stream's own thread
and feeds it, with its arrival time, to :class:`lipspeech.commands.liveengine.LiveEngine` (what ``lipspeech live``
runs: the same drop/wait policy, the same face-lost handling). The engine's audio goes back as it is made:
a binary message of u32 n, n u32 timeline indices of the spoken frames this stretch completes, then the
16-bit PCM; JSON messages carry the start (``ready``), events (face found/lost, frames dropped), the state
a few times a second (face in view, how far behind, the newest mouth crop) and the end (``done``).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lipspeech.commands.serve import png_url
from lipspeech.commands.speak import LoadedPipeline


@dataclass
class StreamRecord:
    """One live stream as the server saw it: the frames it fed the engine and the PCM it sent (both kept only
    with the ``record`` option: a long stream would otherwise hold its whole history), the
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


async def live_stream(server: Any, request: Any) -> Any:
    from aiohttp import WSMsgType, web

    ws = web.WebSocketResponse(max_msg_size=8 * 2**20)
    await ws.prepare(request)
    if server.streaming_error:
        await ws.send_json({"error": server.streaming_error})
        await ws.close()
        return ws
    with server.lock:
        admitted = server.streams < server.opt.max_streams
        server.streams += admitted
    if not admitted:
        await ws.send_json({"error": f"busy: this machine is serving {server.opt.max_streams} live streams, its "
                            "limit (lipspeech serve --max-streams); try again later"})
        await ws.close(code=1013, message=b"busy")
        return ws
    loop, out = asyncio.get_running_loop(), asyncio.Queue()
    frames: queue.Queue = queue.Queue()
    record = StreamRecord()

    def send(msg: Any) -> None:  # from the engine's thread
        loop.call_soon_threadsafe(out.put_nowait, msg)

    async def sender() -> None:  # in order; None (the stream's end) closes the connection
        while (msg := await out.get()) is not None:
            try:
                await (ws.send_bytes(msg) if isinstance(msg, bytes) else ws.send_json(msg))
            except (ConnectionError, RuntimeError):
                pass  # the page has gone; the reader ends the stream
        await ws.close()

    worker = threading.Thread(target=_stream, args=(server, frames, send, record), daemon=True)
    sending = asyncio.create_task(sender())
    worker.start()
    try:
        async for msg in ws:  # until the page goes, or the sender closes after the stream's end
            if msg.type == WSMsgType.BINARY:
                frames.put((msg.data, time.monotonic()))
            elif msg.type == WSMsgType.TEXT and msg.data == "end":
                frames.put("end")
    finally:
        frames.put("gone")
        await sending
    return ws


def keep(server: Any, record: StreamRecord) -> None:
    """The last 100 streams' records (their results; frames and PCM with ``record``)."""
    with server.lock:
        server.records = [*server.records[-99:], record]


def _stream(server: Any, frames: queue.Queue, send: Any, record: StreamRecord) -> None:
    """One stream's engine, in its own thread: JPEGs in, PCM and state out (``send``). Its slot is free before
    the page hears of the end, so a page that starts again at once is admitted."""
    from lipspeech.commands.liveengine import LiveEngine

    def sink(pcm: bytes, spoken: list[int]) -> None:
        if server.opt.record:
            record.pcm += pcm
        send(np.array([len(spoken), *spoken], "<u4").tobytes() + pcm)

    last: Any = None
    try:
        engine = LiveEngine(own_backend(server.loaded), server.opt.engine, sinks=[sink],
                            on_event=lambda line: send({"event": line}))
        send({"ready": True, "algorithmic_ms": engine.res.algorithmic_ms, "max_lag_ms": server.opt.engine.max_lag_ms})
        last = {"done": _feed(server, engine, frames, send, record)}
    except Exception as exc:  # noqa: BLE001 (this stream ends with the reason; the others go on)
        last = {"error": f"the live stream failed: {type(exc).__name__}: {exc}"}
        record.ended = "failed"
    finally:
        keep(server, record)
        with server.lock:
            server.streams -= 1
        send(last)
        send(None)


def _feed(server: Any, engine: Any, frames: queue.Queue, send: Any, record: StreamRecord) -> dict:
    """Frames from the queue into the engine until the page ends the stream, goes, or stops sending; what the
    page is told at the end."""
    import cv2

    last_state = 0.0
    ended = ""
    while not ended:
        try:
            items = [frames.get(timeout=server.opt.camera_timeout)]
        except queue.Empty:
            send({"event": f"camera stopped: no frame for {server.opt.camera_timeout:g} s"})
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
        if server.opt.record:
            record.frames += [f for f, _ in decoded]
        if ended == "gone":
            break  # nobody listens: stop at once, the slot is free
        behind = engine.push(decoded)
        if time.monotonic() - last_state > 0.2 or ended:
            last_state = time.monotonic()
            crop = engine.last_crop
            send({"state": {"frame": engine.t_next, "face": engine.had_face, "behind_ms": round(behind),
                            "dropped": engine.res.dropped, "rtf": round(engine.res.rtf, 3)},
                  "crop": png_url(crop) if crop is not None else None})
    if ended != "gone":
        engine.finish()
    res = engine.close()
    record.result, record.ended = res, ended
    return {"frames": res.frames, "spoken": res.spoken_frames, "dropped": res.dropped, "samples": res.samples,
            "server_latency_p50_ms": res.percentile(50), "server_latency_p95_ms": res.percentile(95),
            "rtf": res.rtf, "ended": ended}
