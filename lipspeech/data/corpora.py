"""Corpus readers: walk a raw dataset tree and list its utterances.

Each reader returns :class:`Entry` records; it only looks at file names and small
text files (alignments, transcripts, lists). Probing the media, splitting and
sharding happen in :mod:`lipspeech.data.manifest`, the same for every corpus.

Layouts understood
------------------
GRID (and SynthGRID, which is generated in GRID's layout)::

    {root}/s1/bbaf2n.mpg                  video with audio (also s1/video/**/x.mpg, .mp4)
    {root}/s1/align/bbaf2n.align          word alignment   (or {root}/align/s1/, {root}/alignments/s1/)
    {audio_root}/s1/bbaf2n.wav            optional separate audio (e.g. GRID's audio_25k)

Lip2Wav::

    {root}/{speaker}/intervals/{video_id}/{seg}.mp4
    {root}/{speaker}/{train,val,test}.txt  lines "{video_id}/{seg}"

Folder::

    {root}/{speaker}/{utt}.{mp4,mpg,avi,mov,mkv,webm}  (+ optional {utt}.txt, {utt}.wav)

LRS3 (:func:`read_lrs3`; speaker = the YouTube video id, utterance ``{part}_{id}_{clip}``)::

    {root}/{pretrain,trainval,test}/{video_id}/{clip}.mp4   video with audio
    {root}/{pretrain,trainval,test}/{video_id}/{clip}.txt   "Text:  WORDS", "Conf:  4", word timings

CSV: a file with a ``video`` column and optional ``utt, speaker, audio, text, split``
(relative paths are relative to the CSV file's folder).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from lipspeech.core.settings import CorpusConfig
from lipspeech.core.transcript import normalize_text

VIDEO_EXTS = (".mpg", ".mpeg", ".mp4", ".avi", ".mov", ".mkv", ".webm")
GRID_SILENCES = {"sil", "sp"}
SPLITS = ("train", "val", "test")
# LRS3's folders in the field's two training settings, and the split each folder gives
LRS3_SUBSETS = {"30h": ("trainval", "test"), "433h": ("pretrain", "trainval", "test")}
LRS3_PART_SPLIT = {"pretrain": "train", "trainval": "train", "test": "test"}
_LRS3_TEXT = re.compile(r"Text:\s*(.*)")


class CorpusError(RuntimeError):
    """The corpus tree cannot be read at all (as opposed to one bad utterance)."""


@dataclass(frozen=True)
class Entry:
    """One utterance as found on disk."""

    utt: str
    speaker: str
    video_path: Path
    audio_path: Path | None = None  # None: use the video's own audio track
    text: str | None = None
    split: str | None = None  # set when the corpus itself decides (lists, CSV column)
    list_key: str | None = None  # "speaker/name" used to match published split lists
    problem: str | None = None  # why the utterance cannot be used (e.g. an unreadable transcript): rejected
    text_file: str | None = None  # where the transcript is (or would be), for messages


def _videos_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file())


def read_grid_align(path: Path) -> tuple[str, list[tuple[int, int, str]]]:
    """Parse a GRID ``.align`` file -> (transcript, [(start, end, word)]) in GRID units (1000 per frame).

    Raises ValueError (one line) when a non-blank line is not ``start end word`` or the
    file is not text, so one damaged file costs one utterance, not the manifest.
    """
    rows: list[tuple[int, int, str]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()):
            raise ValueError(f"line {n} is not 'start end word': {line.strip()[:40]!r}")
        rows.append((int(parts[0]), int(parts[1]), parts[2]))
    words = [w for _, _, w in rows if w not in GRID_SILENCES]
    return " ".join(words), rows


def read_transcript(path: Path) -> str | None:
    """A plain-text transcript, whitespace collapsed (None when empty). ValueError if not UTF-8."""
    try:
        text = " ".join(path.read_text(encoding="utf-8").split())
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    return text or None


def read_grid(root: Path, audio_root: Path | None = None) -> list[Entry]:
    """GRID layout (speaker folders of videos with word alignments)."""
    if not root.is_dir():
        raise CorpusError(f"GRID root {root} is not a folder")
    speakers = sorted(
        (d for d in root.iterdir() if d.is_dir() and re.fullmatch(r"s\d+", d.name)),
        key=lambda d: int(d.name[1:]),
    )
    if not speakers:
        raise CorpusError(f"GRID root {root} has no speaker folders s1, s2, ...")
    entries = []
    for spk_dir in speakers:
        spk = spk_dir.name
        align_dirs = [spk_dir / "align", root / "align" / spk, root / "alignments" / spk,
                      root / "alignments" / spk / "align"]
        for video in _videos_under(spk_dir):
            name = video.stem
            text, problem = None, None
            text_file = str((align_dirs[0] / f"{name}.align").relative_to(root))
            for d in align_dirs:
                if (d / f"{name}.align").exists():
                    text_file = str((d / f"{name}.align").relative_to(root))
                    try:
                        text = read_grid_align(d / f"{name}.align")[0] or None
                    except (ValueError, OSError) as exc:
                        problem = f"unreadable alignment {text_file}: {exc}"
                    break
            audio = None
            for cand in ([audio_root / spk / f"{name}.wav"] if audio_root else []) + [video.with_suffix(".wav")]:
                if cand.exists():
                    audio = cand
                    break
            entries.append(Entry(f"{spk}_{name}", spk, video, audio, text, list_key=f"{spk}/{name}",
                                 problem=problem, text_file=text_file))
    return entries


def read_lip2wav(root: Path) -> list[Entry]:
    """Lip2Wav layout (speaker/intervals/video_id/seg.mp4 with train/val/test lists)."""
    if not root.is_dir():
        raise CorpusError(f"Lip2Wav root {root} is not a folder")
    entries = []
    speakers = sorted(d for d in root.iterdir() if (d / "intervals").is_dir())
    if not speakers:
        raise CorpusError(f"Lip2Wav root {root} has no {{speaker}}/intervals folders")
    for spk_dir in speakers:
        spk = spk_dir.name
        listed: dict[str, str] = {}
        for split in SPLITS:
            lst = spk_dir / f"{split}.txt"
            if lst.exists():
                for line in lst.read_text().split():
                    listed[line.strip().strip("/")] = split
        for video in _videos_under(spk_dir / "intervals"):
            vid, seg = video.parent.name, video.stem
            key = f"{vid}/{seg}"
            entries.append(
                Entry(f"{spk}_{vid}_{seg}", spk, video, None, None, split=listed.get(key), list_key=f"{spk}/{vid}/{seg}")
            )
    return entries


def read_folder(root: Path) -> list[Entry]:
    """Generic layout: {root}/{speaker}/{utt}.{video ext} with optional .txt / .wav beside it."""
    if not root.is_dir():
        raise CorpusError(f"corpus root {root} is not a folder")
    entries = []
    for spk_dir in sorted(d for d in root.iterdir() if d.is_dir()):
        for video in sorted(p for p in spk_dir.iterdir() if p.suffix.lower() in VIDEO_EXTS and p.is_file()):
            txt = video.with_suffix(".txt")
            wav = video.with_suffix(".wav")
            text, problem = None, None
            if txt.exists():
                try:
                    text = read_transcript(txt)
                except (ValueError, OSError) as exc:
                    problem = f"unreadable transcript {spk_dir.name}/{txt.name}: {exc}"
            entries.append(
                Entry(f"{spk_dir.name}_{video.stem}", spk_dir.name, video, wav if wav.exists() else None, text,
                      list_key=f"{spk_dir.name}/{video.stem}", problem=problem,
                      text_file=f"{spk_dir.name}/{txt.name}")
            )
    return entries


def read_csv_corpus(path: Path) -> list[Entry]:
    """A CSV file with a ``video`` column (and optional utt, speaker, audio, text, split)."""
    if not path.is_file():
        raise CorpusError(f"corpus CSV {path} is not a file")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "video" not in rows[0]:
        raise CorpusError(f"corpus CSV {path} has no 'video' column (columns: {', '.join(rows[0])})")
    entries = []
    base = path.parent
    for i, row in enumerate(rows):
        video = Path(row["video"])
        video = video if video.is_absolute() else base / video
        speaker = (row.get("speaker") or "").strip() or "spk"
        utt = (row.get("utt") or "").strip() or f"{speaker}_{video.stem}"
        audio = (row.get("audio") or "").strip()
        split = (row.get("split") or "").strip() or None
        if split is not None and split not in SPLITS:
            raise CorpusError(f"corpus CSV {path} row {i + 2}: split {split!r} is not one of {', '.join(SPLITS)}")
        entries.append(
            Entry(utt, speaker, video, (Path(audio) if Path(audio).is_absolute() else base / audio) if audio else None,
                  (row.get("text") or "").strip() or None, split=split, list_key=f"{speaker}/{video.stem}")
        )
    return entries


def read_lrs3_text(path: Path) -> str | None:
    """The transcript of an LRS3 ``.txt`` file: its ``Text:`` line, normalised as it is scored
    (:func:`lipspeech.core.transcript.normalize_text`); None when the line has no words.

    Raises ValueError (one line) when the file is not UTF-8 text or has no ``Text:`` line.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    for line in lines:
        m = _LRS3_TEXT.fullmatch(line.strip())
        if m:
            return normalize_text(m.group(1)) or None
    raise ValueError("no 'Text:' line")


