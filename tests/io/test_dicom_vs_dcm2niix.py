"""load_series puts every voxel where dcm2niix does, with the same value (files on disk)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medseq.io.dicom import load_series
from medseq.io.volume import Volume
from tests.dicom_factory import lps_affine_ras, write_series
from tests.tools import dcm2niix

DCM2NIIX = dcm2niix()


def run_dcm2niix(folder: Path, out: Path) -> nib.Nifti1Image:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(DCM2NIIX), "-z", "n", "-b", "n", "-f", "out", "-o", str(out),
                    str(folder)], check=True, capture_output=True, timeout=60)
    files = sorted(out.glob("*.nii"))
    assert len(files) == 1, [f.name for f in files]
    image = nib.load(files[0])
    assert isinstance(image, nib.Nifti1Image)
    return image


def assert_same_voxels(volume: Volume, image: nib.Nifti1Image, *, tol_mm: float = 1e-3) -> None:
    """Every voxel of ``volume`` has a voxel of ``image`` at the same place with the same value.

    The map from our indices to dcm2niix's must be a signed permutation plus an integer shift;
    checking the 8 corners of the grid checks every voxel because both maps are affine.
    """
    ours = volume.affine
    theirs = image.affine
    to_theirs = np.linalg.inv(theirs) @ ours
    perm = np.rint(to_theirs[:3, :3])
    shift = np.rint(to_theirs[:3, 3])
    assert sorted(np.abs(perm).sum(axis=0)) == [1, 1, 1], to_theirs.round(4)
    corners = np.array([[i, j, k] for i in (0, volume.shape[0] - 1)
                        for j in (0, volume.shape[1] - 1) for k in (0, volume.shape[2] - 1)])
    their_idx = corners @ perm.T + shift
    ours_mm = corners @ ours[:3, :3].T + ours[:3, 3]
    theirs_mm = their_idx @ theirs[:3, :3].T + theirs[:3, 3]
    np.testing.assert_allclose(ours_mm, theirs_mm, atol=tol_mm, rtol=0)
    assert np.all(their_idx >= 0)
    assert np.all(their_idx < np.asarray(image.shape[:3]))
    # Bring dcm2niix's array into our voxel order: out[i,j,k] = theirs[perm @ (i,j,k) + shift].
    data = np.asarray(image.dataobj)
    axes = [int(np.argmax(np.abs(perm[:, a]))) for a in range(3)]
    reordered = np.transpose(data, axes)
    for a in range(3):
        if perm[axes[a], a] < 0:
            reordered = np.flip(reordered, axis=a)
    assert reordered.shape == volume.shape
    np.testing.assert_array_equal(volume.array.astype(np.float64), reordered.astype(np.float64))


ROTATION = (0.8, 0.6, 0.0, -0.6, 0.8, 0.0)


def _oblique() -> tuple[float, ...]:
    row = np.array([0.9, 0.3, -0.1])
    row /= np.linalg.norm(row)
    col = np.cross([0.2, 0.1, 1.0], row)
    col /= np.linalg.norm(col)
    return (*row, *col)


CASES: dict[str, dict[str, Any]] = {
    "axial": {"orientation": (1, 0, 0, 0, 1, 0)},
    "axial_rotated": {"orientation": ROTATION},
    "coronal": {"orientation": (1, 0, 0, 0, 0, -1), "series_description": "COR"},
    "sagittal_ish": {"orientation": (0, 0.996194698, -0.0871557427,
                                     0, -0.0871557427, -0.996194698)},
    "oblique": {"orientation": _oblique()},
    "anisotropic": {"spacing": (0.45, 0.9, 4.0), "shape": (20, 11, 5)},
    "unsigned_mr": {"modality": "MR", "signed": False, "rescale_slope": None,
                    "rescale_intercept": None},
    "ct_unsigned_intercept": {"signed": False, "bits_stored": 12},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_dcm2niix(tmp_path: Path, case: str) -> None:
    kwargs = {"shape": (14, 10, 6), "spacing": (0.7, 0.8, 2.5), "shuffle": True,
              "naming": "random", "seed": 3, **CASES[case]}
    write_series(tmp_path / "in", **kwargs)
    volume = load_series(sorted((tmp_path / "in").iterdir()))
    assert_same_voxels(volume, run_dcm2niix(tmp_path / "in", tmp_path / "out"))


def test_affine_matches_header_positions(tmp_path: Path) -> None:
    orientation = _oblique()
    write_series(tmp_path / "in", orientation=orientation, spacing=(0.6, 0.7, 1.5),
                 origin=(12.5, -30.25, 55.0), shuffle=True, naming="none", seed=5)
    volume = load_series(list((tmp_path / "in").iterdir()))
    expected = lps_affine_ras(spacing=(0.6, 0.7, 1.5), orientation=orientation,
                              origin=(12.5, -30.25, 55.0))
    np.testing.assert_allclose(volume.affine, expected, atol=1e-6)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian],
                         ids=["explicit", "implicit"])
def test_no_preamble_no_extension_matches(tmp_path: Path, syntax: str) -> None:
    """Bare datasets (no preamble, no DICM, no file meta) load like ordinary files."""
    common = {"shape": (12, 10, 5), "orientation": ROTATION, "seed": 9, "shuffle": True,
              "transfer_syntax": syntax}
    write_series(tmp_path / "bare", preamble=False, naming="none", **common)  # type: ignore[arg-type]
    write_series(tmp_path / "normal", **common)  # type: ignore[arg-type]
    bare = load_series(list((tmp_path / "bare").iterdir()))
    normal = load_series(list((tmp_path / "normal").iterdir()))
    np.testing.assert_array_equal(bare.array, normal.array)
    np.testing.assert_allclose(bare.affine, normal.affine, atol=1e-9)
    assert_same_voxels(bare, run_dcm2niix(tmp_path / "bare", tmp_path / "out"))
