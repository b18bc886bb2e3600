"""benchmarks/speaker_confusion.py: enrolments are unit means per speaker, and each output is given to the
enrolled speaker it is nearest, with its margin over the nearest other one."""

import numpy as np
from benchscripts import script

conf = script("speaker_confusion")


class Identity:
    """A scorer whose embedding of an 'audio' is that vector made unit length."""

    def embed(self, x):
        return np.asarray(x, np.float64) / np.linalg.norm(x)


def test_enrolment_is_each_speakers_unit_mean():
    audio = {"a1": [1.0, 0.0], "a2": [0.0, 1.0], "b1": [-1.0, 0.0]}
    names, enrolled = conf.enrol(Identity(), audio, {"a1": "sA", "a2": "sA", "b1": "sB"})
    assert names == ["sA", "sB"]
    np.testing.assert_allclose(enrolled, [[2 ** -0.5, 2 ** -0.5], [-1.0, 0.0]])


def test_each_output_goes_to_its_nearest_speaker_with_its_margin():
    enrolled = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    emb = np.array([[0.8, 0.6], [0.6, 0.8], [-0.6, 0.8]])
    given, margin = conf.identify(emb, np.array([0, 0, 2]), enrolled)
    assert given.tolist() == [0, 1, 1]
    np.testing.assert_allclose(margin, [0.8 - 0.6, 0.6 - 0.8, 0.6 - 0.8])
