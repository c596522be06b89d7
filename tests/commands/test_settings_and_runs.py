"""Runs and caches that do not fit together are named, not silently used; predict without its
key refuses --all; evaluate on unlabelled patients is an input error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medseq.cli import app
from tests.commands.test_predict import fake_run, nifti_patient
from tests.fake_run import write_fake_cache, write_fake_run
from tests.preprocess.phantom import ScanSpec, write_manifest_cohort

runner = CliRunner()


def test_evaluate_on_unlabelled_patients_exits_2_with_the_reason(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_fake_run(run, n_patients=6)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    for row in rows:
        row["label"] = None
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(app, ["evaluate", str(run), "--bootstrap", "100"])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert "internal error" not in result.stderr
    assert "none of the run's 6 patients can be evaluated (6 no label)" in result.stderr
    assert not (run / "evaluation.json").exists()


def _external(tmp_path: Path, *, card_config: dict, card_hash: str) -> tuple[Path, Path]:
    from medseq.contracts.cache import read_manifest, write_manifest
    from medseq.contracts.run import ModelCard, ModelConfig
    from medseq.models.io import save_model
    from medseq.models.sequence import ResponseModel

    ids = ["e0", "e1", "e2", "e3"]
    cache = tmp_path / "external"
    write_fake_cache(cache, ids)  # preprocess config {"crop_size": 32}, hash sha256:cfg
    manifest = read_manifest(cache)
    rng = np.random.default_rng(0)
    for pid in ids:
        np.save(cache / pid / "crops.npy",
                rng.normal(size=(3, 2, 2, 16, 16, 16)).astype(np.float16))
        manifest.patients[pid].crops = f"{pid}/crops.npy"
    write_manifest(cache, manifest)
    run = tmp_path / "run"
    write_fake_run(run, n_patients=10)
    torch.manual_seed(0)
    config = ModelConfig(widths=[4, 8], embed=8, hidden=8, measurements=False)
    card = ModelCard(architecture=config, label_names=config.label_names,
                     preprocess_config=card_config, preprocess_config_hash=card_hash)
    save_model(run, ResponseModel(config).state_dict(), card)
    return run, cache


def test_evaluate_data_made_with_other_settings_is_refused(tmp_path: Path) -> None:
    run, cache = _external(tmp_path, card_config={"crop_size": 48}, card_hash="sha256:other")
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(cache), "--bootstrap", "100"])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert "preprocessed with other settings than the run's training cache" in result.stderr
    assert "crop_size 48 -> 32" in result.stderr
    assert not list(run.glob("evaluation-external-*"))


def test_evaluate_data_made_with_the_same_settings_is_scored(tmp_path: Path) -> None:
    run, cache = _external(tmp_path, card_config={"crop_size": 32}, card_hash="sha256:cfg")
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(cache), "--json",
                                 "--bootstrap", "100"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["n_patients"] == 4


def test_preprocess_with_new_settings_says_what_differs(tmp_path: Path) -> None:
    cohort = write_manifest_cohort(tmp_path / "in", {"Ann": [ScanSpec(0), ScanSpec(40)]})
    cache = tmp_path / "cache"
    first = runner.invoke(app, ["preprocess", str(cohort), "-o", str(cache)])
    assert first.exit_code == 0, first.stderr
    assert "other settings" not in first.stderr
    again = runner.invoke(app, ["preprocess", str(cohort), "-o", str(cache)])
    assert "other settings" not in again.stderr
    config = tmp_path / "new.yaml"
    config.write_text("crop_size: 16\nregistration:\n  iterations: 100\n")
    changed = runner.invoke(app, ["preprocess", str(cohort), "-o", str(cache), "--config",
                                  str(config), "--json"])
    assert changed.exit_code == 0, changed.stderr
    assert (f"warning: {cache} was preprocessed with other settings (crop_size 32 -> 16, "
            "registration.iterations 200 -> 100); every patient is redone") in changed.stderr
    assert json.loads(changed.stdout)["processed"] == 1


def test_predict_all_without_the_run_key_refuses_instead_of_printing_ids(tmp_path: Path
                                                                         ) -> None:
    run = fake_run(tmp_path / "run")
    (run / "salt.key").unlink()
    study = nifti_patient(tmp_path / "in").parent  # one patient folder, PAT1, in a cohort
    result = runner.invoke(app, ["predict", str(study), "--all", "--model", str(run)])
    assert result.exit_code == 2
    assert "no salt.key" in result.stderr
    assert "PAT1" not in result.stdout + result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("folder", ["runs", "medseq-demo/runs"])
def test_predict_without_model_says_which_run_it_took(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: str) -> None:
    from medseq.predict import resolve_run

    monkeypatch.chdir(tmp_path)
    old = fake_run(tmp_path / "runs" / "old")
    os.utime(old / "model.json", (1, 1))
    newest = fake_run(tmp_path / folder / "newest")
    assert resolve_run(None) == Path(folder) / "newest"
    assert resolve_run(None, cwd=tmp_path) == newest
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["predict", "empty"])
    assert result.exit_code == 2  # the study is empty; the run was found first
    assert result.stderr.splitlines()[0] == (
        f"using the newest trained run, {Path(folder) / 'newest'} (--model chooses another)")
    given = runner.invoke(app, ["predict", "empty", "--model", str(old)])
    assert "using the newest" not in given.stderr
