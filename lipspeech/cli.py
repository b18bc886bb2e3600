"""The ``lipspeech`` command: one subcommand per pipeline stage, plus speak, summary, doctor, store-info.

Each package owns its commands and their arguments (a ``register(sub)`` in its ``cli.py``,
built with :mod:`lipspeech.core.stagecli`); this module only collects them, in pipeline order,
and runs the one asked for, turning a failure into one readable line and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable

from lipspeech import __version__

#: the modules whose ``register(sub)`` adds subcommands, in the order ``--help`` lists them. They import
#: only the standard library at import time, so that `lipspeech doctor` runs (and says what to install)
#: when a dependency is missing.
COMMAND_MODULES = (
    "lipspeech.data.cli",
    "lipspeech.vision.cli",
    "lipspeech.features.cli",
    "lipspeech.training.cli",
    "lipspeech.vocoder.cli",
    "lipspeech.evaluation.cli",
    "lipspeech.commands.toolcli",
    "lipspeech.commands.doctor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lipspeech", description="Silent talking-face video to speech: pipeline stages.")
    parser.add_argument("--version", action="version", version=f"lipspeech {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to run the same command again (torchrun)
    func: Callable[[argparse.Namespace], int] = args.func
    if os.environ.get("LIPSPEECH_AUDIT_DIR"):  # the declared-inputs test (lipspeech/core/audit.py)
        from lipspeech.core.audit import install

        install(os.environ["LIPSPEECH_AUDIT_DIR"])
    if args.command == "doctor":  # needs nothing beyond the standard library to start
        return func(args)
    from lipspeech.core.config import ConfigError
    from lipspeech.core.media import MediaError
    from lipspeech.core.runtime import DeviceError
    from lipspeech.core.shards import StageError
    from lipspeech.core.store import StoreError, one_line

    try:
        return func(args)
    except ConfigError as exc:
        print(f"lipspeech {args.command}: {exc}", file=sys.stderr)
        return 2
    except (StageError, StoreError, MediaError, DeviceError) as exc:  # a stage that cannot run at all says why in one line
        print(f"lipspeech {args.command}: {one_line(exc, limit=1000)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a stage failing as a whole: one readable line, traceback only on request
        if os.environ.get("LIPSPEECH_DEBUG"):
            raise
        print(f"lipspeech {args.command}: error: {type(exc).__name__}: {one_line(exc, limit=1000)} "
              "(LIPSPEECH_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
