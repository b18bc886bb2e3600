"""Scoring a system's utterances in worker processes (the evaluate stage's ``threads``).

Every utterance is scored on its own: the recogniser decodes it as one whole utterance, DNSMOS
and the speaker encoder see it alone, the intrusive metrics compare it with its own ground
truth. So its row does not depend on the process that scored it or on the order, and N
processes give the same table as one (to float rounding: once, in CI under load, an ESTOI differed
in its last bit), about N times sooner. The workers are forked from the
stage's process once its models are loaded (nothing is loaded twice, no audio is pickled),
each with one torch and one onnxruntime thread; each utterance's result comes back with the
seconds its metric families took and the failures they counted, summed into the stage's
scorers as if one process had scored them all.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from collections import Counter
from typing import Any, Sequence

from tqdm.auto import tqdm

#: what the forked workers read: the scorers and the utterances' score() arguments
_FORKED: dict[str, Any] = {}


def _worker_init() -> None:
    if "torch" in sys.modules:  # resemblyzer's encoder: one thread a process (no OpenMP team after fork)
        sys.modules["torch"].set_num_threads(1)


def _score_one(i: int) -> tuple[dict[str, Any], tuple[dict, dict, Counter]]:
    """One utterance's values and what its scoring added to the (worker's own copy of the) clocks."""
    scorers = _FORKED["scorers"]
    scorers.seconds = dict.fromkeys(scorers.seconds, 0.0)
    scorers.signal.seconds.clear()
    scorers.signal.failures.clear()
    values = scorers.score(*_FORKED["items"][i])
    return values, (scorers.seconds, dict(scorers.signal.seconds), scorers.signal.failures)


def score_all(scorers, items: Sequence[tuple], workers: int, progress: bool, desc: str) -> list[dict[str, Any]]:
    """``scorers.score(*item)`` of every item, in order, in ``workers`` forked processes (in this
    process when ``workers`` is 1, when there is one item, or where fork is not available)."""
    workers = min(max(1, int(workers)), len(items))
    if workers > 1 and "fork" in mp.get_all_start_methods():
        _FORKED.update(scorers=scorers, items=items)
        try:
            # the pool before the bar: no tqdm thread at the fork
            with mp.get_context("fork").Pool(workers, initializer=_worker_init) as pool:
                out = []
                with tqdm(total=len(items), desc=desc, unit="utt", disable=not progress) as bar:
                    for values, (seconds, signal_seconds, failures) in pool.imap(_score_one, range(len(items))):
                        for clock, added in ((scorers.seconds, seconds), (scorers.signal.seconds, signal_seconds)):
                            for k, v in added.items():
                                clock[k] += v
                        scorers.signal.failures.update(failures)
                        out.append(values)
                        bar.update(1)
                return out
        finally:
            _FORKED.clear()
    return [scorers.score(*item) for item in tqdm(items, desc=desc, unit="utt", disable=not progress)]
