"""End to end on a generated cohort: ``medseq track`` on raw input against ground_truth.json.

One small cohort (a DICOM and a NIfTI patient, 3-4 scans, repositioned) goes through the CLI,
which preprocesses it into OUT/cache first; the results must reproduce every correspondence,
measurement and RECIST category of the ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from medseq.cli import app
from medseq.contracts.tracks import PatientTracking
from medseq.tracking.pipeline import track_cache
from medseq.tracking.truth import TruthComparison, compare_with_truth, write_lesion_info

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    from medseq.data.synthetic import generate_cohort

    root = tmp_path_factory.mktemp("synthetic")
    generate_cohort(root / "gen", patients=2, timepoints=(3, 4), fmt="both", size="small",
                    seed=5, lesions=(2, 5))
    out = root / "out"
    result = CliRunner().invoke(app, ["track", str(root / "gen" / "manifest.csv"), "-o",
                                      str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    truth = json.loads((root / "gen" / "ground_truth.json").read_text())
    return out, json.loads(result.stdout), truth


@pytest.fixture(scope="module")
def comparison(run: tuple[Path, dict[str, Any], dict[str, Any]]) -> TruthComparison:
    out, _, truth = run
    from medseq.preprocess.pseudonym import load_or_create_salt, pseudonym

    key = load_or_create_salt(out / "cache")
    ids = {pseudonym(p["patient_id"], key): p["patient_id"] for p in truth["patients"]}
    results: list[PatientTracking] = track_cache(out / "cache")
    assert all(r.tracked for r in results)
    return compare_with_truth(results, truth, ids=ids)


def test_raw_input_is_preprocessed_then_tracked(
    run: tuple[Path, dict[str, Any], dict[str, Any]]
) -> None:
    out, doc, truth = run
    assert (out / "cache" / "manifest.json").is_file()
    for name in ("lesions.csv", "response.csv", "tracks.json"):
        assert (out / name).is_file()
    assert len(doc["patients"]) == len(truth["patients"])


def test_every_correspondence_matches_ground_truth(comparison: TruthComparison) -> None:
    assert comparison.true_links > 0
    assert comparison.precision == 1.0, comparison.disagreements
    assert comparison.recall == 1.0, comparison.disagreements
    assert comparison.new_predicted == comparison.new_true == comparison.new_correct
    assert comparison.unidentified == 0


def test_measurements_match_ground_truth(comparison: TruthComparison) -> None:
    assert max(abs(e) for e in comparison.diameter_errors_voxels) <= 1.0
    assert max(abs(e) for e in comparison.short_axis_errors_voxels) <= 1.0
    assert max(abs(e) for e in comparison.volume_errors_pct) <= 2.0


def test_recist_matches_ground_truth(comparison: TruthComparison) -> None:
    assert comparison.response_total > 0
    assert comparison.response_agree == comparison.response_total, comparison.disagreements
    assert comparison.bor_agree == comparison.bor_total == 2


def test_lesion_info_from_ground_truth_organs(
    run: tuple[Path, dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    """Organs given by centroid (x, y, z) reach every baseline lesion and keep the agreement."""
    out, _, truth = run
    from medseq.preprocess.pseudonym import load_or_create_salt, pseudonym

    key = load_or_create_salt(out / "cache")
    to_cache = {p["patient_id"]: pseudonym(p["patient_id"], key) for p in truth["patients"]}
    info = write_lesion_info(truth, tmp_path / "info.csv", ids=to_cache)
    results = track_cache(out / "cache", lesion_info=info)
    organs = {r.organ for res in results for r in res.lesions if r.timepoint == 0}
    assert None not in organs
    comparison = compare_with_truth(results, truth, ids={v: k for k, v in to_cache.items()})
    assert comparison.response_agree == comparison.response_total
    assert comparison.bor_agree == comparison.bor_total
