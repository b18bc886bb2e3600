"""The manifest: one table of every utterance, with its split and its shard.

Columns: ``utt, speaker, split, shard, video_path, audio_path, text, duration,
fps, fps_resampled, width, height, sample_rate, rotation, sar, interlaced``. ``fps``
is the source frame rate; the decode stage resamples every video to 25 fps and
``fps_resampled`` says where that changed anything. ``width`` x ``height`` is the
frame size as decoded, i.e. as a viewer sees it: ``rotation`` (degrees clockwise, from
the display matrix) applied and non-square pixels (``sar``, the sample aspect ratio)
made square; ``interlaced`` sources are deinterlaced
(:func:`lipspeech.core.media.read_frames`). ``audio_path`` equals ``video_path``
when the audio comes from the video's own track.

Shards are ``hash(utt) mod shards``: stable across runs and machines, so the DAG
of every later stage is known before any data is read.
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import pyarrow as pa
import yaml
from tqdm.auto import tqdm

from lipspeech.core.config import config_hash
from lipspeech.core.media import MediaError, probe, require_ffmpeg
from lipspeech.core.settings import CorpusConfig, ManifestConfig
from lipspeech.core.shards import refuse_rejections
from lipspeech.core.store import StoreMeta, write_rejected, write_store
from lipspeech.core.timing import FPS
from lipspeech.data.corpora import SPLITS, Entry, read_corpus
from lipspeech.data.gridgrammar import all_words

STAGE = "manifest"
GRID_WORDS = frozenset(all_words())
COLUMNS = {
    "speaker": pa.string(),
    "split": pa.string(),
    "shard": pa.int32(),
    "video_path": pa.string(),
    "audio_path": pa.string(),
    "text": pa.string(),
    "duration": pa.float64(),
    "fps": pa.float64(),
    "fps_resampled": pa.bool_(),
    "width": pa.int32(),
    "height": pa.int32(),
    "sample_rate": pa.int32(),
    "rotation": pa.int32(),
    "sar": pa.float64(),
    "interlaced": pa.bool_(),
}


def stable_fraction(key: str, salt: str) -> float:
    """A number in [0, 1) that depends only on ``salt`` and ``key``."""
    digest = hashlib.sha1(f"{salt}:{key}".encode()).hexdigest()
    return int(digest[:12], 16) / float(16**12)


def shard_of(utt: str, shards: int) -> int:
    """The shard of an utterance: stable hash of its id modulo ``shards``."""
    return int(hashlib.sha1(utt.encode()).hexdigest()[:12], 16) % shards


def shard_name(shard: int) -> str:
    return f"{shard:03d}"


def hash_split(utt: str, ratios: tuple[float, float, float] | list[float]) -> str:
    """train/val/test by a stable hash of the utterance id and the ratios."""
    u = stable_fraction(utt, "split")
    if u < ratios[0]:
        return "train"
    if u < ratios[0] + ratios[1]:
        return "val"
    return "test"


@dataclass(frozen=True)
class GridSplit:
    """A speaker-level split definition shipped with the package."""

    speakers: dict[str, str | None]  # speaker -> split, or None: split its utterances by ratio


def load_grid_split(name: str) -> GridSplit:
    """Speaker sets of the GRID settings (lipspeech/resources/splits/grid.yaml)."""
    data = yaml.safe_load(resources.files("lipspeech").joinpath("resources/splits/grid.yaml").read_text())
    if name not in data:
        raise KeyError(f"no GRID split {name!r} (known: {', '.join(data)})")
    spec = data[name]
    speakers: dict[str, str | None] = {s: None for s in spec.get("speakers", [])}
    for split in SPLITS:
        for s in spec.get(split, []):
            speakers[s] = split
    return GridSplit(speakers)


def _list_key(text: str) -> str:
    """'s1/video/bbaf2n.mp4' or 'test/s1/bbaf2n' -> 's1/bbaf2n' style key (speaker/name)."""
    parts = [p for p in re.split(r"[\\/]", text.strip()) if p and p not in ("video", "intervals", *SPLITS)]
    parts[-1] = parts[-1].rsplit(".", 1)[0] if "." in parts[-1] else parts[-1]
    return "/".join(parts[-2:]) if len(parts) >= 2 else parts[-1]


def read_split_lists(folder: Path) -> dict[str, str]:
    """train.txt/val.txt/test.txt in ``folder`` -> {speaker/name: split}."""
    out: dict[str, str] = {}
    for split in SPLITS:
        f = folder / f"{split}.txt"
        if f.exists():
            for line in f.read_text().splitlines():
                if line.strip():
                    out[_list_key(line)] = split
    if not out:
        raise FileNotFoundError(f"split_lists folder {folder} has no train.txt/val.txt/test.txt")
    return out


def assign_splits(entries: list[Entry], corpus_cfg: CorpusConfig | Mapping[str, Any]) -> list[tuple[Entry, str]]:
    """Keep the utterances the config selects and give each its split.

    Order of precedence: published lists (corpus.split_lists) > the corpus's own
    lists or column > the GRID speaker split > a stable hash by split_ratios.
    """
    corpus = CorpusConfig.from_section(corpus_cfg)
    speaker_split: dict[str, str | None] | None = None
    if corpus.kind in ("grid", "synthgrid") and corpus.split != "all":
        speaker_split = load_grid_split(corpus.split).speakers
    lists = read_split_lists(Path(corpus.split_lists)) if corpus.split_lists else {}
    keep = set(corpus.speakers) if corpus.speakers else None
    out = []
    for e in entries:
        if keep is not None and e.speaker not in keep:
            continue
        if speaker_split is not None and e.speaker not in speaker_split:
            continue
        key = _list_key(e.list_key) if e.list_key else None
        if key is not None and key in lists:
            split = lists[key]
        elif e.split is not None:
            split = e.split
        elif speaker_split is not None and speaker_split[e.speaker] is not None:
            split = speaker_split[e.speaker]  # type: ignore[assignment]
        else:
            split = hash_split(e.utt, corpus.split_ratios)
        out.append((e, split))
    return out


def transcripts_required(kind: str, policy: str) -> bool:
    """manifest.transcripts: auto = required where the corpus has one per clip (GRID, SynthGRID, LRS3)."""
    return policy == "required" or (policy == "auto" and kind in ("grid", "synthgrid", "lrs3"))


def transcript_problem(entry: Entry, kind: str, policy: str) -> str | None:
    """Why an utterance's transcript makes it unusable, or None.

    A reader's own problem (an unreadable transcript file) always rejects; a missing
    transcript rejects when transcripts are required; GRID transcripts must use GRID's
    51-word vocabulary (anything else means a damaged or foreign alignment file).
    """
    if entry.problem:
        return entry.problem
    if entry.text is None:
        if not transcripts_required(kind, policy):
            return None
        where = f"{entry.text_file} missing or without words" if entry.text_file else "none given"
        return f"no transcript ({where}; manifest.transcripts: optional keeps such clips)"
    if kind in ("grid", "synthgrid"):
        unknown = sorted({w for w in entry.text.lower().split() if w not in GRID_WORDS})
        if unknown:
            shown = ", ".join(repr(w) for w in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            return f"transcript {entry.text_file} has words outside the GRID vocabulary: {shown}"
    return None


def _probe_entry(entry: Entry, manifest: ManifestConfig) -> dict[str, Any]:
    """Probe one utterance; raise MediaError with a one-line reason when it is unusable."""
    info = probe(entry.video_path)
    if not info.has_video:
        raise MediaError("no video stream")
    if info.fps is None:
        raise MediaError("video stream has no frame rate")
    audio_path = entry.audio_path or entry.video_path
    if entry.audio_path is not None:
        ainfo = probe(entry.audio_path)
    else:
        ainfo = info
    if not ainfo.has_audio:
        raise MediaError("no audio stream" + ("" if entry.audio_path else " in the video and no separate audio file"))
    duration = info.duration
    if duration is None:
        raise MediaError("duration unknown (container reports none)")
    if duration < manifest.min_duration:
        raise MediaError(f"too short: {duration:.2f} s < manifest.min_duration {manifest.min_duration} s")
    if duration > manifest.max_duration:
        raise MediaError(f"too long: {duration:.1f} s > manifest.max_duration {manifest.max_duration} s")
    return {
        "audio_path": str(audio_path),
        "duration": float(duration),
        "fps": float(info.fps),
        "fps_resampled": abs(info.fps - FPS) > 1e-3,
        "width": int(info.width or 0),
        "height": int(info.height or 0),
        "sample_rate": int(ainfo.sample_rate or 0),
        "rotation": int(info.rotation),
        "sar": float(info.sar),
        "interlaced": bool(info.interlaced),
    }


def build_manifest(
    corpus_cfg: Mapping[str, Any],
    manifest_cfg: Mapping[str, Any],
    root: Path,
    out: Path,
    rejected_out: Path,
    threads: int = 1,
    progress: bool = True,
    *,
    fail_fast: bool,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read the corpus, probe every utterance, write ``manifest.parquet`` and its rejected table.

    ``corpus_cfg`` and ``manifest_cfg`` are the validated sections, mappings: the store's config hash
    is theirs. With ``fail_fast`` any rejected utterance fails the stage (StageError) and nothing is
    written.
    """
    require_ffmpeg()
    corpus, manifest = CorpusConfig.from_section(corpus_cfg), ManifestConfig.from_section(manifest_cfg)
    entries = assign_splits(read_corpus(corpus, root), corpus)
    rejected: dict[str, str] = {}
    seen: set[str] = set()
    unique = []
    for e, split in entries:
        if e.utt in seen:
            rejected[e.utt] = f"duplicate utterance id (also from another file): {e.video_path}"
            continue
        seen.add(e.utt)
        problem = transcript_problem(e, corpus.kind, manifest.transcripts)
        if problem:
            rejected[e.utt] = problem
            continue
        unique.append((e, split))

    def work(item: tuple[Entry, str]) -> tuple[Entry, str, dict[str, Any] | str]:
        e, split = item
        try:
            return e, split, _probe_entry(e, manifest)
        except MediaError as exc:
            return e, split, str(exc)

    rows = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = pool.map(work, unique)
        for e, split, res in tqdm(results, total=len(unique), desc="manifest", unit="utt", disable=not progress):
            if isinstance(res, str):
                rejected[e.utt] = res
                continue
            rows.append(
                {
                    "utt": e.utt,
                    "speaker": e.speaker,
                    "split": split,
                    "shard": shard_of(e.utt, manifest.shards),
                    "video_path": str(e.video_path),
                    "text": e.text,
                    **res,
                }
            )
    rows.sort(key=lambda r: r["utt"])
    refuse_rejections(STAGE, sorted(rejected.items()), fail_fast)
    meta = StoreMeta(STAGE, config_hash(dict(corpus_cfg), dict(manifest_cfg)), extra={"root": str(root)})
    write_store(out, meta, [r["utt"] for r in rows], {c: pa.array([r[c] for r in rows], type=t) for c, t in COLUMNS.items()})
    df = pd.DataFrame(rows, columns=["utt", *COLUMNS])
    write_rejected(rejected_out, STAGE, sorted(rejected.items()))
    return df, rejected
