"""Run-directory evaluation on a fake run: metrics, same patients, honest verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseq.errors import CacheError
from medseq.evaluation.baseline import out_of_fold_baseline, relative_volume_change
from medseq.evaluation.evaluate import EvaluationSettings, evaluate_run, verdict
from tests.fake_run import write_fake_run

FAST = EvaluationSettings(n_bootstrap=200)


def evaluate(run_dir: Path) -> dict:
    """The evaluation document of ``run_dir`` in its JSON form, as evaluation.json holds it."""
    return evaluate_run(run_dir, FAST).model_dump(mode="json")


def test_evaluate_reports_pooled_and_per_fold_side_by_side(tmp_path: Path) -> None:
    rows = write_fake_run(tmp_path / "run", n_patients=40, n_folds=4)
    doc = evaluate(tmp_path / "run")
    assert doc["n_patients"] == 40
    assert doc["n_responders"] == 20
    assert [f["fold"] for f in doc["folds"]] == [0, 1, 2, 3]
    assert sum(f["n_patients"] for f in doc["folds"]) == 40
    for side in ("model", "baseline"):
        m = doc["pooled"][side]
        assert 0.0 <= m["auc"] <= 1.0
        lo, hi = m["auc_ci"]
        assert lo <= m["auc"] <= hi
        assert sum(m["confusion"].values()) == 40
        assert 0.0 <= m["brier"] <= 1.0
    probs = {r["patient_id"]: r["probability"] for r in rows}
    assert {p["patient_id"]: p["probability"] for p in doc["patients"]} == probs
    assert doc["pooled"]["forecast"]["n_pairs"] == 80
    assert doc["pooled"]["forecast"]["mae_ml"] > 0
    assert doc["verdict"].startswith("the model")
    assert "DeLong p=" in doc["verdict"]
    assert doc["model"]["config_hash"] == "sha256:abc"
    json.dumps(doc)  # serialisable


def test_a_useless_model_does_not_beat_the_baseline(tmp_path: Path) -> None:
    write_fake_run(tmp_path / "run", n_patients=60, model_strength=0.0, seed=3)
    doc = evaluate(tmp_path / "run")
    assert doc["pooled"]["baseline"]["auc"] > 0.8
    assert not doc["verdict"].startswith("the model beats")


def test_baseline_uses_the_runs_folds_out_of_fold() -> None:
    features = {"a": -0.5, "b": -0.4, "c": 0.2, "d": 0.3, "e": -0.6, "f": 0.1}
    labels = {"a": 1, "b": 1, "c": 0, "d": 0, "e": 1, "f": 0}
    folds = {"a": 0, "b": 1, "c": 0, "d": 1, "e": 2, "f": 2}
    probs, models = out_of_fold_baseline(features, labels, folds)
    assert set(probs) == set(features)
    assert sorted(models) == [0, 1, 2]
    assert all(m.n_train == 4 for m in models.values())
    assert probs["a"] > probs["c"]


def test_relative_volume_change() -> None:
    assert relative_volume_change([10.0, 5.0, 1.0]) == pytest.approx(-0.5)
    assert relative_volume_change([10.0]) is None
    assert relative_volume_change([0.0, 5.0]) == 10.0  # clipped


def test_unlabelled_and_single_scan_patients_are_excluded_from_both(tmp_path: Path) -> None:
    rows = write_fake_run(tmp_path / "run", n_patients=20)
    rows[0]["label"] = None
    rows[1]["burden_ml"] = [3.0]
    (tmp_path / "run" / "predictions.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows))
    doc = evaluate(tmp_path / "run")
    assert doc["n_patients"] == 18
    assert {e["patient_id"] for e in doc["excluded"]} == {"p000", "p001"}


def test_verdict_wording() -> None:
    assert verdict({"auc_difference": 0.1, "p_value": 0.01}).startswith("the model beats")
    assert verdict({"auc_difference": 0.1, "p_value": 0.2}).startswith(
        "the model does not beat the size-only baseline")
    assert verdict({"auc_difference": -0.2, "p_value": 0.001}).startswith("the model is worse")
    assert "only one class" in verdict({"auc_difference": None, "p_value": None})


def test_missing_or_broken_run_is_a_cache_error(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="no such run"):
        evaluate_run(tmp_path / "nope", FAST)
    (tmp_path / "run").mkdir()
    with pytest.raises(CacheError, match=r"predictions\.jsonl"):
        evaluate_run(tmp_path / "run", FAST)
    (tmp_path / "run" / "predictions.jsonl").write_text('{"patient_id": "a"}\n')
    with pytest.raises(CacheError, match="line 1"):
        evaluate_run(tmp_path / "run", FAST)


def test_verdict_warns_when_the_cohort_is_too_small_to_compare() -> None:
    small = verdict({"auc_difference": 0.4, "p_value": 0.01}, n_patients=12, n_responders=5)
    assert small.startswith("the model beats")
    assert "not reliable" in small
    big = verdict({"auc_difference": 0.4, "p_value": 0.01}, n_patients=120, n_responders=40)
    assert "not reliable" not in big
