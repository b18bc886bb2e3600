"""SynthGRID: a small synthetic talking-face corpus in the GRID corpus's layout.

    out_dir/
      s1/bbaf2n.mpg            video (fps) + speech audio
      s1/align/bbaf2n.align    GRID word alignment ("start end word", 25000 units per second)
      s1/mouth/bbaf2n.npz      ground-truth lip points per frame (for the ROI stage)
      ...
      corpus.json              written last, atomically: the completion marker

Everything is deterministic given ``synth.seed``; the files do not depend on ``threads``.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lipspeech.core.settings import JitterConfig, SynthConfig, VoiceConfig
from lipspeech.data import gridgrammar

GENERATOR = "SynthGRID"
ALIGN_UNITS_PER_SECOND = 25000  # GRID: 1000 units per video frame at 25 fps

_CONTAINERS = {
    "mpg": ["-c:v", "mpeg1video", "-q:v", "2", "-pix_fmt", "yuv420p",
            "-c:a", "mp2", "-b:a", "128k", "-f", "mpeg"],
    "mp4": ["-c:v", "libx264", "-preset", "medium", "-crf", "16", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "96k", "-f", "mp4"],
}


# --------------------------------------------------------------------------- helpers
def normalise_cfg(cfg: dict | None) -> dict:
    """cfg validated against the config schema's `synth` section, defaults filled (plain JSON types)."""
    from lipspeech.core.config import validate_config  # the one place defaults are defined

    plain = json.loads(json.dumps(cfg or {}, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    out = validate_config({"synth": plain})["synth"]
    return out


def _fingerprint(cfg: dict) -> str:
    import lipspeech
    blob = json.dumps({"cfg": cfg, "version": getattr(lipspeech, "__version__", "?"), "gen": GENERATOR},
                      sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def npz_bytes(arrays: dict) -> bytes:
    """An .npz archive (np.load compatible) with fixed zip timestamps: same arrays, same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            b = io.BytesIO()
            np.lib.format.write_array(b, np.asanyarray(arr), allow_pickle=False)
            zf.writestr(info, b.getvalue())
    return buf.getvalue()


def align_text(words, total_s: float) -> str:
    """GRID .align text: sil, the words (seconds, already in video time), sil."""
    U = ALIGN_UNITS_PER_SECOND
    end_total = int(round(total_s * U))
    lines, prev = [], 0
    for w, a, b in words:
        a_u = max(prev, int(round(a * U)))
        b_u = min(end_total, max(a_u + 1, int(round(b * U))))
        if a_u > prev:
            lines.append((prev, a_u, "sil"))
        elif not lines:
            lines.append((0, 0, "sil"))
        lines.append((a_u, b_u, w))
        prev = b_u
    lines.append((prev, end_total, "sil"))
    return "".join(f"{a} {b} {w}\n" for a, b, w in lines)


def utterance_paths(out_dir: Path, spk: str, uid: str, container: str) -> dict:
    d = Path(out_dir) / spk
    return {"video": d / f"{uid}.{container}", "align": d / "align" / f"{uid}.align",
            "mouth": d / "mouth" / f"{uid}.npz"}


def _check_tools():
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg not found on PATH: apt-get install ffmpeg")


# --------------------------------------------------------------------------- planning
def _speaker_rng(seed: int, i: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(i), int(stream)]))


def plan_speakers(cfg: Mapping[str, Any]) -> list[dict]:
    """Face, face variant, voice and sentences of every speaker (deterministic), from the
    normalised ``synth`` section. A voice is kept as the config wrote it (corpus.json records
    it so); its left-out keys take the schema's defaults when it is spoken."""
    from .face import make_variant
    synth = SynthConfig.from_section(cfg)
    faces = synth.faces
    plans = []
    for i, spk in enumerate(synth.speakers):
        face = str(faces[i % len(faces)])
        use = i // len(faces)
        variant = make_variant(use, _speaker_rng(synth.seed, i, 1))
        voice = dict(cfg["voices"][i % len(synth.voices)])
        sents = gridgrammar.sample_sentences(_speaker_rng(synth.seed, i, 0), int(synth.utterances_per_speaker))
        face_seed = int(np.random.SeedSequence([int(synth.seed), i, 2]).generate_state(1)[0])
        plans.append({"index": i, "speaker": str(spk), "face": face, "variant": variant, "voice": voice,
                      "sentences": sents, "face_seed": face_seed})
    return plans


# --------------------------------------------------------------------------- worker side
_W: dict = {}


def _worker_init(synth: SynthConfig, faces: dict, out_dir: str, reuse: bool):
    # (no cv2.setNumThreads here: it deadlocks in a forked child of a process whose
    # OpenCV thread pool was already running)
    from .speech import Espeak
    Espeak.get()  # initialise espeak-ng once per worker
    _W.clear()
    _W.update(synth=synth, faces=faces, out_dir=Path(out_dir), reuse=reuse, renderers={})


def _jittered_voice(voice: VoiceConfig, jitter: JitterConfig, rng: np.random.Generator) -> dict:
    """The voice's pitch, range and rate, each moved by up to its ``jitter`` (within espeak-ng's ranges)."""
    def j(base: float, amp: float, lo: int, hi: int) -> int:
        return int(round(np.clip(float(base) + rng.uniform(-float(amp), float(amp)), lo, hi)))
    return {"voice": str(voice.voice), "pitch": j(voice.pitch, jitter.pitch, 0, 100),
            "range": j(voice.range, jitter.range, 0, 100), "rate": j(voice.rate, jitter.rate, 80, 450)}


def _encode_video(path: Path, frames: np.ndarray, audio: np.ndarray, sr: int, fps: float, container: str):
    import soundfile as sf
    T, H, W, _ = frames.shape
    tmp = _tmp_path(path)
    wav = path.with_name(f".{path.stem}.tmp{os.getpid()}.wav")
    sf.write(str(wav), audio, sr, subtype="PCM_16")
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-framerate", str(fps), "-i", "pipe:0",
           "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", "-threads", "1",
           "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
           "-map_metadata", "-1", *_CONTAINERS[container], str(tmp)]
    try:
        p = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise RuntimeError(f"ffmpeg failed ({p.returncode}) for {path}: "
                               f"{p.stderr.decode(errors='replace').strip()[-400:]}")
        os.replace(tmp, path)
    finally:
        for f in (wav, tmp):
            try:
                os.remove(f)
            except FileNotFoundError:
                pass


def render_utterance(task: dict) -> dict:
    """Synthesize, animate and write one utterance; returns its corpus.json entry."""
    from .render import MouthRenderer, articulation, phoneme_segments, render_frames
    from .speech import synthesize
    synth, out_dir = _W["synth"], _W["out_dir"]
    spk, uid, words = task["speaker"], task["utt"], task["words"]
    rng = np.random.default_rng(np.random.SeedSequence([int(synth.seed), task["spk_index"], 3, task["utt_index"]]))
    fps = float(synth.fps)
    voice = _jittered_voice(VoiceConfig.from_section(task["voice"]), synth.jitter, rng)
    lo, hi = (float(x) for x in synth.silence)
    lead, trail = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
    syn = synthesize(words, voice["voice"], voice["pitch"], voice["range"], voice["rate"])
    sr = syn.sample_rate
    n_lead = int(round(lead * sr))
    n_speech = len(syn.audio) + n_lead + int(round(trail * sr))
    n_frames = int(math.ceil(n_speech / sr * fps - 1e-9))
    n_total = int(round(n_frames * sr / fps))
    audio = np.zeros(n_total, np.int16)
    audio[n_lead:n_lead + len(syn.audio)] = syn.audio[: max(0, n_total - n_lead)]
    total_s = n_frames / fps
    lead_s = n_lead / sr
    phonemes = [(n, a + lead_s, b + lead_s) for n, a, b in syn.phonemes]
    words_t = [(w, a + lead_s, b + lead_s) for w, a, b in syn.words]
    paths = utterance_paths(out_dir, spk, uid, synth.container)
    entry = {"speaker": spk, "utt": uid, "words": list(words), "duration": round(total_s, 6),
             "n_frames": n_frames, "voice": voice, "lead_silence": round(lead_s, 6),
             "trail_silence": round(total_s - lead_s - syn.duration, 6),
             "video": str(paths["video"].relative_to(out_dir)), "align": str(paths["align"].relative_to(out_dir)),
             "mouth": str(paths["mouth"].relative_to(out_dir))}
    head_seed = rng.integers(0, 2**63 - 1)
    art_seed = rng.integers(0, 2**63 - 1)
    if _W.get("reuse") and all(p.is_file() for p in paths.values()):
        entry["reused"] = True
        return entry

    face = _W["faces"][spk]
    r = _W["renderers"].get(spk)
    if r is None:
        r = _W["renderers"][spk] = MouthRenderer(face)
    times = (np.arange(n_frames) + 0.5) / fps
    segs = phoneme_segments(phonemes, total_s, np.random.default_rng(art_seed))
    tracks = articulation(segs, times)
    frames, lips, opening = render_frames(face, tracks, np.random.default_rng(head_seed), fps,
                                          float(synth.head_motion), float(synth.lighting), renderer=r)
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    _encode_video(paths["video"], frames, audio, sr, fps, synth.container)
    atomic_write_bytes(paths["align"], align_text(words_t, total_s).encode())
    mouth = {
        "centre": lips.mean(1).astype(np.float32),
        "lips": lips.astype(np.float32),
        "opening": opening.astype(np.float32),
        "phonemes": np.array([n for n, _, _ in phonemes], dtype=np.str_),
        "phoneme_start": np.array([a for _, a, _ in phonemes], np.float64),
        "phoneme_end": np.array([b for _, _, b in phonemes], np.float64),
        "words": np.array([w for w, _, _ in words_t], dtype=np.str_),
        "word_start": np.array([a for _, a, _ in words_t], np.float64),
        "word_end": np.array([b for _, _, b in words_t], np.float64),
        "articulation": tracks.astype(np.float32),
        "fps": np.float64(fps),
        "frame_size": np.array(frames.shape[2:0:-1], np.int32),
    }
    atomic_write_bytes(paths["mouth"], npz_bytes(mouth))
    return entry


def _is_grid_id(stem: str) -> bool:
    try:
        gridgrammar.words_from_utt_id(stem)
        return True
    except ValueError:
        return False


def _tidy(out_dir: Path, tasks: list[dict], container: str) -> None:
    """Remove temporaries of killed runs and generated utterances that are not in this plan."""
    planned = {(t["speaker"], t["utt"]) for t in tasks}
    for spk in sorted({t["speaker"] for t in tasks}):
        d = out_dir / spk
        for sub, exts in ((d, (".mpg", ".mp4")), (d / "align", (".align",)), (d / "mouth", (".npz",))):
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if not f.is_file():
                    continue
                if f.name.startswith(".") and ".tmp" in f.name:
                    f.unlink()
                elif f.suffix in exts and _is_grid_id(f.stem) and (spk, f.stem) not in planned:
                    f.unlink()
                elif f.suffix in (".mpg", ".mp4") and f.suffix != "." + container and _is_grid_id(f.stem):
                    f.unlink()
    for f in out_dir.glob(".*.tmp*"):
        if f.is_file():
            f.unlink()


# --------------------------------------------------------------------------- driver
def _claim(out_dir: Path, fp: str) -> tuple[Path, Path, bool]:
    """Mark out_dir as in progress for this fingerprint; returns (marker, corpus.json, whether complete
    utterances of an earlier run with the same config may be reused)."""
    marker = out_dir / ".synthgrid-inprogress.json"
    final = out_dir / "corpus.json"
    reuse = False
    for f in (marker, final):
        try:
            reuse = reuse or json.loads(f.read_text()).get("fingerprint") == fp
        except (OSError, ValueError, AttributeError):
            pass
    if final.exists():
        os.remove(final)
    atomic_write_bytes(marker, json.dumps({"fingerprint": fp}).encode())
    return marker, final, reuse


def _tasks(plans: list[dict]) -> list[dict]:
    """One rendering task per utterance of every speaker's plan."""
    tasks = []
    for p in plans:
        ids = set()
        for j, words in enumerate(p["sentences"]):
            uid = gridgrammar.utt_id(words)
            assert uid not in ids
            ids.add(uid)
            tasks.append({"speaker": p["speaker"], "spk_index": p["index"], "utt_index": j, "utt": uid,
                          "words": list(words), "voice": p["voice"]})
    return tasks


def _render_all(tasks: list[dict], synth: SynthConfig, faces: dict, out_dir: Path, reuse: bool, threads: int,
                progress: bool) -> list[dict]:
    """Every task's result (in task order), in ``threads`` processes."""
    threads = max(1, int(threads or 1))
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(tasks), desc="SynthGRID", unit="utt")
    results = []
    if threads == 1 or len(tasks) <= 1:
        _worker_init(synth, faces, str(out_dir), reuse)
        for t in tasks:
            results.append(render_utterance(t))
            if bar is not None:
                bar.update(1)
    else:
        import multiprocessing as mp
        # fork where available: no re-import of the caller's __main__ (spawn would need an
        # `if __name__ == "__main__"` guard); workers get the prepared faces for free
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(min(threads, len(tasks)), initializer=_worker_init,
                      initargs=(synth, faces, str(out_dir), reuse)) as pool:
            for res in pool.imap(render_utterance, tasks, chunksize=1):
                results.append(res)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return results


def _corpus_meta(cfg: dict, fp: str, plans: list[dict], faces: dict, results: list[dict], seconds: float) -> dict:
    """corpus.json's content (``config``: the normalised ``synth`` section, as hashed in ``fingerprint``)."""
    import lipspeech

    speakers = {}
    for p in plans:
        f = faces[p["speaker"]]
        speakers[p["speaker"]] = {"face": p["face"], "variant": p["variant"].to_dict(), "voice": p["voice"],
                                  "mouth_half_width_px": round(float(f.w0), 3),
                                  "n_utterances": len(p["sentences"])}
    return {
        "generator": GENERATOR,
        "lipspeech_version": getattr(lipspeech, "__version__", "unknown"),
        "fingerprint": fp,
        "config": cfg,
        "layout": {"video": "{speaker}/{utt}." + SynthConfig.from_section(cfg).container,
                   "align": "{speaker}/align/{utt}.align", "mouth": "{speaker}/mouth/{utt}.npz"},
        "align_units_per_second": ALIGN_UNITS_PER_SECOND,
        "mouth_fields": {"centre": "(T,2) mean of the 20 lip points, output pixels (x, y)",
                         "lips": "(T,20,2) iBUG-68 points 48..67, output pixels",
                         "opening": "(T,) inner-lip gap (points 62-66) / mouth width (48-54)",
                         "phonemes/phoneme_start/phoneme_end": "espeak-ng phonemes, seconds of video time"},
        "speakers": speakers,
        "n_utterances": len(results),
        "seconds": round(seconds, 3),
        "utterances": results,
    }


def generate_corpus(cfg: dict, out_dir: Path, threads: int = 1, progress: bool = True) -> dict:
    """Generate SynthGRID under out_dir; returns {n_utterances, speakers, seconds, ...}.

    ``seconds`` is the total duration of the generated videos, ``elapsed_s`` the wall time.
    Complete utterances left by an interrupted run with the same cfg are reused.
    """
    from .face import build_speaker_face

    t_start = time.time()
    cfg = normalise_cfg(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_tools()
    from .speech import load_library
    load_library()  # fail early with the apt-get hint

    synth = SynthConfig.from_section(cfg)
    fp = _fingerprint(cfg)
    marker, final, reuse = _claim(out_dir, fp)
    plans = plan_speakers(cfg)
    W, H = (int(x) for x in synth.frame_size)
    faces = {p["speaker"]: build_speaker_face(p["face"], (W, H), p["variant"], p["face_seed"]) for p in plans}
    tasks = _tasks(plans)
    _tidy(out_dir, tasks, synth.container)
    results = _render_all(tasks, synth, faces, out_dir, reuse, threads, progress)
    n_reused = sum(1 for r in results if r.pop("reused", False))
    seconds = float(sum(r["duration"] for r in results))
    meta = _corpus_meta(cfg, fp, plans, faces, results, seconds)
    atomic_write_bytes(final, (json.dumps(meta, indent=1) + "\n").encode())
    try:
        os.remove(marker)
    except FileNotFoundError:
        pass
    return {"n_utterances": len(results), "speakers": [p["speaker"] for p in plans], "seconds": round(seconds, 3),
            "elapsed_s": round(time.time() - t_start, 2), "reused": n_reused, "out_dir": str(out_dir)}
