"""`medseq evaluate RUN --data CACHE`: the all-patient model on an external cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from medseq.cli import app
from medseq.contracts.cache import read_manifest, write_manifest
from medseq.contracts.run import ModelCard, ModelConfig
from medseq.models.io import save_model
from medseq.models.sequence import ResponseModel
from tests.fake_run import write_fake_cache, write_fake_run

runner = CliRunner()


def _cache_with_crops(cache: Path, ids: list[str], crops: Callable[[], np.ndarray]) -> None:
    """A fake cache of ``ids`` whose patients hold the float16 crops ``crops()`` draws."""
    write_fake_cache(cache, ids)
    manifest = read_manifest(cache)
    for pid in ids:
        np.save(cache / pid / "crops.npy", crops().astype(np.float16))
        manifest.patients[pid].crops = f"{pid}/crops.npy"
    write_manifest(cache, manifest)


def test_external_evaluation_scores_every_labelled_patient(tmp_path: Path) -> None:
    ids = ["e0", "e1", "e2", "e3", "e4", "e5"]
    cache = tmp_path / "external"
    rng = np.random.default_rng(0)
    _cache_with_crops(cache, ids, lambda: rng.normal(size=(3, 2, 2, 16, 16, 16)))
    run = tmp_path / "run"
    write_fake_run(run, n_patients=20)
    torch.manual_seed(0)
    config = ModelConfig(widths=[4, 8], embed=8, hidden=8, measurements=False)
    card = ModelCard(architecture=config, label_names=config.label_names)
    save_model(run, ResponseModel(config).state_dict(), card)

    result = runner.invoke(app, ["evaluate", str(run), "--data", str(cache), "--json",
                                 "--bootstrap", "100"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["cohort"] == "external"
    assert doc["data"] == "external"
    assert doc["n_patients"] == 6
    assert doc["n_responders"] == 3
    assert doc["folds"] == []
    assert {p["patient_id"] for p in doc["patients"]} == set(ids)
    assert all(0.0 <= p["probability"] <= 1.0 for p in doc["patients"])
    assert doc["pooled"]["forecast"]["n_pairs"] == 12
    assert (run / "evaluation-external-external.json").is_file()
    assert not (run / "evaluation.json").exists()


def test_an_early_prediction_model_is_scored_on_its_own_label(tmp_path: Path) -> None:
    """The external cohort's labels follow the model card's label (best response after the
    observed scans), not the manifest's overall labels; decided patients are left out."""
    from medseq.contracts.run import LabelRecord, ModelInputs
    from medseq.tracking.outputs import tracks_document
    from medseq.tracking.stored import input_hash, store_tracks
    from tests.training.test_targets import PD, PR, SD, course

    ids = ["e0", "e1", "e2", "e3", "e4", "e5"]
    cache = tmp_path / "external"
    rng = np.random.default_rng(0)
    _cache_with_crops(cache, ids, lambda: rng.normal(size=(3, 2, 2, 16, 16, 16)))
    later = {"e0": PR, "e1": SD, "e2": PR, "e3": PD, "e4": SD, "e5": PR}
    courses = [course((0, None), (60, PD if pid == "e5" else SD), (120, later[pid]), pid=pid)
               for pid in ids]
    assert store_tracks(cache, tracks_document(courses, input_hash=input_hash(cache)))
    run = tmp_path / "run"
    write_fake_run(run, n_patients=20)
    config = ModelConfig(widths=[4, 8], embed=8, hidden=8, measurements=False)
    card = ModelCard(architecture=config, label_names=config.label_names,
                     inputs=ModelInputs(observe=2), label=LabelRecord(kind="best_after"))
    torch.manual_seed(0)
    save_model(run, ResponseModel(config).state_dict(), card)

    result = runner.invoke(app, ["evaluate", str(run), "--data", str(cache), "--json",
                                 "--bootstrap", "100"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    scored = {p["patient_id"]: p["label"] for p in doc["patients"]}
    assert scored == {"e0": 1, "e1": 0, "e2": 1, "e3": 0, "e4": 0}
    assert {e["patient_id"]: e["reason"] for e in doc["excluded"]} == {
        "e5": "progression already seen by scan 1"}
    assert doc["task"] == {"label_kind": "best_after", "observe": 2, "n_determined": 1}


def test_the_feature_model_of_the_training_cohort_scores_the_external_one(
        tmp_path: Path) -> None:
    """A model fed measurements reports their summary, and the feature baseline fitted on the
    training cohort's predictions is applied to it unchanged."""
    from medseq.contracts.run import LESION_MEASUREMENTS, SCAN_MEASUREMENTS, ModelInputs

    ids = [f"e{i}" for i in range(8)]
    cache = tmp_path / "external"
    rng = np.random.default_rng(1)

    def cube_lesion() -> np.ndarray:
        crops = rng.normal(0.5, 0.1, size=(3, 2, 2, 12, 12, 12))
        crops[:, :, 1] = 0
        crops[:, :, 1, 4:8, 4:8, 4:8] = 1  # a small cube lesion in every crop
        return crops

    _cache_with_crops(cache, ids, cube_lesion)
    run = tmp_path / "run"
    write_fake_run(run, n_patients=30, features=True)
    config = ModelConfig(widths=[4, 8], embed=8, hidden=8)
    inputs = ModelInputs(observe=2, lesion_measurements=list(LESION_MEASUREMENTS),
                         scan_measurements=list(SCAN_MEASUREMENTS), crop_spacing_mm=2.0,
                         hu_offset=-200.0, hu_scale=500.0)
    torch.manual_seed(0)
    save_model(run, ResponseModel(config).state_dict(),
               ModelCard(architecture=config, label_names=config.label_names, inputs=inputs))

    result = runner.invoke(app, ["evaluate", str(run), "--data", str(cache), "--json",
                                 "--bootstrap", "100"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["pooled"]["feature_model"] is not None
    assert all(0.0 <= p["feature_probability"] <= 1.0 for p in doc["patients"])
