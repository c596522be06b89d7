"""``medseq export-dicom``: conformant SR and SEG per timepoint, stable tracking, round trip."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from medseq.cli import app
from medseq.dicom_objects.seg import read_seg
from medseq.tracking.lesions import find_lesions
from tests.dicom_objects.export_case import ExportCase, build
from tests.dicom_objects.factory import dciodvfy_errors

runner = CliRunner()


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> ExportCase:
    return build(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def tracking(case: ExportCase) -> Path:
    out = case.cache.parent / "tracking"
    result = runner.invoke(app, ["track", str(case.cache), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    # Given a cache, track cannot know the source images: export-dicom needs --input.
    assert json.loads((out / "tracks.json").read_text())["settings"]["input"] is None
    return out


@pytest.fixture(scope="module")
def exported(case: ExportCase, tracking: Path) -> tuple[Path, dict]:
    out = case.cache.parent / "dicom"
    result = runner.invoke(app, ["export-dicom", str(tracking), "-o", str(out), "--input",
                                 str(case.input_csv), "--json"])
    assert result.exit_code == 0, result.stderr
    assert "pseudonymised" in result.stderr
    return out, json.loads(result.stdout)


def _rows(tracking: Path) -> list[dict[str, str]]:
    with (tracking / "lesions.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_writes_a_seg_and_an_sr_per_timepoint_and_skips_nifti_patients(
        case: ExportCase, exported: tuple[Path, dict]) -> None:
    out, doc = exported
    folder = out / case.patient_key
    assert sorted(p.name for p in folder.iterdir()) == [
        "t00_SEG.dcm", "t00_SR.dcm", "t01_SEG.dcm", "t01_SR.dcm"]
    assert doc["exported"] == [case.patient_key]
    assert doc["identification"] == "pseudonymised"
    assert [s["reason"] for s in doc["skipped"]] == ["images did not come from DICOM"]
    assert not list(out.rglob(".*tmp*"))


def test_every_object_passes_dciodvfy(case: ExportCase, exported: tuple[Path, dict]) -> None:
    out, _ = exported
    for path in sorted((out / case.patient_key).iterdir()):
        errors, _warnings = dciodvfy_errors(path)
        assert errors == [], (path.name, errors)


def _groups(path: Path) -> dict[str, dict[str, Any]]:
    """Measurement groups read back with highdicom: identifier -> uid, values, evaluations."""
    import highdicom as hd

    report = hd.sr.srread(path).content
    groups: dict[str, dict[str, Any]] = {}
    for group in [*report.get_volumetric_roi_measurement_groups(),
                  *report.get_image_measurement_groups()]:
        segment = getattr(group, "referenced_segment", None)
        groups[str(group.tracking_identifier)] = {
            "uid": str(group.tracking_uid),
            "values": {m.name.meaning: float(m.value) for m in group.get_measurements()},
            "evaluations": {e.name.meaning: e.value.value
                            for e in group.get_qualitative_evaluations()},
            "segment": segment.referenced_segment_numbers[0] if segment is not None else None}
    return groups


def test_sr_reads_back_with_the_tracked_values_and_stable_tracking_uids(
        case: ExportCase, tracking: Path, exported: tuple[Path, dict]) -> None:
    out, _ = exported
    folder = out / case.patient_key
    reports = [_groups(folder / f"t0{n}_SR.dcm") for n in (0, 1)]
    rows = {(r["timepoint"], r["track_id"]): r for r in _rows(tracking)
            if r["patient_id"] == case.patient_key}
    assert set(reports[0]) == {"L1", "L2", "RECIST 1.1"}
    assert set(reports[1]) == {"L1", "L2", "L3", "RECIST 1.1"}
    for track in ("L1", "L2", "RECIST 1.1"):
        assert reports[0][track]["uid"] == reports[1][track]["uid"]
    assert len({g["uid"] for g in reports[1].values()}) == 4
    for (tp, track), row in rows.items():
        values = reports[int(tp)][track]["values"]
        assert values["Long axis"] == pytest.approx(float(row["longest_diameter_mm"]), abs=1e-3)
        assert values["Short axis"] == pytest.approx(float(row["short_axis_mm"]), abs=1e-3)
        assert values["Volume"] == pytest.approx(float(row["volume_ml"]), abs=1e-3)
        assert reports[int(tp)][track]["evaluations"]["Lesion tracking status"] == row["status"]
    assert reports[1]["L2"]["segment"] is None  # vanished: no voxels, 0 mm
    assert reports[1]["L2"]["values"]["Long axis"] == 0.0
    response = reports[1]["RECIST 1.1"]["evaluations"]
    assert response["Response Evaluation Method"] == "126081"  # RECIST 1.1
    with (tracking / "response.csv").open() as handle:
        category = next(r["response"] for r in csv.DictReader(handle)
                    if r["patient_id"] == case.patient_key and r["timepoint"] == "1")
    assert response["Current Response"] == category == "PD"  # a new lesion


def test_seg_tracking_matches_the_sr_and_round_trips_to_the_same_measurements(
        case: ExportCase, tracking: Path, exported: tuple[Path, dict]) -> None:
    import highdicom as hd

    out, _ = exported
    folder = out / case.patient_key
    for tp in (0, 1):
        groups = _groups(folder / f"t0{tp}_SR.dcm")
        seg = hd.seg.segread(folder / f"t0{tp}_SEG.dcm")
        segments = {int(s.SegmentNumber): (str(s.TrackingID), str(s.TrackingUID))
                    for s in seg.SegmentSequence}
        for track, group in groups.items():
            if group["segment"] is not None:
                assert segments[group["segment"]] == (track, group["uid"])
        grid = case.grids[tp]
        mask = read_seg(folder / f"t0{tp}_SEG.dcm", grid)
        assert np.array_equal(mask.array > 0, case.masks[tp] > 0)
        assert [lab.tracking_id for lab in mask.labels] == [segments[n][0]
                                                            for n in sorted(segments)]
        found = find_lesions(mask.array, grid.affine)
        rows = {r["track_id"]: r for r in _rows(tracking)
                if r["patient_id"] == case.patient_key and r["timepoint"] == str(tp)
                and r["lesion"]}
        by_track = {mask.labels[les.label - 1].tracking_id: les for les in found.lesions}
        assert set(by_track) == set(rows)
        for track, lesion in by_track.items():
            assert lesion.volume_ml == pytest.approx(float(rows[track]["volume_ml"]), abs=1e-4)
            assert lesion.longest_diameter_mm == pytest.approx(
                float(rows[track]["longest_diameter_mm"]), abs=1e-4)
            assert lesion.short_axis_mm == pytest.approx(float(rows[track]["short_axis_mm"]),
                                                         abs=1e-4)


def test_pseudonymised_objects_carry_no_source_identity(
        case: ExportCase, exported: tuple[Path, dict]) -> None:
    out, _ = exported
    for path in (out / case.patient_key).iterdir():
        data = path.read_bytes()
        for secret in (b"PAT001", b"Doe^Jane", b"19600101", b"20240115", b"20240415",
                       case.study_uids[0].encode(), case.study_uids[1].encode()):
            assert secret not in data, (path.name, secret)
        ds = pydicom.dcmread(path)
        assert ds.PatientID == case.patient_key
        assert ds.PatientIdentityRemoved == "YES"


def test_keep_ids_writes_the_source_identity_and_says_so(
        case: ExportCase, tracking: Path, tmp_path: Path) -> None:
    out = tmp_path / "kept"
    result = runner.invoke(app, ["export-dicom", str(tracking), "-o", str(out), "--input",
                                 str(case.input_csv), "--keep-ids"])
    assert result.exit_code == 0, result.stderr
    assert "kept from the source studies (--keep-ids)" in result.stderr
    sr = pydicom.dcmread(out / case.patient_key / "t01_SR.dcm")
    assert (sr.PatientID, str(sr.PatientName), sr.StudyInstanceUID) == (
        "PAT001", "Doe^Jane", case.study_uids[1])
    errors, _ = dciodvfy_errors(out / case.patient_key / "t01_SEG.dcm")
    assert errors == []


def test_rerun_rewrites_identical_uids(case: ExportCase, tracking: Path,
                                       exported: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = exported
    again = tmp_path / "again"
    result = runner.invoke(app, ["export-dicom", str(tracking), "-o", str(again), "--input",
                                 str(case.input_csv)])
    assert result.exit_code == 0, result.stderr
    for name in ("t00_SEG.dcm", "t01_SR.dcm"):
        first = pydicom.dcmread(out / case.patient_key / name)
        second = pydicom.dcmread(again / case.patient_key / name)
        assert (first.SOPInstanceUID, first.SeriesInstanceUID, first.StudyInstanceUID) == (
            second.SOPInstanceUID, second.SeriesInstanceUID, second.StudyInstanceUID)


def test_without_input_it_is_a_one_line_usage_error(tracking: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export-dicom", str(tracking), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "give the DICOM export with --input" in result.stderr
    missing = runner.invoke(app, ["export-dicom", str(tmp_path), "-o", str(tmp_path / "o")])
    assert missing.exit_code == 2
    assert "no tracks.json" in missing.stderr


def test_a_cache_that_kept_ids_is_not_exported_as_pseudonymised(
        case: ExportCase, tracking: Path, tmp_path: Path) -> None:
    import shutil

    from medseq.contracts.cache import read_manifest, write_manifest

    cache = tmp_path / "kept_cache"
    shutil.copytree(case.cache, cache)
    manifest = read_manifest(cache)
    manifest.pseudonymised = False  # as preprocess --keep-ids writes it: ids are the real ones
    write_manifest(cache, manifest)
    out = tmp_path / "out"
    result = runner.invoke(app, ["export-dicom", str(tracking), "-o", str(out), "--input",
                                 str(case.input_csv), "--cache", str(cache)])
    assert result.exit_code == 2
    assert "kept the original patient ids" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
