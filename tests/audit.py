"""Reading the file-read audit (lipspeech/core/audit.py): which job read what it was not given."""

import json
import os
from pathlib import Path


def undeclared_reads(audit_dir: Path) -> list[str]:
    """One line per file a stage command read, or folder it listed, under ``results/`` without it (or a
    folder holding it) being on its command line, where its rule puts declared inputs and outputs."""
    problems = []
    for record_path in sorted(Path(audit_dir).glob("*.json")):
        rec = json.loads(record_path.read_text())
        cwd = Path(rec["cwd"])
        given = set()
        for token in rec["argv"][1:]:
            for part in token.split("="):  # NAME=PATH options
                if part and "results" in Path(part).parts:  # (temporary inputs are gone by now: no exists())
                    given.add((Path(part) if os.path.isabs(part) else cwd / part).resolve())
        results = (cwd / "results").resolve()
        own = {(Path(w) if os.path.isabs(w) else cwd / w).resolve() for w in rec.get("written", [])}

        def covered(path: Path, listing: bool, given: set[Path] = given) -> bool:
            return any(path == g or g in path.parents or (listing and path in g.parents) for g in given)

        command = " ".join(rec["argv"][1:3])
        for kind, listing in (("read", False), ("listed", True)):
            for raw in rec[kind]:
                path = (Path(raw) if os.path.isabs(raw) else cwd / raw).resolve()
                if results in path.parents and path not in own and not covered(path, listing):
                    problems.append(f"{command}: {kind} {path.relative_to(cwd)} (not on its command line)")
    return sorted(set(problems))
