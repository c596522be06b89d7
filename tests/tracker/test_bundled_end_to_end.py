"""A new user's run: a synthetic patient annotated only at baseline, preprocessed and tracked
with the bundled tracker from the command line; its follow-up masks come out on each scan's own
grid and agree with the true masks the user never gave."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from medseq.cli import app
from medseq.contracts.cache import read_manifest
from medseq.data.synthetic import generate_cohort
from medseq.io.nifti import load_nifti


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("bundled")
    raw = root / "raw"
    generate_cohort(raw, patients=1, timepoints=(3, 3), fmt="nifti", size="small", seed=11,
                    lesions=(2, 3))
    rows = list(csv.DictReader((raw / "manifest.csv").open()))
    truth = {row["timepoint"]: raw / row["mask"] for row in rows}
    for row in rows:
        if row["timepoint"] != "t0":
            row["mask"] = ""  # only the baseline is annotated
    with (raw / "baseline_only.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    runner = CliRunner()
    cache, out = root / "cache", root / "out"
    result = runner.invoke(app, ["preprocess", str(raw / "baseline_only.csv"), "-o", str(cache),
                                 "--workers", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["track", str(cache), "-o", str(out), "--tracker", "bundled",
                                 "--json"])
    assert result.exit_code == 0, result.output
    (root / "truth.csv").write_text("\n".join(f"{k},{v}" for k, v in truth.items()))
    return cache, out, root / "truth.csv"


def test_follow_ups_are_segmented_on_their_own_grid(tracked: tuple[Path, Path, Path]) -> None:
    cache, out, truth_csv = tracked
    truth = dict(line.split(",") for line in truth_csv.read_text().splitlines())
    derived = read_manifest(out / "tracker_cache")
    record = next(iter(derived.patients.values()))
    source = read_manifest(cache).patients[record.patient_id]
    dices = []
    for position in (1, 2):
        tp = record.timepoints[position]
        assert tp.mask_native is not None
        assert tp.mask_native.endswith("_tracker_mask_native.nii.gz")
        native = load_nifti(out / "tracker_cache" / tp.mask_native)
        assert native.array.shape == tuple(source.timepoints[position].native_shape or ())
        assert np.allclose(native.affine, source.timepoints[position].native_affine, atol=1e-3)
        true = load_nifti(Path(truth[f"t{position}"])).array > 0
        assert true.shape == native.array.shape
        labels, count = ndimage.label(true, structure=np.ones((3, 3, 3)))
        for n in range(1, count + 1):
            lesion = labels == n
            if lesion.sum() >= 30:
                near = ndimage.binary_dilation(lesion, iterations=3)
                found = (native.array > 0) & near
                dices.append(2 * (found & lesion).sum() / (found.sum() + lesion.sum()))
    assert dices, "the synthetic patient has no lesion of 30 voxels or more at follow-up"
    assert float(np.median(dices)) > 0.5


def test_baseline_only_patient_gets_crops_from_its_baseline_mask(
        tracked: tuple[Path, Path, Path]) -> None:
    cache, _, _ = tracked
    record = next(iter(read_manifest(cache).patients.values()))
    assert record.has_mask is False
    assert record.targets
    assert record.crops is not None
    crops = np.load(cache / record.crops)
    assert crops.shape[:3] == (3, len(record.targets), 2)
    assert crops[0, :, 1].any()  # the baseline's mask channel
    assert not crops[1:, :, 1].any()  # no mask at the follow-ups yet


def test_lesion_rows_say_the_tracker_measured_the_follow_ups(
        tracked: tuple[Path, Path, Path]) -> None:
    _, out, _ = tracked
    rows = list(csv.DictReader((out / "lesions.csv").open()))
    sources = {(row["timepoint"], row["source"]) for row in rows}
    assert ("0", "mask") in sources
    assert {("1", "tracker"), ("2", "tracker")} <= sources | {
        (row["timepoint"], "tracker") for row in rows if row["status"] == "not_found"}
    measured = [row for row in rows if row["source"] == "tracker" and row["status"] == "tracked"]
    assert measured
    assert all(0 < float(row["confidence"]) <= 1 for row in measured)
    assert all(float(row["volume_ml"]) > 0 for row in measured)
