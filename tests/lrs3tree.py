"""A tiny tree in LRS3's layout for the reader, manifest and workflow tests (``from lrs3tree import ...``).

Seven video ids (11 characters, with ``-`` and ``_``; two start with ``-``) over pretrain/,
trainval/ and test/, and the ways a clip's ``.txt`` goes wrong: none at all, no ``Text:`` line,
a ``Text:`` line without words, bytes that are not UTF-8.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TIMINGS = "WORD START END ASDSCORE\nHELLO 0.10 0.42 3.1\nWORLD 0.42 0.80 4.0\n"
# (folder, video id, clip) -> the .txt's bytes, or None: no .txt beside the clip
CLIPS: dict[tuple[str, str, str], bytes | None] = {
    ("trainval", "Ab3-dEf_GhI", "00001"): f"Text:  HELLO, WORLD\nConf:  4\n\n{TIMINGS}".encode(),
    ("trainval", "Ab3-dEf_GhI", "00002"): b"Text:\tIT'S A 'TEST'  OF  THE   SET-UP!\nConf:  3\n",
    ("trainval", "-x9Yz_QwErT", "00001"): b"Text:  WE SAW 3 BIRDS\nConf:  4\n",
    ("trainval", "-x9Yz_QwErT", "00002"): None,
    ("trainval", "Zz_zz-Zz_zz", "00003"): b"Conf:  4\n\nWORD START END ASDSCORE\n",
    ("trainval", "Zz_zz-Zz_zz", "00004"): b"Text:   \nConf:  2\n",
    ("trainval", "mNoPqRsTuVw", "00001"): b"Text:  GOOD MORNING\nConf:  4\n",
    ("pretrain", "Ab3-dEf_GhI", "00001"): f"Text:  HELLO WORLD AGAIN\nConf:  4\n\n{TIMINGS}".encode(),
    ("pretrain", "pReTrAiN001", "00001"): f"Text:  A LONGER PRETRAIN SEGMENT\nConf:  4\n\n{TIMINGS}".encode(),
    ("test", "-tEsT_00001", "00001"): b"Text:  THANK YOU\nConf:  4\n",
    ("test", "TeStId_0002", "00001"): b"Text:  SEE YOU SOON\nConf:  4\n",
    ("test", "TeStId_0002", "00002"): b"Text:  CAF\xe9\nConf:  4\n",  # Latin-1, not UTF-8
}


def build_lrs3(root: Path, clip: Path | None = None) -> Path:
    """Write the tree under ``root``: each clip a copy of ``clip`` (a real video with audio), or an
    empty file when None (enough for the reader, which looks only at names and .txt files)."""
    for (part, vid, name), txt in CLIPS.items():
        folder = root / part / vid
        folder.mkdir(parents=True, exist_ok=True)
        if clip is None:
            (folder / f"{name}.mp4").touch()
        else:
            shutil.copyfile(clip, folder / f"{name}.mp4")
        if txt is not None:
            (folder / f"{name}.txt").write_bytes(txt)
    return root
