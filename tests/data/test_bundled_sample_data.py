"""The committed ``sample_data/`` is exactly what the generator writes today."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from medseq.data.synthetic import generate_cohort
from tests.tools import dcm2niix

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
BUDGET_BYTES = 15_000_000


def _generator() -> dict[str, Any]:
    return json.loads((SAMPLE / "ground_truth.json").read_text())["generator"]


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): _digest(p, dicom=p.relative_to(root).parts[0] == "dicom")
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "README.md"
    }


def _digest(path: Path, *, dicom: bool) -> str:
    """Bytes for most files; for ``.gz`` the uncompressed bytes; for DICOM the decoded pixels
    and every other element.

    JPEG 2000 code streams differ between OpenJPEG releases while the lossless pixels do not,
    and deflate streams differ between zlib builds (zlib, zlib-ng) while the NIfTI inside does
    not, so comparing content keeps the test about the generator, not the codec build. The
    generator's arithmetic is CPU-independent (``tests/data/test_portable.py``), so the content
    must match to the last bit on any machine.
    """
    if not dicom:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        return hashlib.sha256(data).hexdigest()
    import pydicom

    ds = pydicom.dcmread(path)
    digest = hashlib.sha256(ds.pixel_array.tobytes())
    for element in ds:
        if element.keyword != "PixelData":
            digest.update(f"{element.tag}={element.value!r};".encode())
    return digest.hexdigest()


@pytest.mark.slow
def test_bundled_sample_data_equals_a_fresh_generation(tmp_path: Path) -> None:
    gen = _generator()
    fresh = generate_cohort(
        tmp_path / "fresh",
        patients=gen["patients"],
        timepoints=tuple(gen["timepoints"]),
        fmt=gen["format"],
        size=gen["size"],
        seed=gen["seed"],
        repositioning_mm=gen["repositioning_mm"],
        lesions=tuple(gen["lesions"]),
        dicom_compression=gen["dicom_compression"],
        workers=2,
    )
    committed, regenerated = _digests(SAMPLE), _digests(fresh)
    assert sorted(committed) == sorted(regenerated), "file lists differ: regenerate sample_data"
    changed = [name for name in committed if committed[name] != regenerated[name]]
    assert not changed, f"{len(changed)} files differ (e.g. {changed[:3]}): regenerate sample_data"


def test_readme_gives_the_exact_regenerating_command() -> None:
    gen = _generator()
    lo, hi = gen["timepoints"]
    lesions_lo, lesions_hi = gen["lesions"]
    command = (
        f"medseq sample-data sample_data --force --patients {gen['patients']} "
        f"--timepoints {lo}-{hi} --format {gen['format']} --size {gen['size']} "
        f"--seed {gen['seed']} --lesions {lesions_lo}-{lesions_hi} "
        f"--dicom-compression {gen['dicom_compression']}"
    )
    assert gen["repositioning_mm"] is None
    assert command in (SAMPLE / "README.md").read_text()


def test_sample_data_is_small_and_holds_both_formats() -> None:
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total <= BUDGET_BYTES
    truth = json.loads((SAMPLE / "ground_truth.json").read_text())
    formats = {p["format"] for p in truth["patients"]}
    assert formats == {"dicom", "nifti"}
    labels = [p["label"] for p in truth["patients"]]
    assert 0 < sum(labels) < len(labels)


@pytest.mark.slow
def test_every_bundled_dicom_series_decodes_in_dcm2niix_and_simpleitk(tmp_path: Path) -> None:
    """JPEG 2000 pixel data end to end: both readers agree with each other and the geometry."""
    import subprocess

    import nibabel as nib
    import numpy as np
    import SimpleITK as sitk  # noqa: N813 - the name every ITK user knows

    exe = dcm2niix()
    truth = json.loads((SAMPLE / "ground_truth.json").read_text())
    series = [tp for p in truth["patients"] if p["format"] == "dicom" for tp in p["timepoints"]]
    assert series
    for n, tp in enumerate(series):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(SAMPLE / tp["image"])))
        image = reader.Execute()
        itk = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
        direction = np.asarray(image.GetDirection()).reshape(3, 3)
        affine = np.eye(4)
        affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ direction @ np.diag(image.GetSpacing())
        affine[:3, 3] = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(image.GetOrigin())
        np.testing.assert_allclose(affine, tp["affine"], atol=1e-3)
        out = tmp_path / str(n)
        out.mkdir()
        subprocess.run([exe, "-z", "n", "-f", "scan", "-o", str(out), str(SAMPLE / tp["image"])],
                       check=True, capture_output=True)
        converted = nib.load(out / "scan.nii")
        # Map dcm2niix voxels onto the ground-truth grid through the two affines.
        to_theirs = np.linalg.inv(converted.affine) @ np.asarray(tp["affine"])
        assert np.allclose(np.abs(to_theirs[:3, :3]), np.eye(3), atol=1e-3)
        theirs = np.asarray(converted.dataobj)
        flips = tuple(a for a in range(3) if to_theirs[a, a] < 0)
        np.testing.assert_array_equal(np.flip(theirs, flips) if flips else theirs, itk)
