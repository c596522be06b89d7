"""Whole runs: outputs, reproducibility for a seed, exact resume after a kill."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from medseq.errors import CacheError, InputDataError, UsageError
from medseq.models.inference import load_model, predict_patient
from medseq.training import checkpoint as ckpt
from medseq.training.dataset import load_crops
from medseq.training.loop import InjectedStopError
from medseq.training.run import train_run
from tests.models.recurrent_probe import assert_fp32_outside_autocast, recurrent_calls
from tests.training.conftest import tiny_config
from tests.training.fake_cache import write_fake_cache


def _metrics(run: Path) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


def _weights(path: Path) -> dict[str, object]:
    return dict(load_file(str(path)))


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert wa[name].equal(wb[name]), name  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def unbroken(fake_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "unbroken"
    before = os.umask(0o022)  # the usual umask: a plain copy of salt.key would be 0644
    try:
        train_run(fake_cache, run, tiny_config(), progress=False)
    finally:
        os.umask(before)
    return run


def test_run_directory_contents(unbroken: Path, fake_cache: Path) -> None:
    for name in ("config.yaml", "splits.json", "metrics.jsonl", "predictions.jsonl",
                 "model.safetensors", "model.json", "salt.key", "log.txt",
                 "folds/0/model.safetensors", "folds/1/model.json"):
        assert (unbroken / name).is_file(), name
    assert not (unbroken / "checkpoint").exists()
    splits = json.loads((unbroken / "splits.json").read_text())
    assert len(splits["folds"]) == 12
    assert splits["excluded"] == {"Q000": "no lesion crops"}
    predictions = [json.loads(x) for x in (unbroken / "predictions.jsonl").read_text().splitlines()]
    assert [p["patient_id"] for p in predictions] == sorted(splits["folds"])
    manifest = json.loads((fake_cache / "manifest.json").read_text())
    for p in predictions:
        assert p["fold"] == splits["folds"][p["patient_id"]]
        assert 0 <= p["probability"] <= 1
        record = manifest["patients"][p["patient_id"]]
        assert p["days"] == [tp["days"] for tp in record["timepoints"]]
        assert p["burden_ml"] == [tp["lesion_volume_ml"] for tp in record["timepoints"]]
        assert len(p["forecast_ml"]) == p["observed"] == len(record["timepoints"])
    card = json.loads((unbroken / "model.json").read_text())
    assert card["preprocess_config_hash"] == "sha256:fake"
    assert card["fold"] is None
    assert len(card["train_patients"]) == 12
    assert card["inputs"]["crop_shape"] == [2, 12, 12, 12]
    fold_card = json.loads((unbroken / "folds/1/model.json").read_text())
    held_out = {p for p, f in splits["folds"].items() if f == 1}
    assert not held_out & set(fold_card["train_patients"])
    assert (unbroken / "salt.key").read_bytes() == (fake_cache / "salt.key").read_bytes()
    assert (unbroken / "salt.key").stat().st_mode & 0o777 == 0o600  # like the cache's copy


def test_fold_model_reproduces_its_out_of_fold_probability(unbroken: Path, fake_cache: Path
                                                           ) -> None:
    manifest = json.loads((fake_cache / "manifest.json").read_text())
    first = json.loads((unbroken / "predictions.jsonl").read_text().splitlines()[0])
    model = load_model(unbroken / "folds" / str(first["fold"]))
    from medseq.contracts.cache import PatientRecord

    record = PatientRecord.model_validate(manifest["patients"][first["patient_id"]])
    crops = load_crops(fake_cache, record)
    out = predict_patient(model, crops, [tp.days for tp in record.timepoints])
    assert out["probability"] == pytest.approx(first["probability"], abs=1e-5)


def test_same_seed_same_splits_metrics_and_weights(unbroken: Path, fake_cache: Path,
                                                   tmp_path: Path) -> None:
    again = tmp_path / "again"
    train_run(fake_cache, again, tiny_config(), progress=False)
    assert (again / "splits.json").read_text() == (unbroken / "splits.json").read_text()
    assert _metrics(again) == _metrics(unbroken)
    _same_weights(again / "model.safetensors", unbroken / "model.safetensors")
    assert (again / "predictions.jsonl").read_text() == (unbroken / "predictions.jsonl").read_text()


@pytest.mark.parametrize("stop_after", [4, 7])
def test_resume_after_a_kill_matches_an_unbroken_run(
    unbroken: Path, fake_cache: Path, tmp_path: Path, stop_after: int
) -> None:
    run = tmp_path / "killed"
    # 4: killed in fold 2 (fold 1 ran its 3 epochs): one fold saved, one checkpoint mid-fold.
    # 7: killed in the final model, after both folds.
    with pytest.raises(InjectedStopError):
        train_run(fake_cache, run, tiny_config(), progress=False, stop_after_epochs=stop_after)
    assert (run / "folds/0/result.json").is_file()
    assert (run / "folds/1/result.json").is_file() == (stop_after == 7)
    assert (run / "checkpoint" / "state.json").is_file()
    assert not (run / "model.safetensors").exists()
    train_run(fake_cache, run, tiny_config(), resume=True, progress=False)
    _same_weights(run / "model.safetensors", unbroken / "model.safetensors")
    for k in (0, 1):
        _same_weights(run / f"folds/{k}/model.safetensors",
                      unbroken / f"folds/{k}/model.safetensors")
    assert _metrics(run) == _metrics(unbroken)
    assert (run / "predictions.jsonl").read_text() == (unbroken / "predictions.jsonl").read_text()


def test_kill_between_tensors_and_record_resumes_the_last_whole_epoch(
    unbroken: Path, fake_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "killed"
    commits = []
    real_write = ckpt.write_text_atomic

    def killed_at_fifth_record(path: Path, text: str) -> None:
        commits.append(path)
        if len(commits) == 5:  # fold 2, epoch 2: its tensors are on disk, its record is not
            raise KeyboardInterrupt
        real_write(path, text)

    monkeypatch.setattr(ckpt, "write_text_atomic", killed_at_fifth_record)
    with pytest.raises(KeyboardInterrupt):
        train_run(fake_cache, run, tiny_config(), progress=False)
    monkeypatch.undo()
    folder = run / "checkpoint"
    state = json.loads((folder / "state.json").read_text())
    assert (state["fold"], state["epoch"]) == ("1", 1)
    tensors = sorted(folder.glob("*.safetensors"))
    assert len(tensors) == 2  # the committed epoch and the uncommitted one beside it

    # The same torn state as the old two-rename layout: new tensors under the recorded name.
    torn = tmp_path / "torn"
    shutil.copytree(run, torn)
    newer = next(p for p in tensors if p.name != state["tensors"]["file"])
    shutil.copy(torn / "checkpoint" / newer.name, torn / "checkpoint" / state["tensors"]["file"])
    with pytest.raises(CacheError, match=r"torn checkpoint: tensors-\w+\.safetensors does not"):
        train_run(fake_cache, torn, tiny_config(), resume=True, progress=False)
    # A checkpoint without a commit record (an older medseq's) is refused, not trusted.
    del state["tensors"]
    (torn / "checkpoint" / "state.json").write_text(json.dumps(state))
    with pytest.raises(CacheError, match="without a commit record"):
        train_run(fake_cache, torn, tiny_config(), resume=True, progress=False)

    train_run(fake_cache, run, tiny_config(), resume=True, progress=False)
    _same_weights(run / "model.safetensors", unbroken / "model.safetensors")
    assert _metrics(run) == _metrics(unbroken)
    assert not (run / "checkpoint").exists()


def test_existing_run_needs_resume(unbroken: Path, fake_cache: Path) -> None:
    with pytest.raises(UsageError, match="--resume"):
        train_run(fake_cache, unbroken, tiny_config(), progress=False)


def test_one_class_only_is_an_input_error(tmp_path: Path) -> None:
    cache = write_fake_cache(tmp_path / "cache", n_patients=4, size=8)
    csv = tmp_path / "labels.csv"
    csv.write_text("patient_id,label\n" + "".join(f"P{i:03d},1\n" for i in range(4)))
    with pytest.raises(InputDataError, match="all 4 labelled patients are responders"):
        train_run(cache, tmp_path / "run", tiny_config(), labels_csv=csv, progress=False)


def test_bf16_autocast_trains_on_cpu(fake_cache: Path, tmp_path: Path) -> None:
    # The CUDA path's autocast, exercised where CI can run it. On CPUs without BF16 instructions
    # a bf16 LSTM crashes in oneDNN; the probe checks on every CPU that the recurrent layer runs
    # in fp32 outside autocast (training, validation and test predictions).
    config = tiny_config(epochs=1, amp="bf16", final_model=False)
    with recurrent_calls() as calls:
        summary = train_run(fake_cache, tmp_path / "run", config, progress=False)
    assert_fp32_outside_autocast(calls)
    assert summary.patients == 12
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < r["train_loss"] < 10 for r in rows)
