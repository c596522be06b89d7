"""Masks for timepoints without one, and the source/confidence columns, with a stub network.

The stub returns the baseline-mask channel as its probability map (a perfect "registration
only" tracker), or a flat 0.3 (nothing above threshold, but not confident either), so these
tests check the plumbing, not the learning.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from medseq.cli import app
from medseq.contracts.cache import read_manifest, write_manifest
from medseq.contracts.tracks import read_tracks
from medseq.io.nifti import load_nifti, save_nifti
from medseq.io.volume import Volume
from medseq.tracker.config import TrackerCard, TrackerConfig
from medseq.tracker.segment import Tracker
from medseq.tracking.outputs import read_lesions_csv
from tests.tracker.tiny_cache import CONFIG, write_tiny_cache


class StubTracker:
    def __init__(self, flat: float | None = None, config: dict[str, object] | None = None,
                 detector: str = "separate", threshold: float = 0.9) -> None:
        self.config = TrackerConfig(crop_size=32, prior_refine="none",
                                    detector=detector)  # type: ignore[arg-type]
        self.card = TrackerCard(config=self.config, preprocess_config=config or CONFIG,
                                detect_threshold=threshold)
        self.flat = flat

    def predict(self, inputs: np.ndarray, **_: object) -> np.ndarray:
        if self.flat is not None:
            return np.full(inputs[:, 0].shape, self.flat, dtype=np.float32)
        return inputs[:, 3].copy()

    predict_detection = predict


def _stub(monkeypatch: pytest.MonkeyPatch, stub: StubTracker) -> None:
    monkeypatch.setattr(Tracker, "load", classmethod(lambda cls, *a, **k: stub))


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def test_track_fills_follow_ups_and_adds_source_columns(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = write_tiny_cache(tmp_path / "cache", patients=1, timepoints=3, follow_up_masks=False)
    (tmp_path / "run").mkdir()
    _stub(monkeypatch, StubTracker())
    before = (cache / "manifest.json").read_bytes()
    result = CliRunner().invoke(app, ["track", str(cache), "-o", str(tmp_path / "out"),
                                      "--tracker", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    assert (cache / "manifest.json").read_bytes() == before  # the user's cache is untouched
    derived = read_manifest(tmp_path / "out/tracker_cache")
    tp = derived.patients["P000"].timepoints[1]
    labels = load_nifti(tmp_path / "out/tracker_cache" / str(tp.mask)).array
    assert sorted(np.unique(labels)) == [0, 1, 2]
    rows = _rows(tmp_path / "out/lesions.csv")
    assert {(r["timepoint"], r["source"]) for r in rows} == {
        ("0", "mask"), ("1", "tracker"), ("2", "tracker")}
    assert all(r["confidence"] == "1" for r in rows if r["source"] == "tracker")
    assert all(r["confidence"] == "" for r in rows if r["source"] == "mask")
    assert {r["status"] for r in rows} == {"tracked"}
    document = json.loads(result.stdout)
    lesion = document["patients"][0]["lesions"][-1]
    assert (lesion["source"], lesion["confidence"]) == ("tracker", 1.0)
    assert document["settings"]["tracker"] == str(tmp_path / "run")
    # The typed rows carry source/confidence: the CSV and tracks.json read back as written.
    typed = read_lesions_csv(tmp_path / "out/lesions.csv")
    assert [(r.source and r.source.value, r.confidence) for r in typed] == [
        (r["source"], float(r["confidence"]) if r["confidence"] else None) for r in rows]
    stored = read_tracks(tmp_path / "out/tracks.json")
    assert stored.patients[0].lesions == typed


def _normalised_as_mr(cache: Path) -> None:
    """Record P000's scans as MR z-scores equal to the CT window's units: only the modality
    differs from the tiny cache's CT."""
    manifest = read_manifest(cache)
    record = manifest.patients["P000"]
    timepoints = [tp.model_copy(update={"intensity": {"kind": "mr_zscore", "mean": -200.0,
                                                      "std": 500.0}})
                  for tp in record.timepoints]
    manifest.patients["P000"] = record.model_copy(update={"timepoints": timepoints})
    write_manifest(cache, manifest)


