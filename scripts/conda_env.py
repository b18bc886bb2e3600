"""Write envs/lipspeech.yaml, the conda environment of every workflow rule, from the lock files.

Snakemake copies a rule's environment file elsewhere before conda reads it, so the file must be
self-contained: no `-r ../requirements.lock`, no `-e ..`. It lists the locked versions themselves;
the jobs get the lipspeech package from the workflow's own checkout (its shell prefix runs
`python -m lipspeech.cli` with the checkout on PYTHONPATH when the environment lacks the package).

    python scripts/conda_env.py           write it (make lock does)
    python scripts/conda_env.py --check   exit 1 if it is not what the lock files give
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ("requirements.lock", "requirements-nodeps.lock")
OUT = ROOT / "envs" / "lipspeech.yaml"

HEADER = """\
# The conda environment of every workflow rule (`snakemake --sdm conda`, e.g. on a cluster; or
# `conda env create -f envs/lipspeech.yaml`). Written by scripts/conda_env.py from requirements.lock
# and requirements-nodeps.lock (`make lock` rewrites both): do not edit by hand. The make targets
# use a plain .venv with the same lock files instead. The lipspeech package itself is not in it:
# jobs run the workflow checkout's own code (see the shell prefix in workflow/rules/common.smk).
# From PyPI, torch is a CUDA build on Linux (make installs the CPU build); Resemblyzer, installed
# by make without its requirements, brings webrtcvad here, which needs a C compiler.
name: lipspeech
channels:
  - conda-forge
  - nodefaults
dependencies:
  - python=3.11
  - ffmpeg
  - espeak-ng
  - pip
  - pip:
"""


def pins() -> list[str]:
    out = []
    for name in LOCKS:
        for line in (ROOT / name).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def render() -> str:
    return HEADER + "".join(f"      - {pin}\n" for pin in pins())


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is not what the lock files give: run python scripts/conda_env.py",
                  file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(pins())} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
