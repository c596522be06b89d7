"""`medseq evaluate` in-process on a fake run directory."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from medseq.cli import app
from tests.fake_run import write_fake_run

runner = CliRunner()


def test_evaluate_writes_evaluation_json_and_prints_it(tmp_path: Path) -> None:
    rows = write_fake_run(tmp_path / "run")
    result = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--json", "--bootstrap", "200"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    on_disk = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert doc == on_disk
    assert doc["n_patients"] == len(rows)
    assert set(doc["pooled"]) == {"model", "baseline", "comparison", "forecast", "feature_model",
                                  "comparisons", "survival"}
    assert doc["pooled"]["feature_model"] is None  # no features in these predictions
    assert doc["pooled"]["comparison"]["test"] == "DeLong"
    assert not list((tmp_path / "run").glob(".*tmp*"))


def test_evaluate_table_has_both_columns_and_the_verdict(tmp_path: Path) -> None:
    write_fake_run(tmp_path / "run")
    result = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--bootstrap", "200"])
    assert result.exit_code == 0, result.stderr
    assert "size-only baseline" in result.stdout
    assert "AUC (95% CI)" in result.stdout
    assert "Verdict: the model" in result.stdout


def test_evaluate_missing_run_exits_2_with_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ")


def test_evaluate_shows_every_baseline_the_task_and_the_tests(tmp_path: Path) -> None:
    write_fake_run(tmp_path / "run", n_patients=30, n_folds=3, features=True, progression=True,
                   determined={"x1": "PD at scan 2"})
    result = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--bootstrap", "100"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for text in ("size-only baseline", "feature model", "model vs size-only",
                 "model vs feature model", "feature model vs size-only",
                 "persistence (last burden carried forward)", "model beats persistence:",
                 "label progression, observed first 2 scans; 1 excluded as already decided",
                 "C-index (95% CI)", "time-dependent AUC at", "AUC feature"):
        assert text in out, text
    assert "Verdict: the model" in out
    assert "classical feature model" in out
    doc = json.loads((tmp_path / "run" / "evaluation.json").read_text())  # what --json prints
    assert doc["task"] == {"label_kind": "progression", "observe": 2, "n_determined": 1}
    assert doc["pooled"]["feature_model"] is not None
    assert len(doc["pooled"]["comparisons"]) == 3
    assert doc["pooled"]["survival"]["model"]["c_index"] is not None