def lrs3_val_ids(trainval_ids: Sequence[str], count: int, val_list: Path | None) -> set[str]:
    """The trainval video ids held out as the val split.

    ``val_list``: a file of video ids, one a line (blank lines and ``#`` comments ignored);
    each must be a folder of ``trainval/``. Otherwise the ``count`` ids first in the order
    of a SHA-1 hash of the id: the same ids for the same tree on every machine, spread over
    the tree rather than the alphabetically first or last.
    """
    if val_list is None:
        order = sorted(trainval_ids, key=lambda v: hashlib.sha1(f"lrs3-val:{v}".encode()).hexdigest())
        return set(order[:count])
    if not val_list.is_file():
        raise CorpusError(f"corpus.lrs3.val_list {val_list} is not a file")
    listed = {s for line in val_list.read_text().splitlines() if (s := line.split("#", 1)[0].strip())}
    unknown = sorted(listed - set(trainval_ids))
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise CorpusError(f"corpus.lrs3.val_list {val_list}: {len(unknown)} id(s) not under trainval/: {shown}")
    return listed


def read_lrs3(root: Path, subset: str, val_speakers: int, val_list: Path | None) -> list[Entry]:
    """LRS3 layout: the folders of ``subset`` (30h: trainval + test, 433h: pretrain too).

    test/ is the test split, trainval/ the train split less the held-out val ids
    (:func:`lrs3_val_ids`), pretrain/ train; a held-out id's pretrain clips are left out,
    so val speakers stay unseen in training. The audio is each mp4's own track.
    """
    if not root.is_dir():
        raise CorpusError(f"LRS3 root {root} is not a folder")
    if subset not in LRS3_SUBSETS:
        raise CorpusError(f"corpus.lrs3.subset {subset!r} is not one of {', '.join(LRS3_SUBSETS)}")
    parts = LRS3_SUBSETS[subset]
    missing = [f"{p}/" for p in parts if not (root / p).is_dir()]
    if missing:
        raise CorpusError(f"LRS3 root {root} has no {', '.join(missing)} (corpus.lrs3.subset {subset} reads "
                          f"{', '.join(p + '/' for p in parts)})")
    ids = {p: sorted(d.name for d in (root / p).iterdir() if d.is_dir()) for p in parts}
    val = lrs3_val_ids(ids["trainval"], val_speakers, val_list)
    entries = []
    for part in parts:
        for vid in ids[part]:
            if part == "pretrain" and vid in val:
                continue
            split = "val" if part == "trainval" and vid in val else LRS3_PART_SPLIT[part]
            for video in sorted(p for p in (root / part / vid).iterdir() if p.suffix.lower() == ".mp4" and p.is_file()):
                txt = video.with_suffix(".txt")
                text_file = f"{part}/{vid}/{txt.name}"
                text, problem = None, None
                if txt.exists():  # a missing one is left to manifest.transcripts (auto: required)
                    try:
                        text = read_lrs3_text(txt)
                    except (ValueError, OSError) as exc:
                        problem = f"unusable transcript {text_file}: {exc}"
                entries.append(Entry(f"{part}_{vid}_{video.stem}", vid, video, None, text, split=split,
                                     list_key=f"{vid}/{video.stem}", problem=problem, text_file=text_file))
    return entries


READERS: dict[str, Callable[..., list[Entry]]] = {
    "grid": read_grid,
    "synthgrid": read_grid,
    "lip2wav": read_lip2wav,
    "lrs3": read_lrs3,
    "folder": read_folder,
    "csv": read_csv_corpus,
}


def read_corpus(corpus_cfg: CorpusConfig | Mapping[str, Any], root: Path) -> list[Entry]:
    """List the utterances of the corpus the (validated) ``corpus`` section describes, found at ``root``."""
    corpus = CorpusConfig.from_section(corpus_cfg)
    kind = corpus.kind
    if kind not in READERS:
        raise CorpusError(f"unknown corpus kind {kind!r} (known: {', '.join(READERS)})")
    if kind in ("grid", "synthgrid"):
        return read_grid(root, Path(corpus.audio_root) if corpus.audio_root else None)
    if kind == "lrs3":
        opts = corpus.lrs3
        return read_lrs3(root, opts.subset, opts.val_speakers, Path(opts.val_list) if opts.val_list else None)
    return READERS[kind](root)
