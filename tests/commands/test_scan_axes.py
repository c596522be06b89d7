"""The scan table's orientation codes are nibabel's, without importing nibabel."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np

from medseq.commands.scan import _axes


def test_axes_codes_match_nibabel_on_flips_permutations_obliques_and_shears() -> None:
    rng = np.random.default_rng(0)
    affines = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((-1.0, 1.0), repeat=3):
            affine = np.eye(4)
            affine[:3, :3] = np.eye(3)[:, perm] * signs * [0.7, 0.8, 2.5]
            affines.append(affine)
    for _ in range(40):  # oblique (near 45 degrees too), scaled, sheared
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        affine = np.eye(4)
        affine[:3, :3] = q @ np.diag(rng.uniform(0.3, 3.0, 3)) @ (
            np.eye(3) + np.triu(rng.normal(scale=0.2, size=(3, 3)), 1))
        affine[:3, 3] = rng.normal(scale=100, size=3)
        affines.append(affine)
    for affine in affines:
        as_tuples = tuple(tuple(float(v) for v in row) for row in affine)
        assert _axes(as_tuples) == "".join(nib.aff2axcodes(affine)), affine
    assert _axes(None) == "-"
