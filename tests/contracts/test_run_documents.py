"""The run directory's contracts: one writer, one reader, versions checked, old files read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseq.contracts.run import (
    EpochRow,
    FoldPrediction,
    FoldResultDocument,
    ModelCard,
    ModelConfig,
    ModelInputs,
    PredictionLine,
    Splits,
    read_card,
    read_fold_result,
    read_metrics,
    read_predictions,
    read_splits,
    write_card,
    write_fold_result,
    write_metrics,
    write_predictions,
    write_splits,
)
from medseq.errors import CacheError
from medseq.evaluation.rundir import find_cache


def _splits() -> Splits:
    return Splits(seed=3, folds_count=2, config_hash="sha256:c", label_source="manifest",
                  label_names=["non-responder", "responder"], excluded={"Q": "no label"},
                  excluded_summary="excluded 1: 1 no label", labels={"A": 1, "B": 0},
                  folds={"A": 0, "B": 1})


def test_every_run_document_round_trips(tmp_path: Path) -> None:
    write_splits(tmp_path, _splits())
    assert read_splits(tmp_path) == _splits()
    card = ModelCard(architecture=ModelConfig(hidden=8, measurements=False),
                     label_names=["a", "b"], inputs=ModelInputs(observe=2))
    write_card(tmp_path, card)
    assert read_card(tmp_path) == card
    assert read_card(tmp_path / "model.safetensors") == card  # beside the weights file
    lines = [PredictionLine(patient_id="A", fold=0, label=1, responder=1, probability=0.25,
                            days=[0, 30], burden_ml=[2.0, None], forecast_ml=[1.0, 0.5])]
    write_predictions(tmp_path, lines)
    assert read_predictions(tmp_path) == lines
    rows = [EpochRow(fold="0", epoch=1, train_loss=0.5, val_auc=None),
            EpochRow(fold="all", epoch=1, train_loss=0.4)]
    write_metrics(tmp_path, rows)
    assert read_metrics(tmp_path) == rows
    assert "val_loss" not in (tmp_path / "metrics.jsonl").read_text()  # only the keys given
    (tmp_path / "folds" / "0").mkdir(parents=True)
    result = FoldResultDocument(fold="0", best_epoch=1, epochs_run=1, history=rows[:1],
                                predictions={"A": FoldPrediction(probability=0.25, observed=2,
                                                                 forecast_ml=[1.0, 0.5])})
    write_fold_result(tmp_path, result)
    assert read_fold_result(tmp_path, 0) == result
    for name in ("splits.json", "model.json", "folds/0/result.json"):
        assert next(iter(json.loads((tmp_path / name).read_text()))) == "schema_version"
    for name in ("predictions.jsonl", "metrics.jsonl"):
        assert all(line.startswith('{"schema_version": 1,')
                   for line in (tmp_path / name).read_text().splitlines())


def test_newer_schema_versions_are_refused_in_one_line(tmp_path: Path) -> None:
    write_splits(tmp_path, _splits())
    data = json.loads((tmp_path / "splits.json").read_text())
    data["schema_version"] = 2
    (tmp_path / "splits.json").write_text(json.dumps(data))
    with pytest.raises(CacheError) as info:
        read_splits(tmp_path)
    assert str(info.value) == (f"{tmp_path / 'splits.json'}: schema version 2 is newer than "
                               "this medseq reads (1); upgrade medseq")
    (tmp_path / "predictions.jsonl").write_text(
        '{"schema_version": 1, "patient_id": "A", "probability": 0.5}\n'
        '{"schema_version": 7, "patient_id": "B", "probability": 0.5}\n')
    with pytest.raises(CacheError, match="schema version 7 is newer"):
        read_predictions(tmp_path)


def test_documents_without_schema_version_read_as_version_1(tmp_path: Path) -> None:
    """As written before versioning (the same shape)."""
    (tmp_path / "splits.json").write_text(json.dumps({"seed": 0, "folds": {"A": 1}}))
    assert read_splits(tmp_path).folds == {"A": 1}
    (tmp_path / "model.json").write_text(json.dumps({"architecture": {}, "label_names": []}))
    assert read_card(tmp_path).schema_version == 1
    (tmp_path / "predictions.jsonl").write_text('{"patient_id": "A", "probability": 0.5}\n')
    assert read_predictions(tmp_path)[0].patient_id == "A"


def test_a_version_1_model_card_is_read_in_the_current_shape(tmp_path: Path) -> None:
    """Version 1 kept the inputs at the top level; they move into ``inputs`` when read, and the
    architecture is the one it had (first block normalised, no measurements)."""
    v1 = {"schema_version": 1, "format": 1, "architecture": {"hidden": 8},
          "label_names": ["non-responder", "responder"], "observe": 2,
          "crop_shape": [2, 8, 8, 8], "input_size": 4, "epochs": 3}
    (tmp_path / "model.json").write_text(json.dumps(v1))
    card = read_card(tmp_path)
    assert card.schema_version == 1  # as read
    assert card.inputs == ModelInputs(observe=2, crop_shape=[2, 8, 8, 8], input_size=4)
    assert card.inputs.channels == ["image", "mask"]
    assert card.inputs.features == ["days", "days_since_previous"]
    assert card.epochs == 3
    assert card.architecture.hidden == 8
    assert card.architecture.first_block_norm
    assert not card.architecture.measurements
    assert not card.architecture.pool_stats
    write_card(tmp_path / "again", card)
    written = json.loads((tmp_path / "again" / "model.json").read_text())
    assert written["schema_version"] == 3
    assert written["inputs"]["observe"] == 2
    assert not {"observe", "crop_shape", "input_size"} & set(written)
    del v1["schema_version"]  # before versioning: the version-1 shape
    (tmp_path / "model.json").write_text(json.dumps(v1))
    assert read_card(tmp_path).inputs.input_size == 4
    v2 = {**written, "schema_version": 2,
          "architecture": {k: v for k, v in written["architecture"].items()
                           if k not in ("first_block_norm", "measurements", "pool_stats")}}
    (tmp_path / "model.json").write_text(json.dumps(v2))
    assert read_card(tmp_path).architecture.first_block_norm  # version 2 had it built in


def test_model_cards_of_unknown_versions_or_inconsistent_inputs_are_refused(
    tmp_path: Path
) -> None:
    card = ModelCard(architecture=ModelConfig(measurements=False), label_names=[])
    write_card(tmp_path, card)
    data = json.loads((tmp_path / "model.json").read_text())
    assert data["schema_version"] == 3
    (tmp_path / "model.json").write_text(json.dumps({**data, "schema_version": 4}))
    with pytest.raises(CacheError) as info:
        read_card(tmp_path)
    assert str(info.value) == (f"{tmp_path / 'model.json'}: schema version 4 is newer than "
                               "this medseq reads (3); upgrade medseq")
    for inputs, message in [({"crop_shape": [1, 8, 8, 8]}, "does not hold 2 channels"),
                            ({"channels": ["mask", "image"]}, "this medseq feeds image, mask"),
                            ({"features": ["days"]}, "feeds days, days_since_previous")]:
        (tmp_path / "model.json").write_text(json.dumps({**data, "inputs": inputs}))
        with pytest.raises(CacheError, match=message):
            read_card(tmp_path)
    # A version-2 key in a version-1 card is not guessed at.
    (tmp_path / "model.json").write_text(json.dumps(
        {**data, "schema_version": 1, "observe": 2}))
    with pytest.raises(CacheError, match="invalid observe"):
        read_card(tmp_path)


def test_unknown_keys_and_the_old_splits_shapes_are_refused(tmp_path: Path) -> None:
    """One shape of splits.json: the ``patients`` / list-of-folds guesses are gone."""
    (tmp_path / "splits.json").write_text(json.dumps({"patients": {"A": 0}}))
    with pytest.raises(CacheError, match="invalid patients"):
        read_splits(tmp_path)
    (tmp_path / "predictions.jsonl").write_text(
        '{"patient_id": "A", "probability": 1.5}\n')
    with pytest.raises(CacheError, match="line 1 at probability"):
        read_predictions(tmp_path)


def test_the_cache_is_found_where_splits_json_says(tmp_path: Path) -> None:
    run, cache = tmp_path / "run", tmp_path / "cache"
    run.mkdir()
    cache.mkdir()
    assert find_cache(run) is None
    write_splits(run, Splits(cache=str(cache)))
    assert find_cache(run) is None  # not a cache: no manifest.json
    (cache / "manifest.json").write_text("{}")
    assert find_cache(run) == cache.resolve()
    write_splits(run, Splits(cache="cache"))  # relative: from the run's parent
    assert find_cache(run) == cache.resolve()
