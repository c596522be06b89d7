"""Saving and loading models: safetensors + JSON, never pickles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseq.contracts.run import ModelCard, ModelConfig, ModelInputs
from medseq.errors import CacheError, InputDataError
from medseq.models.inference import LoadedModel, build_model, load_model, predict_patient
from medseq.models.io import save_model

ROOT = Path(__file__).resolve().parents[2]


def _saved(tmp_path: Path, **settings: object) -> tuple[Path, ModelCard]:
    settings.setdefault("measurements", False)
    config = ModelConfig(widths=[4, 8], embed=8, hidden=8, **settings)  # type: ignore[arg-type]
    card = ModelCard(architecture=config, label_names=config.label_names,
                     inputs=ModelInputs(observe=2, crop_shape=[2, 8, 8, 8]),
                     preprocess_config_hash="sha256:abc")
    torch.manual_seed(0)
    model = build_model(card)
    save_model(tmp_path / "m", model.state_dict(), card)
    return tmp_path / "m", card


def test_round_trip_predicts_the_same(tmp_path: Path) -> None:
    folder, card = _saved(tmp_path)
    torch.manual_seed(0)
    original = build_model(card).eval()
    model = load_model(folder)
    config = model.card.architecture
    assert config == card.architecture
    assert model.card.inputs.observe == 2
    crops = np.random.default_rng(0).normal(size=(3, 2, 2, 8, 8, 8)).astype(np.float16)
    a = predict_patient(model, crops, [0, 60, 120])
    b = predict_patient(LoadedModel(original, card), crops, [0, 60, 120])
    assert a["observed"] == 2
    assert len(a["forecast_ml"]) == 2
    assert a["probability"] == pytest.approx(b["probability"], abs=1e-6)
    assert 0.0 <= a["probability"] <= 1.0
    assert all(v >= 0 for v in a["forecast_ml"])
    meta = json.loads((folder / "model.json").read_text())
    assert meta["preprocess_config_hash"] == "sha256:abc"
    assert meta["label_names"] == ["non-responder", "responder"]
    # load_model also accepts the weights file itself
    assert load_model(folder / "model.safetensors").card.architecture == config


def test_recist_model_gives_class_probabilities(tmp_path: Path) -> None:
    folder, _ = _saved(tmp_path, task="recist")
    model = load_model(folder)
    out = predict_patient(model, np.zeros((2, 1, 2, 8, 8, 8), np.float32), [0, 30])
    assert len(out["probabilities"]) == 4
    assert out["probability"] == pytest.approx(sum(out["probabilities"][:2]))


def test_weights_that_do_not_fit_the_card_are_a_cache_error(tmp_path: Path) -> None:
    folder, _ = _saved(tmp_path)
    data = json.loads((folder / "model.json").read_text())
    data["architecture"]["hidden"] = 16
    (folder / "model.json").write_text(json.dumps(data))
    with pytest.raises(CacheError, match="do not fit"):
        load_model(folder)


def test_missing_or_corrupt_files_are_cache_errors(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match=r"model\.json"):
        load_model(tmp_path)
    folder, _ = _saved(tmp_path)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CacheError, match="unreadable weights"):
        load_model(folder)


def test_bad_crop_shape_is_an_input_error(tmp_path: Path) -> None:
    model = load_model(_saved(tmp_path)[0])
    with pytest.raises(InputDataError, match="crops must be"):
        predict_patient(model, np.zeros((2, 8, 8, 8), np.float32), [0, 30])
    with pytest.raises(InputDataError, match="crops have 1 channels; the model reads 2"):
        predict_patient(model, np.zeros((2, 1, 1, 8, 8, 8), np.float32), [0, 30])


def test_no_module_unpickles_user_files() -> None:
    for path in (ROOT / "medseq").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "torch.load(" not in text, path
        assert "allow_pickle=True" not in text, path


def test_card_input_size_resizes_crops_before_the_encoder(tmp_path: Path) -> None:
    from medseq.models.sequence import resize_crops

    folder, _ = _saved(tmp_path)
    data = json.loads((folder / "model.json").read_text())
    data["inputs"]["input_size"] = 4
    (folder / "model.json").write_text(json.dumps(data))
    model = load_model(folder)
    assert model.card.inputs.input_size == 4
    crops = np.random.default_rng(1).normal(size=(2, 1, 2, 8, 8, 8)).astype(np.float32)
    small = resize_crops(torch.from_numpy(crops), 4).numpy()
    assert small.shape == (2, 1, 2, 4, 4, 4)
    as_given = model.card.model_copy(update={"inputs": ModelInputs(observe=2)})
    expected = predict_patient(LoadedModel(model.module, as_given), small, [0, 50])["probability"]
    assert predict_patient(model, crops, [0, 50])["probability"] == pytest.approx(expected)
