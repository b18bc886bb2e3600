"""Derive ``lipspeech.vision.meshmap.MESH_TO_IBUG68``: which of the face mesh's 468 vertices stands
for each iBUG-68 point.

On the two real photos that ship offline (skimage's astronaut, matplotlib's Grace Hopper), their
mirror images, and each of those turned by -6, 0 and +6 degrees and at two sizes: dlib's 68 points
and the mesh's 468, both fitted to the same detected face; distances in units of the distance
between the outer eye corners, averaged over the images; each iBUG point takes its nearest
vertex. Then each point is refined to a weighted mean of its ``K`` nearest vertices (non-negative weights summing
to 1, least squares over the views), which takes out most of the offset a single vertex leaves (the
mesh's lip line and dlib's are drawn a little differently). Prints the tables and, per point group,
the mean residual (mapped point to dlib's point, in eye-corner units).

    .venv/bin/python benchmarks/mesh_to_ibug68.py
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.optimize import nnls

from lipspeech.data.synth.face import load_face_image
from lipspeech.vision.backends import DlibBackend
from lipspeech.vision.facemesh import BlazeFace, FaceMesh
from lipspeech.vision.roi import RoiConfig

K = 4
GROUPS = {"jaw": slice(0, 17), "brows": slice(17, 27), "nose": slice(27, 36), "eyes": slice(36, 48),
          "outer lips": slice(48, 60), "inner lips": slice(60, 68)}


def views():
    for name in ("astronaut", "grace_hopper"):
        img = load_face_image(name)
        for mirror in (False, True):
            im = img[:, ::-1].copy() if mirror else img
            for deg in (-6, 0, 6):
                for scale in (1.0, 0.7):
                    h, w = im.shape[:2]
                    M = cv2.getRotationMatrix2D((w / 2, h / 2), deg, scale)
                    yield f"{name}{' mirrored' if mirror else ''} {deg:+d} deg x{scale}", cv2.warpAffine(
                        im, M, (w, h), borderMode=cv2.BORDER_REPLICATE)


def main() -> None:
    roi = RoiConfig.default()
    dlib, det, mesh = DlibBackend(roi.detect_max_side, roi.detect_upsample), BlazeFace(), FaceMesh()
    total, n = np.zeros((68, 468)), 0
    pairs = []
    for label, rgb in views():
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        boxes, found = dlib.detect(gray), det.detect(rgb)
        if not boxes or not found:
            print(f"{label}: no face ({'dlib' if not boxes else 'blazeface'})")
            continue
        ib = dlib.fit(gray, boxes[0])
        m = mesh.fit_box(rgb, found[0][0]).points
        unit = np.linalg.norm(ib[45] - ib[36])
        total += np.linalg.norm(ib[:, None] - m[None], axis=2) / unit
        pairs.append((ib / unit, m / unit))
        n += 1
    mean = total / n
    table = mean.argsort(1)[:, :K]
    weights = np.zeros((68, K))
    resid = np.zeros(68)
    for i in range(68):
        # min over w >= 0, sum w = 1 of sum over views |sum_k w_k m[table[i, k]] - ib[i]|^2: a point
        # inside its vertices' hull (non-negative least squares, the sum held by a heavy extra row)
        A = np.concatenate([m[table[i]].T for _, m in pairs] + [100.0 * np.ones((1, K))])
        b = np.concatenate([ib[i] for ib, _ in pairs] + [[100.0]])
        weights[i] = nnls(A, b)[0]
        resid[i] = np.mean([np.linalg.norm(weights[i] @ m[table[i]] - ib[i]) for ib, m in pairs])
    print(f"{n} views")
    for g, sl in GROUPS.items():
        print(f"{g:>10}: residual {mean[np.arange(68), table[:, 0]][sl].mean():.3f} (nearest vertex), "
              f"{resid[sl].mean():.3f} (weighted) eye-corner units")
    print("MESH_TO_IBUG68 = np.array([\n" + "".join(f"    [{', '.join(str(v) for v in r)}],\n" for r in table)
          + "], dtype=np.int64)")
    print("MESH_TO_IBUG68_WEIGHTS = np.array([\n" + "".join(f"    [{', '.join(f'{v:.4f}' for v in r)}],\n"
                                                       for r in weights) + "])")


if __name__ == "__main__":
    main()