@pytest.mark.parametrize("kind", ["ct_window", "mr_zscore"])
def test_subtraction_reports_a_new_lesion_on_ct_only(kind: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cache = write_tiny_cache(tmp_path / "cache", patients=1, timepoints=2, follow_up_masks=False)
    follow = load_nifti(cache / "P000/t01_image.nii")
    grid = np.indices(follow.array.shape).transpose(1, 2, 3, 0) * np.array([4.0, 4.0, 5.0])
    new = np.linalg.norm(grid - np.array([20, 30, 10]) * np.array([4.0, 4.0, 5.0]),
                         axis=-1) <= 8.0  # 110 HU in 40 HU tissue, far from both lesions
    image = follow.array.copy()
    image[new] += 70
    save_nifti(Volume(image, follow.affine), cache / "P000/t01_image.nii")
    if kind != "ct_window":
        _normalised_as_mr(cache)
    (tmp_path / "run").mkdir()
    _stub(monkeypatch, StubTracker(detector="subtraction", threshold=5.0))
    result = CliRunner().invoke(app, ["track", str(cache), "-o", str(tmp_path / "out")
                                      , "--tracker", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "out/lesions.csv")
    detected = [r for r in rows if r["source"] == "detector"]
    response = {r["timepoint"]: r for r in _rows(tmp_path / "out/response.csv")}
    if kind == "ct_window":
        assert len(detected) == 1
        assert detected[0]["timepoint"] == "1"
        assert float(detected[0]["confidence"]) >= 5.0
        derived = read_manifest(tmp_path / "out/tracker_cache").patients["P000"]
        labels = load_nifti(tmp_path / "out/tracker_cache" / str(derived.timepoints[1].mask))
        assert (labels.array[new] == 3).sum() >= new.sum() // 2  # after the two tracked ones
        assert response["1"]["response"] == "PD"
        assert "new lesion" in response["1"]["reasons"]
    else:  # the rules are in HU: no detection on MR
        assert detected == []
        assert response["1"]["response"] != "PD"


@pytest.mark.parametrize("kind", ["ct_window", "mr_zscore"])
def test_a_lesion_whose_follow_up_shows_only_air_is_vanished_on_ct(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stub draws the carried baseline lesion; where the follow-up holds only air there,
    CT calls it vanished (0 mm), MR keeps what the network drew."""
    cache = write_tiny_cache(tmp_path / "cache", patients=1, timepoints=2, follow_up_masks=False)
    baseline = load_nifti(cache / "P000/t00_mask.nii").array > 0
    components, _ = ndimage.label(baseline, structure=np.ones((3, 3, 3)))
    first = ndimage.binary_dilation(components == 1, iterations=3)
    follow = load_nifti(cache / "P000/t01_image.nii")
    image = follow.array.copy()
    image[first] = -900  # the first lesion's place is now empty lung
    save_nifti(Volume(image, follow.affine), cache / "P000/t01_image.nii")
    if kind != "ct_window":
        _normalised_as_mr(cache)
    (tmp_path / "run").mkdir()
    _stub(monkeypatch, StubTracker())
    result = CliRunner().invoke(app, ["track", str(cache), "-o", str(tmp_path / "out"),
                                      "--tracker", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    rows = [r for r in _rows(tmp_path / "out/lesions.csv") if r["timepoint"] == "1"]
    assert len(rows) == 2
    statuses = sorted(r["status"] for r in rows)
    if kind == "ct_window":
        assert statuses == ["tracked", "vanished"]
        gone = next(r for r in rows if r["status"] == "vanished")
        assert float(gone["longest_diameter_mm"]) == 0.0
        assert float(gone["confidence"]) == 1.0
    else:
        assert statuses == ["tracked", "tracked"]


def test_unsure_empty_output_is_not_found_not_zero(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cache = write_tiny_cache(tmp_path / "cache", patients=1, timepoints=2, follow_up_masks=False)
    (tmp_path / "run").mkdir()
    _stub(monkeypatch, StubTracker(flat=0.3))
    result = CliRunner().invoke(app, ["track", str(cache), "-o", str(tmp_path / "out"),
                                      "--tracker", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    follow = [r for r in _rows(tmp_path / "out/lesions.csv") if r["timepoint"] == "1"]
    assert [r["status"] for r in follow] == ["not_found", "not_found"]
    assert all(r["longest_diameter_mm"] == "" and r["source"] == "tracker" for r in follow)
    response = [r for r in _rows(tmp_path / "out/response.csv") if r["timepoint"] == "1"]
    assert response[0]["response"] == "NE"
    assert "not found by the tracker" in response[0]["reasons"]


def test_tracker_from_other_preprocessing_is_refused(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cache = write_tiny_cache(tmp_path / "cache", patients=1, timepoints=2, follow_up_masks=False)
    (tmp_path / "run").mkdir()
    _stub(monkeypatch, StubTracker(config={**CONFIG, "crop_size": 48}))
    result = CliRunner().invoke(app, ["track", str(cache), "-o", str(tmp_path / "out"),
                                      "--tracker", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "other preprocessing settings (crop_size)" in result.stderr
    assert str(tmp_path / "run") in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_annotations_make_the_baseline_mask(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cache = write_tiny_cache(tmp_path / "cache", patients=1, timepoints=2, follow_up_masks=False)
    manifest = read_manifest(cache)
    record = manifest.patients["P000"]
    truth = load_nifti(cache / str(record.timepoints[0].mask)).array
    # drop the baseline mask: only the annotation is left
    record.timepoints[0] = record.timepoints[0].model_copy(update={"mask": None,
                                                                   "mask_native": None})
    from medseq.contracts.cache import write_manifest

    write_manifest(cache, manifest)
    from scipy import ndimage

    components, _ = ndimage.label(truth, structure=np.ones((3, 3, 3)))
    affine = np.asarray(record.grid_affine)
    centre = ndimage.center_of_mass(truth, components, 1)
    point = affine[:3, :3] @ np.asarray(centre) + affine[:3, 3]
    csv_path = tmp_path / "lesions.csv"
    csv_path.write_text("patient_id,timepoint,lesion,x_mm,y_mm,z_mm\n"
                        f"P000,0,A,{point[0]:.2f},{point[1]:.2f},{point[2]:.2f}\n")

    class PromptStub(StubTracker):
        def predict(self, inputs: np.ndarray, **_: object) -> np.ndarray:
            # the prompt blob as the lesion
            return np.where(inputs[:, 1] > 0.5, 0.9, 0.0).astype(np.float32)

    (tmp_path / "run").mkdir()
    _stub(monkeypatch, PromptStub())
    result = CliRunner().invoke(app, ["track", str(cache), "-o", str(tmp_path / "out"),
                                      "--tracker", str(tmp_path / "run"),
                                      "--annotations", str(csv_path)])
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "out/lesions.csv")
    assert {(r["timepoint"], r["source"]) for r in rows} == {("0", "tracker"), ("1", "tracker")}
    assert len([r for r in rows if r["timepoint"] == "0"]) == 1


def test_predict_fill_recuts_crop_masks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medseq.contracts.cache import TargetRecord, write_manifest
    from medseq.tracker.integrate import fill_for_predict

    cache = write_tiny_cache(tmp_path / "cache", patients=1, timepoints=2, follow_up_masks=False)
    manifest = read_manifest(cache)
    record = manifest.patients["P000"]
    base = load_nifti(cache / str(record.timepoints[0].mask))
    centre = np.argwhere(base.array > 0).mean(axis=0)
    world = base.affine[:3, :3] @ centre + base.affine[:3, 3]
    crops = np.zeros((2, 1, 2, 8, 8, 8), dtype=np.float16)
    np.save(cache / "P000/crops.npy", crops)
    manifest.patients["P000"] = record.model_copy(update={
        "crops": "P000/crops.npy", "crop_shape": list(crops.shape),
        "targets": [TargetRecord(index=0, centroid_mm=world.tolist(), volume_ml=1.0)]})
    manifest.config = {**manifest.config, "crop_size": 8, "crop_spacing": 4.0}
    write_manifest(cache, manifest)
    stub = StubTracker(config=manifest.config)
    _stub(monkeypatch, stub)
    (tmp_path / "run").mkdir()
    derived, provenance = fill_for_predict(cache, tmp_path / "run")
    assert provenance.filled == {"P000": {1}}
    record = read_manifest(derived).patients["P000"]
    recut = np.load(derived / str(record.crops))
    assert recut[1, 0, 1].sum() > 0  # the follow-up's mask channel now holds the lesion
    assert recut[0, 0, 1].sum() == 0  # the baseline crop (a user mask) is left as it was
    assert np.load(cache / "P000/crops.npy").sum() == 0  # the original cache is untouched


def test_bad_annotations_exit_2_and_write_nothing(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cache = write_tiny_cache(tmp_path / "cache", patients=1, timepoints=2, follow_up_masks=False)
    (tmp_path / "run").mkdir()
    _stub(monkeypatch, StubTracker())
    bad = tmp_path / "points.csv"
    bad.write_text("patient_id,timepoint,lesion,x_mm,y_mm,z_mm\nP000,7,A,0,0,0\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["track", str(cache), "-o", str(out), "--tracker",
                                      str(tmp_path / "run"), "--annotations", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {bad}: line 2: patient P000 has no timepoint 7 "
                                      "(it has 0, 1)")
    assert not out.exists() or not any(out.iterdir())
    result = CliRunner().invoke(app, ["track", str(cache), "-o", str(out), "--annotations",
                                      str(bad)])
    assert result.exit_code == 1
    assert "--annotations needs --tracker" in result.stderr
    result = CliRunner().invoke(app, ["track", str(cache), "-o", str(out), "--tracker",
                                      str(tmp_path / "run"), "--shard", "1/2"])
    assert result.exit_code == 1
    assert "--tracker does not work with --shard" in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_bundled_tracker_is_small_and_readable() -> None:
    from medseq.tracker.integrate import resolve_tracker
    from medseq.tracker.segment import read_card

    folder = resolve_tracker(Path("bundled"))
    assert (folder / "tracker.safetensors").stat().st_size < 2_000_000
    assert not (folder / "detector.safetensors").exists()  # subtraction needs no network
    card = read_card(folder)
    assert card.format == 3
    assert card.config.prior_refine == "scale"
    assert card.config.detector == "subtraction"
    assert card.config.scale_prior_sd == TrackerConfig().scale_prior_sd  # trained as defaults
    assert card.preprocess_config["crop_size"] == 32  # made with default preprocessing
    # chosen on the training follow-ups, above the candidates' floor of 3
    assert card.detect_threshold is not None
    assert card.detect_threshold > 3.0
    assert card.metrics["detect_fp_per_scan"] <= card.config.subtract_max_fp_per_scan
