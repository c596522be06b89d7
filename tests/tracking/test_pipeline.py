"""track_cache on hand-built caches: RECIST through measurement, matching and target choice."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from medseq.contracts.tracks import PatientTracking
from medseq.errors import CacheError, InputDataError
from medseq.tracking.outputs import LESION_COLUMNS, RESPONSE_COLUMNS, write_outputs
from medseq.tracking.pipeline import track_cache
from medseq.tracking.recist import Response
from tests.tracking.cache_factory import CacheBuilder, Disc, Scan

A = (-15.0, -10.0, 0.0)
B = (15.0, 12.0, 0.0)


def _by_id(results: list[PatientTracking]) -> dict[str, PatientTracking]:
    return {r.patient_id: r for r in results}


def _responses(result: PatientTracking) -> list[Response | None]:
    return [row.response for row in result.responses]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    builder = CacheBuilder(tmp_path_factory.mktemp("cache"))
    # The worked example of RECIST.md, on a follow-up grid with other spacing and a shifted
    # patient: 30 + 20 -> 18 + 14 (PR) -> 22 + 17 (PD from the nadir, below baseline).
    builder.add(
        "worked",
        Scan((Disc(A, 30.0), Disc(B, 20.0)), days=0),
        Scan((Disc(A, 18.0), Disc(B, 14.0)), days=60, spacing=(0.8, 0.8, 2.0),
             shift_mm=(6.0, -4.0, 2.0)),
        Scan((Disc(A, 22.0), Disc(B, 17.0)), days=120, shift_mm=(-3.0, 5.0, -2.0)),
    )
    # A new lesion while the target shrinks: PD, and PD again while the new lesion is there.
    builder.add(
        "newlesion",
        Scan((Disc(A, 30.0),), days=0),
        Scan((Disc(A, 20.0), Disc((20.0, -20.0, 0.0), 12.0)), days=50),
        Scan((Disc(A, 16.0), Disc((20.0, -20.0, 0.0), 12.0)), days=100),
    )
    # Target gone: CR, the track reported vanished at 0 mm.
    builder.add(
        "vanish",
        Scan((Disc(A, 24.0),), days=0),
        Scan((Disc(A, 10.0),), days=40),
        Scan((), days=80),
    )
    # A lesion under 10 mm is a non-target: the target gone but it persists -> PR, not CR.
    builder.add(
        "nontarget",
        Scan((Disc(A, 24.0), Disc(B, 7.0)), days=0),
        Scan((Disc(B, 7.0),), days=40),
    )
    # A target splits into two fragments: measured as the sum of both.
    builder.add(
        "split",
        Scan((Disc(A, 30.0, height=8.0),), days=0),
        Scan((Disc((A[0] - 7, A[1], 0.0), 12.0), Disc((A[0] + 7, A[1], 0.0), 12.0)), days=45),
    )
    # Two targets merge into one lesion: counted once.
    builder.add(
        "merge",
        Scan((Disc((-8.0, 0.0, 0.0), 14.0), Disc((8.0, 0.0, 0.0), 14.0)), days=0),
        Scan((Disc((-5.0, 0.0, 0.0), 16.0), Disc((5.0, 0.0, 0.0), 16.0)), days=45),
    )
    builder.add("nomask", Scan((), days=0, has_mask=False), Scan((), days=30, has_mask=False))
    return builder.write()


@pytest.fixture(scope="module")
def results(cache: Path) -> dict[str, PatientTracking]:
    return _by_id(track_cache(cache, min_volume_ml=0.05))


def test_worked_example_through_masks(results: dict[str, PatientTracking]) -> None:
    result = results["worked"]
    assert result.targets == ("L1", "L2")
    assert _responses(result) == [None, Response.PR, Response.PD]
    assert result.best_overall_response is Response.PR
    assert result.responder is True
    base, fu1, fu2 = result.responses
    assert base.sod_mm == pytest.approx(50.0, abs=2.0)
    assert fu1.sod_mm == pytest.approx(32.0, abs=2.0)
    assert fu2.change_from_baseline_pct is not None
    assert fu2.change_from_baseline_pct < 0
    assert fu2.nadir_mm == fu1.sod_mm
    assert [row.days for row in result.responses] == [0, 60, 120]
    statuses = {(row.timepoint, row.track_id): row.status for row in result.lesions}
    assert set(statuses.values()) == {"tracked"}
    assert len(statuses) == 6
    # Volumetric analogue beside it: discs keep their height, so volume goes with d^2 (-60%),
    # short of the -65% volumetric response although the diameters say PR.
    assert fu1.volume_change_from_baseline_pct == pytest.approx(-60.0, abs=4.0)
    assert fu1.volumetric_response is Response.SD


def test_diameters_measured_on_the_native_grid(results: dict[str, PatientTracking]) -> None:
    rows = [r for r in results["worked"].lesions if r.track_id == "L1"]
    for row, truth, pixel in zip(rows, (30.0, 18.0, 22.0), (1.0, 0.8, 1.0), strict=True):
        assert row.longest_diameter_mm is not None
        assert abs(row.longest_diameter_mm - truth) <= pixel
    # Centroids: native for the scan, and back in the baseline frame after the transform.
    fu1 = rows[1]
    assert fu1.centroid_mm == pytest.approx((A[0] + 6.0, A[1] - 4.0, A[2] + 2.0), abs=0.6)
    assert fu1.centroid_baseline_mm == pytest.approx(A, abs=0.6)


def test_new_lesion_forces_pd_while_sod_shrinks(results: dict[str, PatientTracking]) -> None:
    result = results["newlesion"]
    fu = result.responses[1]
    assert fu.response is Response.PD
    assert fu.new_lesions
    assert fu.change_from_baseline_pct is not None
    assert fu.change_from_baseline_pct < -30
    new_rows = [r for r in result.lesions if r.status == "new"]
    assert [(r.track_id, r.timepoint, r.target) for r in new_rows] == [("L2", 1, False)]
    later = result.responses[2]
    assert later.response is Response.PD
    assert later.reasons == ("new lesion",)
    assert [r.status for r in result.lesions if r.timepoint == 2] == ["tracked", "tracked"]


def test_vanished_target_is_zero_and_cr(results: dict[str, PatientTracking]) -> None:
    result = results["vanish"]
    assert _responses(result) == [None, Response.PR, Response.CR]
    gone = [r for r in result.lesions if r.timepoint == 2]
    assert [(r.status, r.longest_diameter_mm, r.volume_ml) for r in gone] == [
        ("vanished", 0.0, 0.0)]
    assert gone[0].volume_change_pct == pytest.approx(-100.0)
    assert result.responses[2].volumetric_response is Response.CR


def test_small_lesion_is_a_non_target(results: dict[str, PatientTracking]) -> None:
    result = results["nontarget"]
    assert result.targets == ("L1",)
    assert result.responses[1].response is Response.PR
    assert result.responses[1].reasons == ("targets gone, non-target lesions persist",)


def test_split_target_is_the_sum_of_fragments(results: dict[str, PatientTracking]) -> None:
    result = results["split"]
    fragments = [r for r in result.lesions if r.timepoint == 1]
    assert [(r.track_id, r.status) for r in fragments] == [("L1", "split"), ("L1", "split")]
    total = sum(r.longest_diameter_mm or 0.0 for r in fragments)
    assert result.responses[1].sod_mm == pytest.approx(total)
    assert result.tracks["L1"][1] == [1, 2]


def test_merged_targets_counted_once(results: dict[str, PatientTracking]) -> None:
    result = results["merge"]
    assert result.targets == ("L1", "L2")
    rows = [r for r in result.lesions if r.timepoint == 1]
    assert [(r.track_id, r.status, r.merged_into) for r in rows] == [
        ("L1", "merged", None), ("L2", "merged", "L1")]
    assert rows[1].longest_diameter_mm is None
    assert result.responses[1].sod_mm == pytest.approx(rows[0].longest_diameter_mm)


def test_patient_without_mask_is_listed(results: dict[str, PatientTracking]) -> None:
    result = results["nomask"]
    assert not result.has_mask
    assert not result.tracked
    assert result.note == "no lesion mask: not tracked"
    assert result.best_overall_response is Response.NE
    assert result.responder is None


def test_lesion_info_makes_a_node(tmp_path: Path) -> None:
    builder = CacheBuilder(tmp_path / "cache")
    builder.add("p1", Scan((Disc(A, 20.0), Disc(B, 16.0)), days=0),
                Scan((Disc(A, 9.0),), days=30))
    cache = builder.write()
    plain = track_cache(cache)[0]
    # Without info: both non-nodal; the 9 mm remnant is not "gone" -> PR.
    assert plain.responses[1].response is Response.PR
    info = tmp_path / "info.csv"
    info.write_text("patient_id,timepoint,x,y,z,organ,nodal\n"
                    f"p1,0,{A[0]},{A[1]},{A[2]},lymph node,yes\n"
                    "p1,0,15,12,0,liver,no\n")
    nodal = track_cache(cache, lesion_info=info)[0]
    # The node's short axis is now under 10 mm and the other target is gone: CR.
    assert nodal.responses[1].response is Response.CR
    node_rows = [r for r in nodal.lesions if r.nodal]
    assert {r.organ for r in node_rows} == {"lymph node"}
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,timepoint,label\np1,0,9\n")
    with pytest.raises(InputDataError, match="line 2"):
        track_cache(cache, lesion_info=bad)


def test_missing_mask_file_is_a_cache_error(tmp_path: Path) -> None:
    builder = CacheBuilder(tmp_path / "cache")
    builder.add("p1", Scan((Disc(A, 20.0),), days=0), Scan((Disc(A, 20.0),), days=30))
    cache = builder.write()
    (cache / "p1" / "t01_mask_native.nii.gz").unlink()
    with pytest.raises(CacheError, match="t01_mask_native"):
        track_cache(cache)


def test_write_outputs(results: dict[str, PatientTracking], tmp_path: Path) -> None:
    ordered = [results[k] for k in sorted(results)]
    paths = write_outputs(ordered, tmp_path / "out", settings={"min_volume_ml": 0.05})
    with paths["lesions.csv"].open() as handle:
        lesion_rows = list(csv.DictReader(handle))
    assert tuple(lesion_rows[0]) == LESION_COLUMNS
    assert {r["status"] for r in lesion_rows} == {"tracked", "new", "vanished", "split",
                                                  "merged"}
    with paths["response.csv"].open() as handle:
        response_rows = list(csv.DictReader(handle))
    assert tuple(response_rows[0]) == RESPONSE_COLUMNS
    worked = [r for r in response_rows if r["patient_id"] == "worked"]
    assert [r["response"] for r in worked] == ["", "PR", "PD"]
    assert {r["best_overall_response"] for r in worked} == {"PR"}
    doc = json.loads(paths["tracks.json"].read_text())
    assert doc["settings"] == {"min_volume_ml": 0.05}
    patients = {p["patient_id"]: p for p in doc["patients"]}
    assert patients["nomask"]["note"] == "no lesion mask: not tracked"
    assert patients["worked"]["tracks"]["L1"] == {"0": [1], "1": [1], "2": [1]}
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_flagged_registration_is_noted(tmp_path: Path) -> None:
    from medseq.contracts.cache import read_manifest, write_manifest

    builder = CacheBuilder(tmp_path / "cache")
    builder.add("p1", Scan((Disc(A, 20.0),), days=0), Scan((Disc(A, 20.0),), days=30))
    cache = builder.write()
    manifest = read_manifest(cache)
    manifest.patients["p1"].timepoints[1].registration.ok = False
    write_manifest(cache, manifest)
    (result,) = track_cache(cache)
    assert result.tracked
    assert result.note == "registration flagged at t01: check the matches"
