"""File-read audit of a stage command (for the test that holds every job to its rule's declared inputs).

With ``LIPSPEECH_AUDIT_DIR`` set, :func:`lipspeech.cli.main` calls :func:`install`: every file the
process opens for reading (Python's ``open`` and ``os.open`` audit events, which ``np.load``,
``torch.load`` and ``Path.read_text`` go through; files it created itself, e.g. to fsync its own
output, are listed apart), every directory it lists, and every Parquet file it reads through
pyarrow (whose C++ reader raises no Python audit event, so ``pyarrow.parquet``'s readers are
wrapped) are written at exit, with the command line, to one JSON file per process in that
directory. Nothing is recorded, and nothing is changed, without the variable.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

ENV = "LIPSPEECH_AUDIT_DIR"
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _is_read(mode: Any, flags: Any) -> bool:
    if isinstance(mode, str):
        return not any(c in mode for c in "wax+")
    return isinstance(flags, int) and not flags & _WRITE_FLAGS


def install(folder: str | os.PathLike) -> dict[str, list[str]]:
    """Start recording this process's reads; returns the live record (also written at exit)."""
    record: dict[str, Any] = {"argv": list(sys.argv), "cwd": os.getcwd(), "read": [], "written": [], "listed": []}

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            read = _is_read(args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else None)
            record["read" if read else "written"].append(os.fsdecode(args[0]))
        elif event in ("os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
            record["listed"].append(os.fsdecode(args[0]))

    sys.addaudithook(hook)
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        pq = None
    if pq is not None:
        def wrap(fn: Callable) -> Callable:
            def reader(source: Any, *args: Any, **kwargs: Any) -> Any:
                if isinstance(source, (str, os.PathLike)):
                    record["read"].append(os.fspath(source))
                return fn(source, *args, **kwargs)
            return reader

        for name in ("read_table", "read_schema", "read_metadata", "ParquetFile"):
            setattr(pq, name, wrap(getattr(pq, name)))

    out = Path(folder) / f"{os.getpid()}.json"

    def dump() -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record))

    atexit.register(dump)
    return record
