"""benchmarks/voice_halves.py's split: each clip (or its speech span) cut into equal runs of samples that
cover it once, each part embedded alone, with halves cut where the script always cut them."""

from pathlib import Path

import numpy as np
from benchscripts import script

halves = script("voice_halves")


class PartScorer:
    """Embeds a piece of audio as (its length, its first sample); a similarity is the piece's length times
    1000 plus its first sample, so each figure says which run of samples was embedded."""

    def embed(self, x: np.ndarray) -> np.ndarray:
        return np.array([x.size, x[0]], np.float64)

    def similarity(self, e: np.ndarray, ref: np.ndarray) -> float:
        return float(e[0] * 1000 + e[1])


def split(audio: dict, spans: dict, n_parts: int) -> dict:
    utts = sorted(audio)
    return halves.similarities(PartScorer(), Path("unused"), "sys", audio, {u: None for u in utts}, utts, spans,
                               n_parts)


def test_part_names_keep_the_halves_and_number_other_splits():
    assert halves.part_names(2) == ["first half", "second half", "whole"]
    assert halves.part_names(3) == ["part 1/3", "part 2/3", "part 3/3", "whole"]
    assert halves.part_names(1) == ["part 1/1", "whole"]


def test_parts_are_equal_runs_that_cover_the_span_once():
    audio = {"a": np.arange(100, dtype=np.float32), "b": np.arange(7, dtype=np.float32)}
    spans = {"a": slice(10, 93), "b": slice(None)}
    sims = split(audio, spans, 4)
    # a: 83 samples from 10 -> runs of 20, 21, 21, 21 starting at 10, 30, 51, 72
    assert [sims[p][0] for p in halves.part_names(4)] == [20010, 21030, 21051, 21072, 83010]
    # b: 7 samples -> 1, 2, 2, 2 starting at 0, 1, 3, 5
    assert [sims[p][1] for p in halves.part_names(4)] == [1000, 2001, 2003, 2005, 7000]


def test_halves_split_at_the_middle_sample_as_before():
    audio = {"a": np.arange(9, dtype=np.float32)}
    sims = split(audio, {"a": slice(None)}, 2)
    assert sims["first half"][0] == 4000 and sims["second half"][0] == 5004 and sims["whole"][0] == 9000


def test_a_system_with_a_slash_is_a_folder_under_the_results():
    assert halves.system_folder(Path("r"), "ltbs") == Path("r/eval/ltbs")
    assert halves.system_folder(Path("r"), "hybrids/shift10_ltbs") == Path("r/hybrids/shift10_ltbs")
