"""Early prediction training: losses, settings that must be refused, steps, measurements and
progression labels end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from medseq.contracts.cache import read_manifest
from medseq.contracts.run import ModelConfig, read_card, read_predictions
from medseq.errors import UsageError
from medseq.evaluation.evaluate import EvaluationSettings, evaluate_run
from medseq.models.encoder import Flatten, SmallCNN, build_encoder, embedding_size
from medseq.models.sequence import LesionPool, SequenceOutput
from medseq.tracking.outputs import tracks_document
from medseq.tracking.stored import input_hash, store_tracks
from medseq.training.config import TrainConfig
from medseq.training.loop import loss_kind, loss_terms
from medseq.training.run import train_run
from tests.training.conftest import tiny_config
from tests.training.fake_cache import write_fake_cache
from tests.training.test_targets import PD, SD, course


def _batch(labels: list[int]) -> dict[str, torch.Tensor]:
    n = len(labels)
    return {"label": torch.tensor(labels), "time": torch.arange(1.0, n + 1),
            "forecast_target": torch.zeros(n, 2), "forecast_mask": torch.zeros(n, 2).bool()}


def test_each_loss_is_the_documented_objective() -> None:
    logits = torch.tensor([[2.0], [-1.0], [0.5]])
    out = SequenceOutput(logits=logits, forecast=torch.zeros(3, 2))
    batch = _batch([1, 0, 0])
    p = torch.sigmoid(logits[:, 0])
    y = torch.tensor([1.0, 0.0, 0.0])
    mse = tiny_config(loss="mse", class_weighting=False)
    response, forecast = loss_terms(out, batch, None, mse)
    assert float(response) == pytest.approx(float(((p - y) ** 2).mean()))
    assert float(forecast) == 0.0
    bce, _ = loss_terms(out, batch, None, tiny_config(loss="bce"))
    focal, _ = loss_terms(out, batch, None, tiny_config(loss="focal", focal_gamma=0.0))
    assert float(focal) == pytest.approx(float(bce), rel=1e-6)  # gamma 0 is plain BCE
    focal2, _ = loss_terms(out, batch, None, tiny_config(loss="focal"))
    assert float(focal2) < float(bce)  # easy examples down-weighted
    assert loss_kind(tiny_config()) == "bce"
    assert loss_kind(tiny_config(model={"task": "recist"})) == "ce"
    assert loss_kind(tiny_config(observe=2, label={"kind": "progression"})) == "cox"


@pytest.mark.parametrize(("settings", "match"), [
    ({"model": {"bidirectional": True}}, "bidirectional reads later scans"),
    ({"observe": None, "model": {"bidirectional": True}, "label": {"kind": "best_after"}},
     "bidirectional reads later scans"),
    ({"observe": None, "model": {"bidirectional": True, "time": "decay"}}, "decay"),
    ({"loss": "ce"}, "ce is for the recist task"),
    ({"loss": "mse", "model": {"task": "recist"}}, "mse is binary"),
])
def test_settings_that_cannot_work_are_refused(settings: dict[str, object], match: str) -> None:
    base: dict[str, object] = {"observe": 2, "label": {"kind": "overall"}}
    with pytest.raises(ValueError, match=match):
        TrainConfig.model_validate({**base, **settings})


def test_retrospective_bidirectional_model_is_allowed() -> None:
    config = TrainConfig.model_validate({"observe": None, "label": {"kind": "overall"},
                                         "model": {"bidirectional": True, "layers": 2}})
    assert config.model.bidirectional


def test_flatten_encoder_feeds_raw_downsampled_voxels() -> None:
    config = ModelConfig(encoder="flatten", flatten_edge=4)
    encoder = build_encoder(config)
    assert isinstance(encoder, Flatten)
    assert not list(encoder.parameters())  # no CNN
    x = torch.randn(3, 2, 16, 16, 16)
    out = encoder(x)
    assert out.shape == (3, embedding_size(config)) == (3, 2 * 4**3)
    # each output is the mean of a 4^3 block of one channel
    assert float(out[0, 0]) == pytest.approx(float(x[0, 0, :4, :4, :4].mean()), abs=1e-5)


def test_first_block_sees_absolute_intensity_unless_asked() -> None:
    plain = build_encoder(ModelConfig(widths=[4, 8], embed=8))
    normed = build_encoder(ModelConfig(widths=[4, 8], embed=8, first_block_norm=True))
    assert isinstance(plain, SmallCNN)
    assert isinstance(normed, SmallCNN)
    assert "GroupNorm" not in [type(m).__name__ for m in plain.blocks[0].modules()]
    assert "GroupNorm" in [type(m).__name__ for m in normed.blocks[0].modules()]


def test_pooling_statistics_keep_lesion_count_and_burden() -> None:
    pool = LesionPool(2, attention=False, stats=True)
    one = torch.tensor([[[[1.0, 2.0], [0.0, 0.0]]]])
    two = torch.tensor([[[[1.0, 2.0], [1.0, 2.0]]]])
    a = pool(one, torch.tensor([[[True, False]]]))
    b = pool(two, torch.tensor([[[True, True]]]))
    assert a.shape == (1, 1, 6)
    torch.testing.assert_close(a[..., :2], b[..., :2])  # the average alone cannot tell them apart
    assert float(b[0, 0, 2]) == pytest.approx(2 * float(a[0, 0, 2]))  # the sum can


def _progression_cache(root: Path) -> Path:
    cache = write_fake_cache(root, n_patients=10, size=8, max_timepoints=4)
    courses = []
    for i in range(10):
        late = (150 + 10 * i, PD) if i % 2 else (150 + 10 * i, SD)
        courses.append(course((0, None), (60, SD), late, pid=f"P{i:03d}"))
    assert store_tracks(cache, tracks_document(courses, input_hash=input_hash(cache)))
    return cache


def test_progression_labels_train_a_risk_model_end_to_end(tmp_path: Path) -> None:
    cache = _progression_cache(tmp_path / "cache")
    config = tiny_config(observe=2, label={"kind": "progression"}, epochs=2, folds=2,
                         model={"widths": [4, 8], "embed": 8, "hidden": 8},
                         early_stopping={"patience": 2, "val_fraction": 0.25})
    assert config.model.measurements
    run = tmp_path / "run"
    train_run(cache, run, config, progress=False)
    lines = read_predictions(run)
    assert lines
    for line in lines:
        assert line.risk is not None
        assert math.isfinite(line.risk)
        assert line.time_days is not None
        assert line.time_days > 0
        assert line.event == bool(line.label)
        assert line.probability == pytest.approx(1 / (1 + math.exp(-line.risk)), abs=1e-5)
        assert line.features is not None
        assert set(line.features) >= {"log_burden_ratio", "rim_hu_change", "lesion_count"}
    card = read_card(run)
    assert card.label_kind == "progression"
    assert card.inputs.lesion_measurements
    assert card.inputs.crop_spacing_mm
    doc = evaluate_run(run, EvaluationSettings(n_bootstrap=50))
    assert doc.pooled.survival is not None
    assert doc.pooled.survival.model.c_index is not None
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("val_response_loss" in row for row in metrics if row["fold"] != "all")


def test_steps_size_training_whatever_the_cohort(tmp_path: Path) -> None:
    cache = write_fake_cache(tmp_path / "cache", n_patients=8, size=8)
    for steps in (2, 3):
        # a batch holds every training patient: one step an epoch, so `steps` epochs, not 40
        config = tiny_config(steps=steps, epochs=40, folds=2, batch_size=16, final_model=False,
                             early_stopping={"patience": 40, "val_fraction": 0.25})
        run = tmp_path / f"run{steps}"
        train_run(cache, run, config, progress=False)
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert {r["fold"]: r["epoch"] for r in rows} == {"0": steps, "1": steps}


def test_an_early_label_without_observe_is_a_usage_error(tmp_path: Path) -> None:
    cache = _progression_cache(tmp_path / "cache")
    with pytest.raises(UsageError, match="observe"):
        train_run(cache, tmp_path / "run", tiny_config(observe=None,
                                                        label={"kind": "best_after"}),
                  progress=False)
    assert read_manifest(cache).patients  # the cache is untouched
