"""``medseq train`` on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from medseq.cli import app
from tests.training.conftest import tiny_config
from tests.training.fake_cache import write_fake_cache

runner = CliRunner()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_cache(tmp_path_factory.mktemp("cli") / "cache", n_patients=8, size=8)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(tiny_config(epochs=2).model_dump(mode="json")))
    return path


def test_print_config_shows_defaults_and_overrides() -> None:
    result = runner.invoke(app, ["train", "--print-config", "--folds", "3", "--seed", "7"])
    assert result.exit_code == 0, result.stderr
    settings = yaml.safe_load(result.stdout)
    assert settings["folds"] == 3
    assert settings["seed"] == 7
    assert settings["model"]["cell"] == "lstm"
    assert settings["model"]["time"] == "concat"


def test_train_writes_a_run_and_resume_of_a_finished_run_keeps_it(
    cache: Path, config_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(cache), "-o", str(run), "--config",
                                 str(config_file), "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "out-of-fold AUC" in result.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 1
    before = (run / "model.safetensors").read_bytes()
    metrics = (run / "metrics.jsonl").read_text()
    assert '"fold": "all"' in metrics
    again = runner.invoke(app, ["train", str(cache), "-o", str(run), "--resume", "-q"])
    assert again.exit_code == 0, again.stderr
    assert (run / "model.safetensors").read_bytes() == before
    assert (run / "metrics.jsonl").read_text() == metrics
    assert len((run / "predictions.jsonl").read_text().splitlines()) == 8


def test_labels_csv_with_progress_lines(cache: Path, config_file: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("patient_id,label\n" + "".join(
        f"P{i:03d},{int(i < 4)}\n" for i in range(8)))
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(cache), "-o", str(run), "--config",
                                 str(config_file), "--labels", str(labels), "--epochs", "1"])
    assert result.exit_code == 0, result.stderr
    assert "labels from csv:" in result.stderr
    # stderr is no terminal here: plain progress lines, every epoch in log.txt
    assert "fold 1/2: 1/1 epochs (100%)" in result.stderr
    assert "; loss " in result.stderr
    assert "fold 1/2 epoch 1: loss" in (run / "log.txt").read_text()
    splits = json.loads((run / "splits.json").read_text())
    assert splits["labels"]["P000"] == 1
    assert splits["labels"]["P007"] == 0


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--resume", "--epochs", "3"], 1, "drop --epochs"),
    (["--config", "missing.yaml"], 1, "cannot read config"),
    (["--device", "tpu"], 1, "setting device"),
])
def test_usage_errors(cache: Path, tmp_path: Path, args: list[str], code: int, message: str
                      ) -> None:
    result = runner.invoke(app, ["train", str(cache), "-o", str(tmp_path / "run"), *args])
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_not_a_cache_is_exit_code_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(tmp_path), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "not a medseq cache" in result.stderr


def test_unlabelled_cache_without_tracking_results_is_explained(tmp_path: Path) -> None:
    cache = write_fake_cache(tmp_path / "c", n_patients=4, size=8)
    labels = tmp_path / "labels.csv"
    labels.write_text("patient_id,label\nP000,0\nP001,0\n")
    result = runner.invoke(app, ["train", str(cache), "-o", str(tmp_path / "run"),
                                 "--labels", str(labels), "--folds", "2"])
    assert result.exit_code == 2
    assert "all 2 labelled patients are non-responders" in result.stderr


def test_ctrl_c_says_how_to_resume_and_that_command_finishes_the_run(
    cache: Path, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shlex

    from medseq.training import loop

    real = loop._train_epoch
    calls = []

    def interrupted_second_epoch(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "_train_epoch", interrupted_second_epoch)
    run = tmp_path / "my run"
    result = runner.invoke(app, ["train", str(cache), "-o", str(run), "--config",
                                 str(config_file), "-q"])
    assert result.exit_code == 130
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: interrupted; ")
    command = lines[0].split("continue with: ", 1)[1]
    assert command == shlex.join(["medseq", "train", str(cache), "-o", str(run), "--resume"])
    monkeypatch.setattr(loop, "_train_epoch", real)
    again = runner.invoke(app, shlex.split(command)[1:])
    assert again.exit_code == 0, again.stderr
    assert (run / "model.safetensors").is_file()
    folds = [json.loads(x)["fold"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert folds[:4] == ["0", "0", "1", "1"]


def test_ctrl_c_before_the_run_starts_has_nothing_to_resume(
    cache: Path, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medseq.training import run as run_module

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_run", interrupted)
    result = runner.invoke(app, ["train", str(cache), "-o", str(tmp_path / "run"), "--config",
                                 str(config_file)])
    assert result.exit_code == 130
    assert result.stderr == "error: interrupted before the run started; nothing to resume\n"


def test_every_run_document_has_a_schema_version_and_older_ones_still_read(
    cache: Path, config_file: Path, tmp_path: Path
) -> None:
    from medseq.contracts.run import read_card
    from medseq.evaluation.rundir import read_predictions, read_splits

    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(cache), "-o", str(run), "--config",
                                 str(config_file), "--epochs", "1", "-q"])
    assert result.exit_code == 0, result.stderr
    files = [run / "splits.json", run / "model.json", run / "folds" / "0" / "model.json",
             run / "folds" / "0" / "result.json"]
    for path in files:
        version = 3 if path.name == "model.json" else 1  # model.json: v3 (early prediction)
        assert json.loads(path.read_text())["schema_version"] == version, path
    for name in ("metrics.jsonl", "predictions.jsonl"):
        lines = (run / name).read_text().splitlines()
        assert lines, name
        assert all(json.loads(x)["schema_version"] == 1 for x in lines), name
    from medseq.contracts.cache import read_manifest
    from medseq.models.inference import load_model, predict_patient
    from medseq.training.dataset import load_crops

    record = read_manifest(cache).ok_patients()[0]
    days = [tp.days for tp in record.timepoints]
    before = predict_patient(load_model(run), load_crops(cache, record), days)
    # Files from before versioning (no schema_version) are read as before; model.json then
    # had the version-1 shape (the inputs at the top level).
    for path in files:
        doc = json.loads(path.read_text())
        del doc["schema_version"]
        if path.name == "model.json":
            doc.update(doc.pop("inputs"))
            del doc["channels"], doc["features"]
            for key in ("lesion_measurements", "scan_measurements", "crop_spacing_mm",
                        "hu_offset", "hu_scale"):  # added by version 3
                del doc[key]
            del doc["label"]
        path.write_text(json.dumps(doc))
    for name in ("metrics.jsonl", "predictions.jsonl"):
        rows = [json.loads(x) for x in (run / name).read_text().splitlines()]
        (run / name).write_text("".join(
            json.dumps({k: v for k, v in r.items() if k != "schema_version"}) + "\n"
            for r in rows))
    assert len(read_predictions(run)) == 8
    assert len(read_splits(run)) == 8
    assert read_card(run).schema_version == 1
    assert "crop_shape" in json.loads((run / "model.json").read_text())  # the v1 shape
    assert predict_patient(load_model(run), load_crops(cache, record), days) == before
    evaluated = runner.invoke(app, ["evaluate", str(run), "--json", "--bootstrap", "100"])
    assert evaluated.exit_code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["schema_version"] == 1


def test_observe_and_label_options_override_the_settings() -> None:
    result = runner.invoke(app, ["train", "--print-config", "--observe", "3", "--label",
                                 "progression"])
    assert result.exit_code == 0, result.stderr
    settings = yaml.safe_load(result.stdout)
    assert settings["observe"] == 3
    assert settings["label"]["kind"] == "progression"
    every = yaml.safe_load(runner.invoke(app, ["train", "--print-config", "--observe", "0",
                                               "--label", "overall"]).stdout)
    assert every["observe"] is None
    default = yaml.safe_load(runner.invoke(app, ["train", "--print-config"]).stdout)
    assert (default["observe"], default["label"]["kind"]) == (2, "best_after")
    bad = runner.invoke(app, ["train", "--print-config", "--label", "someday"])
    assert bad.exit_code == 1  # a usage error
    assert "label.kind" in bad.stderr
    assert "Traceback" not in bad.stderr
