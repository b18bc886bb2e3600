"""The bad-input zoo: media files and corpus trees that exercise every way an input can be odd.

Built once per test session (``zoo`` fixture in conftest.py) from three SynthGRID
utterances (a real talking face with espeak-ng speech) and ffmpeg's lavfi sources:

``{root}/zoo dir ü/folder/``: a ``folder`` corpus (speaker folders ``good`` and ``bad``)
``{root}/zoo dir ü/grid/``: a GRID tree whose alignments are missing, off-vocabulary or garbled
``{root}/zoo dir ü/list.csv``: a ``csv`` corpus, one row of which names a missing file

The root path itself has a space and a non-ASCII letter. :data:`FOLDER_CASES` says
what each file is and which stage should take it or refuse it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SYNTH = {"seed": 7, "speakers": ["s1"], "utterances_per_speaker": 3, "faces": ["astronaut"],
         "frame_size": [360, 288], "silence": [0.2, 0.3]}
UNICODE_NAME = "héllo wörld 日本"

# utt id -> (what it is, the stage that rejects it or None when it goes through, reason substring)
FOLDER_CASES: dict[str, tuple[str, str | None, str]] = {
    "good_clean": ("SynthGRID clip as generated (25 fps MPEG-1, 22.05 kHz mono)", None, ""),
    "good_fps2997": ("re-encoded at 29.97 fps (H.264/AAC)", None, ""),
    "good_fps30": ("re-encoded at 30 fps", None, ""),
    "good_fps50": ("re-encoded at 50 fps", None, ""),
    "good_odd321x241": ("scaled to 321x241 (FFV1 in Matroska, PCM audio)", None, ""),
    "good_stereo48k": ("audio as 48 kHz stereo AAC", None, ""),
    f"good_{UNICODE_NAME}": ("file name with spaces and non-ASCII letters", None, ""),
    "good_twofaces": ("two faces side by side (the second mirrored and smaller)", None, ""),
    "bad_empty": ("zero-byte file", "manifest", "empty file (0 bytes)"),
    "bad_truncated": ("MPEG-PS cut at 90 % of its bytes", "decode", "damaged or truncated"),
    "bad_noaudio": ("video without an audio stream", "manifest", "no audio stream"),
    "bad_audioonly": ("an .mp4 holding only an audio stream", "manifest", "no video stream"),
    "bad_noface": ("grey frames and a tone: no face", "roi", "no face detected"),
    "bad_tenminutes": ("a 10-minute clip (64x48, built by stream-copy concatenation)", "manifest",
                       "too long: 600.0 s > manifest.max_duration"),
    "bad_badtext": ("transcript file that is not UTF-8 text", "manifest", "transcript"),
}
# GRID tree: utt id -> (what, rejecting stage or None, reason substring)
GRID_CASES: dict[str, tuple[str, str | None, str]] = {
    "s1_good": ("clip with a proper alignment", None, ""),
    "s1_noalign": ("no .align file", "manifest", "no transcript"),
    "s1_oov": ("alignment with a word outside GRID's vocabulary", "manifest", "outside the GRID vocabulary: 'xyzzy'"),
    "s1_garbled": ("alignment that is not 'start end word' lines", "manifest", "unreadable alignment"),
}


@dataclass(frozen=True)
class Zoo:
    root: Path
    synth: Path        # the SynthGRID corpus the clips come from (GRID layout)
    folder: Path       # folder corpus root
    grid: Path         # GRID corpus root
    csv: Path          # csv corpus file
    clips: tuple[Path, ...]  # the three SynthGRID clips


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-nostdin", "-y", *args], check=True)


def build_zoo(root: Path) -> Zoo:
    """Write the zoo under ``root`` (about 10 s on one core)."""
    from lipspeech.data.synth.corpus import generate_corpus

    synth = root / "synth"
    generate_corpus(SYNTH, synth, threads=2, progress=False)
    clips = tuple(sorted((synth / "s1").glob("*.mpg")))
    a, b, c = clips
    base = root / "zoo dir ü"
    folder = base / "folder"
    good, bad = folder / "good", folder / "bad"
    good.mkdir(parents=True)
    bad.mkdir(parents=True)
    x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p"]

    shutil.copy(a, good / "clean.mpg")
    (good / "clean.txt").write_text(_align_words(a) + "\n")
    for name, rate in (("fps2997", "30000/1001"), ("fps30", "30"), ("fps50", "50")):
        ffmpeg("-i", str(a), "-r", rate, *x264, "-c:a", "aac", str(good / f"{name}.mp4"))
    ffmpeg("-i", str(a), "-vf", "scale=321:241", "-c:v", "ffv1", "-c:a", "pcm_s16le", str(good / "odd321x241.mkv"))
    ffmpeg("-i", str(a), *x264, "-ac", "2", "-ar", "48000", "-c:a", "aac", str(good / "stereo48k.mp4"))
    shutil.copy(b, good / f"{UNICODE_NAME}.mpg")
    (good / f"{UNICODE_NAME}.txt").write_text(_align_words(b) + "\n")
    ffmpeg("-i", str(c), "-filter_complex",
           "[0:v]split[l][r];[r]hflip,scale=288:230,pad=360:288:36:29:color=gray[m];[l][m]hstack=inputs=2",
           *x264, "-c:a", "aac", str(good / "twofaces.mp4"))

    (bad / "empty.mp4").write_bytes(b"")
    data = a.read_bytes()
    (bad / "truncated.mpg").write_bytes(data[: int(len(data) * 0.9)])
    ffmpeg("-i", str(a), "-an", "-c:v", "copy", "-f", "mpeg", str(bad / "noaudio.mpg"))
    ffmpeg("-i", str(a), "-vn", "-c:a", "aac", str(bad / "audioonly.mp4"))
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=360x288:r=25:d=2", "-f", "lavfi", "-i", "sine=f=300:d=2",
           "-c:v", "mpeg1video", "-c:a", "mp2", "-f", "mpeg", str(bad / "noface.mpg"))
    # 10 s of tiny H.264 + 8 kHz PCM (no codec priming, so the copies join without audio drift), 60 times
    seg = root / "segment.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x48:r=25:d=10", "-f", "lavfi", "-i", "sine=f=220:r=8000:d=10",
           *x264, "-c:a", "pcm_u8", str(seg))
    (root / "segments.txt").write_text("".join(f"file '{seg}'\n" for _ in range(60)))
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(root / "segments.txt"), "-c", "copy", str(bad / "tenminutes.mkv"))
    shutil.copy(a, bad / "badtext.mpg")
    (bad / "badtext.txt").write_bytes(b"bin \xff\xfe blue\n")

    grid = base / "grid"
    (grid / "s1" / "align").mkdir(parents=True)
    for name in ("good", "noalign", "oov", "garbled"):
        shutil.copy(a, grid / "s1" / f"{name}.mpg")
    align = (synth / "s1" / "align" / f"{a.stem}.align").read_text()
    (grid / "s1" / "align" / "good.align").write_text(align)
    first_word = align.splitlines()[1].split()[2]
    (grid / "s1" / "align" / "oov.align").write_text(align.replace(f" {first_word}\n", " xyzzy\n", 1))
    (grid / "s1" / "align" / "garbled.align").write_text("this is not\nan alignment at all\n")

    csv = base / "list.csv"
    csv.write_text("video,utt,speaker,text\n"
                   f"folder/good/clean.mpg,c_clean,c,{_align_words(a)}\n"
                   f"folder/good/{UNICODE_NAME}.mpg,c_unicode,c,\n"
                   "folder/good/does not exist.mp4,c_missing,c,\n")
    return Zoo(root, synth, folder, grid, csv, clips)


def _align_words(video: Path) -> str:
    from lipspeech.data.corpora import read_grid_align

    return read_grid_align(video.parent / "align" / f"{video.stem}.align")[0]
