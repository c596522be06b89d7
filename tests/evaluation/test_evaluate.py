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


def test_feature_model_sits_beside_size_only_on_the_same_folds(tmp_path: Path) -> None:
    import math

    import numpy as np
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = write_fake_run(tmp_path / "run", n_patients=40, n_folds=4, features=True)
    doc = evaluate(tmp_path / "run")
    # the direct out-of-fold computation: median impute, standardise, L2 logistic C=1
    names = ["lesion_count", "log_burden_ratio", "mean_hu_change", "rim_hu_change"]
    x = np.array([[r["features"][n] for n in names] for r in rows])
    y = np.array([r["label"] for r in rows])
    f = np.array([r["fold"] for r in rows])
    oof = np.empty(len(rows))
    for fold in range(4):
        pipe = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                             LogisticRegression(C=1.0, max_iter=1000))
        oof[f == fold] = pipe.fit(x[f != fold], y[f != fold]).predict_proba(x[f == fold])[:, 1]
    feature = doc["pooled"]["feature_model"]
    assert feature["auc"] == pytest.approx(roc_auc_score(y, oof))
    assert [p["feature_probability"] for p in doc["patients"]] == pytest.approx(list(oof))
    assert feature["brier"] == pytest.approx(np.mean((oof - y) ** 2))
    assert feature["balanced_accuracy"] is not None
    assert feature["auc_ci"] is not None
    pairs = [(c["first"], c["second"]) for c in doc["pooled"]["comparisons"]]
    assert pairs == [("model", "size-only"), ("model", "feature model"),
                     ("feature model", "size-only")]
    assert all(0 <= c["p_value"] <= 1 for c in doc["pooled"]["comparisons"])
    assert all(fold["feature_model"]["n"] == 10 for fold in doc["folds"])
    assert "classical feature model" in doc["verdict"]
    assert "C=1" in doc["settings"]["feature_baseline"]
    assert doc["task"] == {"label_kind": "overall", "observe": 2, "n_determined": 0}
    assert not math.isnan(feature["auc"])


def test_progression_runs_report_c_index_and_time_dependent_auc(tmp_path: Path) -> None:
    import numpy as np

    from medseq.evaluation import survival

    rows = write_fake_run(tmp_path / "run", n_patients=30, n_folds=3, features=True,
                          progression=True)
    doc = evaluate(tmp_path / "run")
    s = doc["pooled"]["survival"]
    t = np.array([r["time_days"] for r in rows])
    e = np.array([r["event"] for r in rows])
    size = [relative_volume_change(r["burden_ml"]) for r in rows]
    at = float(np.median(t[e]))
    assert s["at_days"] == at
    assert s["n"] == 30
    assert s["n_events"] == 15
    assert s["model"]["c_index"] == pytest.approx(
        survival.concordance_index(t, e, [r["risk"] for r in rows]))
    assert s["baseline"]["c_index"] == pytest.approx(survival.concordance_index(t, e, size))
    assert s["baseline"]["td_auc"] == pytest.approx(
        survival.cumulative_dynamic_auc(t, e, size, at))
    lo, hi = s["model"]["c_index_ci"]
    assert lo <= s["model"]["c_index"] <= hi
    feature_p = [p["feature_probability"] for p in doc["patients"]]
    logit = np.log(np.array(feature_p) / (1 - np.array(feature_p)))
    assert s["feature_model"]["c_index"] == pytest.approx(
        survival.concordance_index(t, e, logit))
    assert doc["task"]["label_kind"] == "progression"
    assert "C-index model" in doc["verdict"]


def test_patients_already_decided_are_counted_and_left_out(tmp_path: Path) -> None:
    write_fake_run(tmp_path / "run", n_patients=20, determined={"p003": "PR at scan 2",
                                                                "zz9": "PD at scan 1"})
    doc = evaluate(tmp_path / "run")
    assert doc["task"]["n_determined"] == 2
    assert doc["n_patients"] == 19
    assert doc["excluded"] == [{"patient_id": "p003",
                                "reason": "label already decided by the observed scans"}]


def test_forecast_is_compared_with_persistence(tmp_path: Path) -> None:
    write_fake_run(tmp_path / "good", n_patients=30)
    write_fake_run(tmp_path / "bad", n_patients=30, forecast_noise=1.5)
    good = evaluate(tmp_path / "good")["pooled"]["forecast"]
    bad = evaluate(tmp_path / "bad")["pooled"]["forecast"]
    assert good["persistence"]["beats"] is True
    assert good["mae_ml"] < good["persistence"]["mae_ml"]
    assert bad["persistence"]["beats"] is False
    assert good["persistence"]["mae_ml"] == bad["persistence"]["mae_ml"]  # same scans
    lo, hi = good["persistence"]["mae_ci"]
    assert lo <= good["persistence"]["mae_ml"] <= hi


def test_verdict_says_how_the_model_compares_with_the_feature_model() -> None:
    base = {"auc_difference": 0.15, "p_value": 0.01}
    assert "it is worse than the classical feature model" in verdict(
        base, feature_comparison={"auc_difference": -0.1, "p_value": 0.02})
    assert "not significantly different from the classical feature model" in verdict(
        base, feature_comparison={"auc_difference": -0.02, "p_value": 0.6})
    assert "it beats the classical feature model" in verdict(
        base, feature_comparison={"auc_difference": 0.1, "p_value": 0.001})


def test_full_feature_baseline_is_fitted_on_every_usable_training_patient(tmp_path: Path
                                                                          ) -> None:
    from medseq.errors import InputDataError
    from medseq.evaluation.evaluate import fit_full_feature_baseline
    from medseq.evaluation.rundir import read_predictions

    write_fake_run(tmp_path / "run", n_patients=20, features=True)
    model = fit_full_feature_baseline(read_predictions(tmp_path / "run"))
    assert model.n_train == 20
    assert list(model.coefficients) == ["lesion_count", "log_burden_ratio", "mean_hu_change",
                                        "rim_hu_change"]
    write_fake_run(tmp_path / "plain", n_patients=6)
    with pytest.raises(InputDataError, match="feature baseline cannot be fitted"):
        fit_full_feature_baseline(read_predictions(tmp_path / "plain"))
