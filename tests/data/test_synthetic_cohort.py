"""The generated cohort: files readable by standard tools, ground truth true to the masks."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk  # noqa: N813 - the name every ITK user knows
from scipy import ndimage

from medseq.tracking.recist import (
    FollowUp,
    Response,
    assess,
    best_overall_response,
    is_responder,
)
from tests.tools import dcm2niix


def _truth(root: Path) -> dict[str, Any]:
    return json.loads((root / "ground_truth.json").read_text())


def _timepoints(root: Path, fmt: str | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [
        (p, tp) for p in _truth(root)["patients"] if fmt in (None, p["format"])
        for tp in p["timepoints"]
    ]


def _ras_affine_from_sitk(image: sitk.Image) -> np.ndarray:
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = lps_to_ras @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = lps_to_ras @ np.asarray(image.GetOrigin())
    return affine


def test_layout_tables_and_schema(tiny_cohort: Path) -> None:
    truth = _truth(tiny_cohort)
    assert truth["schema_version"] == 1
    assert truth["generator"]["seed"] == 7
    formats = [p["format"] for p in truth["patients"]]
    assert formats == ["dicom", "nifti", "dicom"]
    with open(tiny_cohort / "labels.csv") as handle:
        labels = {row["patient_id"]: int(row["label"]) for row in csv.DictReader(handle)}
    assert labels == {p["patient_id"]: p["label"] for p in truth["patients"]}
    with open(tiny_cohort / "manifest.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sum(len(p["timepoints"]) for p in truth["patients"])
    for row in rows:
        assert (tiny_cohort / row["image"]).exists()
        assert (tiny_cohort / row["mask"]).is_file()
    nifti = [r for r in rows if r["image"].endswith(".nii.gz")]
    for row in nifti:
        # medseq's NIfTI layout: patient/<ISO date>/image.nii.gz
        assert row["image"] == f"nifti/{row['patient_id']}/{row['date']}/image.nii.gz"


def test_dicom_series_read_by_simpleitk_match_ground_truth(tiny_cohort: Path) -> None:
    pairs = _timepoints(tiny_cohort, "dicom")
    assert pairs
    for patient, tp in pairs:
        folder = tiny_cohort / tp["image"]
        reader = sitk.ImageSeriesReader()
        files = reader.GetGDCMSeriesFileNames(str(folder))
        assert len(files) == tp["shape"][2]
        reader.SetFileNames(files)
        image = reader.Execute()
        assert list(image.GetSize()) == tp["shape"]
        np.testing.assert_allclose(_ras_affine_from_sitk(image), tp["affine"], atol=1e-3)
        hu = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
        mask = np.asarray(nib.load(tiny_cohort / tp["mask"]).dataobj)
        assert mask.shape == hu.shape
        mask_affine = nib.load(tiny_cohort / tp["mask"]).affine
        np.testing.assert_allclose(mask_affine, tp["affine"], atol=1e-3)
        assert hu.min() >= -1024
        assert hu.max() <= 3071
        # Lesions lie in soft tissue: their voxels are not air, and the body is.
        if mask.any():
            assert np.median(hu[mask > 0]) > -300, patient["patient_id"]


def test_dcm2niix_reads_every_series_with_matching_geometry(
    tiny_cohort: Path, tmp_path: Path
) -> None:
    exe = dcm2niix()
    for n, (_, tp) in enumerate(_timepoints(tiny_cohort, "dicom")):
        out = tmp_path / str(n)
        out.mkdir()
        subprocess.run(
            [exe, "-z", "n", "-f", "scan", "-o", str(out), str(tiny_cohort / tp["image"])],
            check=True, capture_output=True,
        )
        converted = nib.load(out / "scan.nii")
        data = np.asarray(converted.dataobj)
        assert data.shape == tuple(tp["shape"])
        gt = np.asarray(tp["affine"])
        # Whatever axis flips dcm2niix chose, the same voxel centres must land at the same place.
        corners = np.array([[0, 0, 0, 1], [tp["shape"][0] - 1, tp["shape"][1] - 1,
                                           tp["shape"][2] - 1, 1]], dtype=float)
        world = corners @ gt.T
        idx = world @ np.linalg.inv(converted.affine).T
        np.testing.assert_allclose(idx[:, :3], np.rint(idx[:, :3]), atol=1e-2)
        assert idx[:, :3].min() > -0.01
        assert np.all(idx[:, :3].max(axis=0) < np.asarray(tp["shape"]) - 0.99)


def test_dicom_headers_look_like_a_pacs_export(tiny_cohort: Path) -> None:
    truth = _truth(tiny_cohort)
    patient = next(p for p in truth["patients"] if p["format"] == "dicom")
    root = tiny_cohort / "dicom" / patient["patient_id"]
    files = [p for p in root.rglob("*") if p.is_file()]
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    studies = {h.StudyInstanceUID for h in headers}
    assert len(studies) == len(patient["timepoints"])
    assert {h.PatientID for h in headers} == {patient["patient_id"]}
    assert len({str(h.PatientName) for h in headers}) == 1
    assert all(h.PatientBirthDate and h.InstitutionName for h in headers)
    ct = [h for h in headers if "LOCALIZER" not in h.ImageType]
    assert {h.Modality for h in headers} == {"CT"}
    assert all(str(h.RescaleIntercept) == "-1024" and str(h.RescaleSlope) == "1" for h in ct)
    dates = sorted({h.StudyDate for h in ct})
    assert dates == sorted(tp["date"].replace("-", "") for tp in patient["timepoints"])
    for h in headers:
        pydicom.uid.UID(h.SOPInstanceUID).is_valid  # noqa: B018 - attribute access validates
        assert pydicom.uid.UID(h.SOPInstanceUID).is_valid
    assert len({h.SOPInstanceUID for h in headers}) == len(headers)
    # Series sit in their own folders; names are random, some without an extension.
    by_series: dict[str, set[Path]] = {}
    for path, h in zip(files, headers, strict=True):
        by_series.setdefault(h.SeriesInstanceUID, set()).add(path.parent)
    assert all(len(folders) == 1 for folders in by_series.values())
    localizers = _truth_localizer_count(headers)
    total_localizers = sum(
        _truth_localizer_count(
            [pydicom.dcmread(p, stop_before_pixels=True)
             for p in (tiny_cohort / "dicom" / q["patient_id"]).rglob("*") if p.is_file()]
        )
        for q in truth["patients"] if q["format"] == "dicom"
    )
    assert localizers <= len(patient["timepoints"])
    assert total_localizers >= 1


def _truth_localizer_count(headers: list[pydicom.Dataset]) -> int:
    return sum("LOCALIZER" in h.ImageType for h in headers)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    return ndimage.label(mask > 0, structure=np.ones((3, 3, 3), dtype=bool))


def _diameters(points_mm: np.ndarray) -> tuple[float, float]:
    """Brute-force longest in-plane distance and the perpendicular caliper width."""
    diff = points_mm[:, None, :] - points_mm[None, :, :]
    d2 = (diff**2).sum(-1)
    a, b = np.unravel_index(int(np.argmax(d2)), d2.shape)
    longest = float(np.sqrt(d2[a, b]))
    if longest == 0:
        return 0.0, 0.0
    u = (points_mm[b] - points_mm[a]) / longest
    proj = points_mm @ np.array([-u[1], u[0]])
    return longest, float(proj.max() - proj.min())


def test_ground_truth_measurements_match_the_written_masks(tiny_cohort: Path) -> None:
    checked = 0
    for _, tp in _timepoints(tiny_cohort):
        image = nib.load(tiny_cohort / tp["mask"])
        mask = np.asarray(image.dataobj)
        assert mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}
        affine = np.asarray(tp["affine"])
        spacing = np.asarray(tp["spacing"])
        labels, count = _components(mask)
        assert count == len(tp["lesions"])
        voxel_ml = float(np.prod(spacing)) / 1000.0
        half_pixel = 0.25 * (spacing[0] + spacing[1])
        for lesion in tp["lesions"]:
            centre = np.asarray(lesion["centroid_mm"])
            idx = np.rint(np.linalg.solve(affine[:3, :3], centre - affine[:3, 3])).astype(int)
            # The component nearest the GT centroid is the lesion.
            found = []
            for n in range(1, count + 1):
                vox = np.argwhere(labels == n)
                world = vox @ affine[:3, :3].T + affine[:3, 3]
                found.append((np.linalg.norm(world.mean(0) - centre), n, vox, world))
            dist, _, vox, world = min(found, key=lambda f: f[0])
            assert dist < 1e-3, (lesion["lesion_id"], idx)
            volume = vox.shape[0] * voxel_ml
            assert volume == pytest.approx(lesion["volume_ml"], rel=0.01)
            best = (-1.0, 0.0)
            for k in np.unique(vox[:, 2]):
                on = vox[:, 2] == k
                plane = vox[on][:, :2] * spacing[:2]
                longest, short = _diameters(plane)
                if longest > best[0]:
                    best = (longest, short)
            voxel = spacing[0]
            assert best[0] + half_pixel == pytest.approx(lesion["longest_diameter_mm"], abs=voxel)
            assert best[1] + half_pixel == pytest.approx(lesion["short_axis_mm"], abs=voxel)
            checked += 1
    assert checked >= 3


def test_lesions_follow_the_patient_through_repositioning(tiny_cohort: Path) -> None:
    """Baseline-frame centroids stay put (up to growth) although scan-frame ones move."""
    moved = 0
    for patient in _truth(tiny_cohort)["patients"]:
        base = {les["lesion_id"]: les for les in patient["timepoints"][0]["lesions"]}
        for tp in patient["timepoints"][1:]:
            motion = np.asarray(tp["motion"])
            assert np.allclose(motion[:3, :3] @ motion[:3, :3].T, np.eye(3), atol=1e-6)
            for les in tp["lesions"]:
                if les["lesion_id"] not in base:
                    assert les["new"]
                    continue
                b = base[les["lesion_id"]]
                drift = np.linalg.norm(np.subtract(les["centroid_baseline_mm"], b["centroid_mm"]))
                shift = np.linalg.norm(np.subtract(les["centroid_mm"], b["centroid_mm"]))
                assert drift < 6.0
                moved += shift > drift
    assert moved >= 1


def test_images_align_only_through_the_recorded_motion(tiny_cohort: Path) -> None:
    """Resampling a follow-up through ``motion`` onto the baseline grid matches the baseline."""
    patient = next(p for p in _truth(tiny_cohort)["patients"] if p["format"] == "nifti")
    t0, t1 = patient["timepoints"][:2]
    img0 = np.asarray(nib.load(tiny_cohort / t0["image"]).dataobj).astype(np.float32)
    img1 = np.asarray(nib.load(tiny_cohort / t1["image"]).dataobj).astype(np.float32)
    a0, a1 = np.asarray(t0["affine"]), np.asarray(t1["affine"])
    motion = np.asarray(t1["motion"])
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in img0.shape), indexing="ij"), -1)
    pts = grid.reshape(-1, 3) @ a0[:3, :3].T + a0[:3, 3]

    def resample(transform: np.ndarray) -> np.ndarray:
        world = pts @ transform[:3, :3].T + transform[:3, 3]
        idx = np.linalg.solve(a1[:3, :3], (world - a1[:3, 3]).T)
        return ndimage.map_coordinates(img1, idx, order=1, cval=-1000.0).reshape(img0.shape)

    # The chest, above the table: bowel gas, contrast timing and the (unmoving) table differ
    # between scans for reasons other than repositioning.
    nz = img0.shape[2]
    chest = (slice(8, -8), slice(30, -8), slice(nz // 2, -4))
    with_motion = np.abs(resample(motion) - img0)[chest].mean()
    without = np.abs(resample(np.eye(4)) - img0)[chest].mean()
    backwards = np.abs(resample(np.linalg.inv(motion)) - img0)[chest].mean()
    assert with_motion < without
    assert with_motion < 0.6 * backwards


def test_recist_and_labels_follow_from_the_ground_truth(tiny_cohort: Path) -> None:
    for patient in _truth(tiny_cohort)["patients"]:
        tps = patient["timepoints"]
        assert tps[0]["recist"]["response"] is None
        assert tps[0]["days"] == 0
        assert np.allclose(tps[0]["motion"], np.eye(4))
        assert [tp["days"] for tp in tps] == sorted(tp["days"] for tp in tps)
        targets = patient["targets"]
        base = {les["lesion_id"]: les["longest_diameter_mm"] for les in tps[0]["lesions"]}
        baseline_mm = {t: base[t] for t in targets}
        followups = []
        for tp in tps[1:]:
            now = {les["lesion_id"]: les for les in tp["lesions"]}
            followups.append(FollowUp(
                diameters_mm={t: now[t]["longest_diameter_mm"] if t in now else 0.0
                              for t in targets},
                new_lesions=any(les["new"] for les in tp["lesions"]),
                non_targets_present=any(
                    lid in base and lid not in baseline_mm for lid in now
                ),
            ))
        responses = [a.response for a in assess(baseline_mm, followups)]
        assert [tp["recist"]["response"] for tp in tps[1:]] == [r.value for r in responses]
        best = best_overall_response(responses)
        assert patient["best_overall_response"] == best.value
        assert patient["label"] == int(is_responder(Response(best)))


def test_same_seed_gives_identical_files_whatever_the_workers(tmp_path: Path) -> None:
    from medseq.data.synthetic import generate_cohort

    settings = {"patients": 2, "timepoints": (2, 2), "lesions": (1, 2), "seed": 11}
    one = generate_cohort(tmp_path / "one", workers=1, **settings)  # type: ignore[arg-type]
    two = generate_cohort(tmp_path / "two", workers=2, **settings)  # type: ignore[arg-type]
    other = generate_cohort(tmp_path / "other", workers=1, **{**settings, "seed": 12})  # type: ignore[arg-type]
    assert _digests(one) == _digests(two)
    assert _digests(one) != _digests(other)


def _digests(root: Path) -> dict[str, str]:
    import hashlib

    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_compressed_dicom_decodes_to_the_same_pixels(tmp_path: Path) -> None:
    from medseq.data.synthetic import generate_cohort

    settings = {"patients": 1, "timepoints": (2, 2), "lesions": (1, 1), "fmt": "dicom", "seed": 3}
    plain = generate_cohort(tmp_path / "plain", **settings)  # type: ignore[arg-type]
    packed = generate_cohort(tmp_path / "j2k", dicom_compression="jpeg2000", **settings)  # type: ignore[arg-type]
    for root, syntax in ((plain, "1.2.840.10008.1.2.1"), (packed, "1.2.840.10008.1.2.4.90")):
        tp = _truth(root)["patients"][0]["timepoints"][1]
        files = sorted((root / tp["image"]).iterdir())
        ds = pydicom.dcmread(files[0])
        assert ds.file_meta.TransferSyntaxUID == syntax
    reader = sitk.ImageSeriesReader()
    arrays = []
    for root in (plain, packed):
        tp = _truth(root)["patients"][0]["timepoints"][1]
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(root / tp["image"])))
        arrays.append(sitk.GetArrayFromImage(reader.Execute()))
    np.testing.assert_array_equal(arrays[0], arrays[1])


def test_invalid_settings_are_rejected_with_the_argument_named(tmp_path: Path) -> None:
    from medseq.data.synthetic import generate_cohort

    with pytest.raises(ValueError, match="timepoints"):
        generate_cohort(tmp_path, timepoints=(1, 3))
    with pytest.raises(ValueError, match="fmt"):
        generate_cohort(tmp_path, fmt="png")
    with pytest.raises(ValueError, match="size"):
        generate_cohort(tmp_path, size="huge")


def test_simulated_ground_truth_equals_the_written_one(tiny_cohort: Path) -> None:
    from medseq.data.synthetic import simulate_cohort

    written = _truth(tiny_cohort)
    gen = written["generator"]
    simulated = simulate_cohort(
        patients=gen["patients"], timepoints=tuple(gen["timepoints"]), size=gen["size"],
        seed=gen["seed"], lesions=tuple(gen["lesions"]), fmt=gen["format"],
    )
    for record, sim in zip(written["patients"], simulated, strict=True):
        for tp in record["timepoints"]:
            del tp["image"], tp["mask"]
        assert record == sim


def test_repositioning_can_be_disabled_or_scaled() -> None:
    from medseq.data.synthetic import simulate_cohort

    def largest_shift(limit: float | None) -> float:
        records = simulate_cohort(patients=4, timepoints=(3, 3), size="small", seed=5,
                                  repositioning_mm=limit)
        return max(
            float(np.abs(np.asarray(tp["motion"]) - np.eye(4)).max())
            for r in records for tp in r["timepoints"]
        )

    assert largest_shift(0.0) == 0.0
    assert 0.0 < largest_shift(1.0) < largest_shift(None)
