"""MediaPipe's face detector and mesh as lipspeech runs them (lipspeech/vision/facemesh.py): the anchors
and box decoding against MediaPipe's own answer, the mesh's face score, the iBUG-68 mapping."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from lipspeech.vision.backends import make_backend
from lipspeech.vision.facemesh import BlazeFace, FaceMesh, MediaPipeBackend, anchors
from lipspeech.vision.meshmap import MESH_TO_IBUG68, MESH_TO_IBUG68_WEIGHTS
from lipspeech.vision.roi import RoiConfig

ROI = RoiConfig.default()


@pytest.fixture(scope="module")
def mesh():
    return FaceMesh()


def test_anchors_match_the_models_outputs():
    # short range: 16x16 cells x 2 + 8x8 x 6 = 896; full range: 48x48 x 1 = 2304 (the models' output rows)
    assert len(anchors(128, [8, 16], [2, 6])) == 896 and len(anchors(192, [4], [1])) == 2304
    a = anchors(128, [8, 16], [2, 6])
    assert np.allclose(a[0], [0.5 / 16, 0.5 / 16]) and np.allclose(a[1], a[0]) and np.allclose(a[512], [0.5 / 8, 0.5 / 8])
    BlazeFace(full_range=True), BlazeFace(full_range=False)  # each asserts its anchors = its output rows


def test_short_range_box_is_mediapipes():
    """MediaPipe 0.10.21's own FaceDetection(model_selection=0) on skimage's astronaut gave the box
    xmin 0.3468, ymin 0.1619, width 0.1862, height 0.1862 (relative to 512 px); ours, without the
    weighted blending of overlapping boxes that its graph adds, is within 3 px."""
    (box, score), = BlazeFace(full_range=False).detect(skimage.data.astronaut())
    theirs = np.array([0.3468, 0.1619, 0.3468 + 0.1862, 0.1619 + 0.1862]) * 512
    assert np.abs(np.array(box) - theirs).max() < 3.0 and score > 0.9


def test_mesh_scores_a_face_high_and_a_black_frame_low(mesh):
    img = skimage.data.astronaut()
    box = BlazeFace().detect(img)[0][0]
    face = mesh.fit_box(img, box)
    assert face.score > 0.99 and face.points.shape == (468, 2) and abs(face.roll) < 8
    assert mesh.fit_box(np.zeros_like(img), box).score < 0.01
    # turned 30 degrees in the image plane: found, and its roll measured
    M = cv2.getRotationMatrix2D((256, 256), -30, 1.0)  # clockwise on screen
    turned = cv2.warpAffine(img, M, (512, 512))
    fit = mesh.fit_box(turned, BlazeFace().detect(turned)[0][0])
    assert fit.score > 0.99 and fit.roll == pytest.approx(30 + face.roll, abs=3)


def test_ibug68_mapping_is_a_convex_combination_near_dlibs_points():
    assert MESH_TO_IBUG68.shape == MESH_TO_IBUG68_WEIGHTS.shape == (68, 4)
    assert (MESH_TO_IBUG68_WEIGHTS >= 0).all() and np.allclose(MESH_TO_IBUG68_WEIGHTS.sum(1), 1, atol=1e-3)
    img = skimage.data.astronaut()
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    dlib = make_backend("dlib", ROI.detect_max_side, ROI.detect_upsample)
    D = dlib.fit(gray, dlib.detect(gray)[0])
    mp = MediaPipeBackend(ROI.detect_max_side, ROI.detect_upsample, refine=False)
    L = mp.fit(gray, mp.detect(gray)[0])
    eye = np.linalg.norm(D[45] - D[36])
    # measured 0.02-0.04 of the eye-corner distance per group on the photos the table was derived from
    assert np.linalg.norm(L[48:68].mean(0) - D[48:68].mean(0)) / eye < 0.05
    assert np.linalg.norm(L - D, axis=1).mean() / eye < 0.06


def test_dlib_points_only_where_they_agree_with_the_mesh():
    """A near-frontal face gets dlib's points in the mesh's box; the cameraman, turned nearly to profile,
    the mesh's own (dlib's frontal shape model squeezes such a face into its cheek)."""
    backend = MediaPipeBackend(ROI.detect_max_side, ROI.detect_upsample)
    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    backend.fit(gray, backend.detect(gray)[0])
    assert backend.disagreement < 0.04
    cam = skimage.data.camera()
    boxes = backend.detect(cam)
    dlib = make_backend("dlib", ROI.detect_max_side, ROI.detect_upsample)
    assert boxes and not dlib.detect(cam)  # dlib's frontal detector misses this face
    L = backend.fit(cam, boxes[0])
    assert backend.disagreement > 0.1
    unrefined = MediaPipeBackend(ROI.detect_max_side, ROI.detect_upsample, refine=False)
    assert np.allclose(L, unrefined.fit(cam, boxes[0]))
