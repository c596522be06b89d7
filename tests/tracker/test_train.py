"""train-tracker on a 2-patient cache: files, determinism, resume, CLI errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from medseq.cli import app
from medseq.tracker.config import TrackerConfig
from medseq.tracker.segment import Tracker
from medseq.tracker.train import train_tracker
from tests.tracker.tiny_cache import write_tiny_cache

TINY = {"crop_size": 16, "widths": [4, 8], "steps": 2, "steps_per_epoch": 1, "batch_size": 2,
        "val_fraction": 0.5, "threads": 1}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_cache(tmp_path_factory.mktemp("tiny") / "cache")


def test_train_writes_safetensors_and_card_deterministically(cache: Path,
                                                             tmp_path: Path) -> None:
    config = TrackerConfig.model_validate({**TINY, "detector": "separate"})
    first = train_tracker(cache, tmp_path / "a", config)
    train_tracker(cache, tmp_path / "b", config)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "detector.safetensors", "metrics.json", "tracker.json", "tracker.safetensors",
        "tracker_config.json"]
    for name in ("tracker.safetensors", "detector.safetensors"):
        a = load_file(tmp_path / "a" / name)
        b = load_file(tmp_path / "b" / name)
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k], b[k]) for k in a)
    # the detector reads two channels (follow-up, baseline), the tracker four
    detector = load_file(tmp_path / "a/detector.safetensors")
    tracker_weights = load_file(tmp_path / "a/tracker.safetensors")
    first_conv = sorted(k for k in detector if k.endswith("conv.weight"))[0]
    assert detector[first_conv].shape[1] == 2
    assert tracker_weights[first_conv].shape[1] == 4
    assert (first.patients, first.val_patients, first.steps) == (1, 1, 2)
    tracker = Tracker.load(tmp_path / "a")
    assert tracker.card.val_patients == ["P000"] or tracker.card.val_patients == ["P001"]
    assert tracker.card.preprocess_config_hash == "sha256:tiny"
    threshold = tracker.card.detect_threshold
    assert threshold is None or 0 < threshold <= 1
    assert tracker.card.metrics["detect_candidates"] >= tracker.card.metrics[
        "detect_true_candidates"] >= 0


def test_resume_repeats_an_unbroken_run(cache: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import medseq.training.checkpoint as checkpoint

    config = TrackerConfig.model_validate({**TINY, "detector": "separate"})
    train_tracker(cache, tmp_path / "whole", config)
    real = checkpoint.save_checkpoint

    def save_then_die(*args: object, **kwargs: object) -> None:
        real(*args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_tracker(cache, tmp_path / "broken", config)
    monkeypatch.setattr(checkpoint, "save_checkpoint", real)
    assert not (tmp_path / "broken/tracker.json").exists()
    train_tracker(cache, tmp_path / "broken", config, resume=True)
    for name in ("tracker.safetensors", "detector.safetensors"):
        a = load_file(tmp_path / "whole" / name)
        b = load_file(tmp_path / "broken" / name)
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_subtraction_detector_writes_one_network_and_its_threshold(cache: Path,
                                                                   tmp_path: Path) -> None:
    config = TrackerConfig.model_validate(TINY)
    assert config.detector == "subtraction"  # the default
    summary = train_tracker(cache, tmp_path / "sub", config)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [
        "metrics.json", "tracker.json", "tracker.safetensors", "tracker_config.json"]
    tracker = Tracker.load(tmp_path / "sub")
    assert tracker.detector is None
    metrics = tracker.card.metrics
    # chosen on every training follow-up (both patients), not only the held-out one
    assert metrics["detect_scans"] == 4
    assert metrics["detect_candidates"] >= metrics["detect_true_candidates"] >= (
        metrics["detect_true_kept"])
    assert tracker.card.detect_threshold == summary.detect_threshold
    if summary.detect_threshold is not None:
        assert summary.detect_threshold > 3.0  # above the candidates' floor
        assert metrics["detect_fp_per_scan"] <= config.subtract_max_fp_per_scan


def test_shared_detector_writes_one_network(cache: Path, tmp_path: Path) -> None:
    config = TrackerConfig.model_validate({**TINY, "detector": "shared"})
    train_tracker(cache, tmp_path / "shared", config)
    assert not (tmp_path / "shared/detector.safetensors").exists()
    tracker = Tracker.load(tmp_path / "shared")
    assert tracker.detector is None
    windows = np.zeros((1, 4, 16, 16, 16), dtype=np.float32)
    assert np.array_equal(tracker.predict_detection(windows), tracker.predict(windows))


def test_cli_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "used").mkdir()
    (tmp_path / "used/x").write_text("x")
    cache = write_tiny_cache(tmp_path / "nomask", patients=2, timepoints=2,
                             follow_up_masks=False)
    result = runner.invoke(app, ["train-tracker", str(cache), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "needs at least 2 patients whose every timepoint has a lesion mask" in result.stderr
    assert not (tmp_path / "run").exists()
    result = runner.invoke(app, ["train-tracker", str(cache), "-o", str(tmp_path / "used")])
    assert result.exit_code == 1
    assert "not empty" in result.stderr
    # a setting of the detection network without one is refused, not ignored
    (tmp_path / "insert.yaml").write_text("detect_insert: 0.5\n")
    result = runner.invoke(app, ["train-tracker", str(cache), "-o", str(tmp_path / "run"),
                                 "--config", str(tmp_path / "insert.yaml")])
    assert result.exit_code == 1
    assert "detect_insert trains a detection network" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()
    # a negative volume weight is refused with the setting named, one line, nothing written
    (tmp_path / "volume.yaml").write_text("volume_weight: -0.1\n")
    result = runner.invoke(app, ["train-tracker", str(cache), "-o", str(tmp_path / "run"),
                                 "--config", str(tmp_path / "volume.yaml")])
    assert result.exit_code == 1
    assert "volume_weight" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_unit_dice_smoothing_makes_a_blob_on_an_empty_target_costly() -> None:
    import torch

    from medseq.tracker.train import _loss

    empty_target = torch.zeros(1, 1, 24, 24, 24)
    nothing = torch.full((1, 1, 24, 24, 24), -12.0)
    blob = nothing.clone()
    blob[0, 0, 10:15, 10, 10] = 1.0  # five voxels at p = 0.73
    costs = {}
    for smooth in (1e-5, 1.0):
        loss = _loss(TrackerConfig(dice_smooth=smooth))
        costs[smooth] = float(loss(blob, empty_target)) - float(loss(nothing, empty_target))
    assert costs[1e-5] < 0.01  # the default smoothing barely notices the blob
    assert costs[1.0] > 0.5
    # a lesion that is there is still scored by its overlap
    lesion = torch.zeros(1, 1, 24, 24, 24)
    lesion[0, 0, 8:16, 8:16, 8:16] = 1.0
    right = torch.where(lesion > 0, 12.0, -12.0)
    half = torch.where((lesion > 0) & (torch.arange(24).view(1, 1, 24, 1, 1) < 12), 12.0, -12.0)
    loss = _loss(TrackerConfig(dice_smooth=1.0))
    assert float(loss(right, lesion)) < 0.01 < 0.3 < float(loss(half, lesion))


def test_unit_volume_term_prices_a_lesion_drawn_at_the_wrong_size() -> None:
    import torch

    from medseq.tracker.train import _loss, _tracker_loss

    lesion = torch.zeros(2, 1, 24, 24, 24)
    lesion[0, 0, 10:13, 10:13, 10:13] = 1.0  # 27 voxels; crop 1: the lesion vanished
    logits = torch.where(lesion > 0, 20.0, -20.0)
    drawn_big = torch.full_like(lesion, -20.0)
    drawn_big[:, :, 9:14, 9:14, 9:14] = 20.0  # 125 voxels in both crops
    plain, volume = _loss(TrackerConfig()), _tracker_loss(TrackerConfig(volume_weight=1.0))
    # right sizes: the volume term adds (almost) nothing
    assert abs(float(volume(logits, lesion)) - float(plain(logits, lesion))) < 1e-3
    # drawn at 125 voxels: log(126 / 28) for the lesion, log(126) where it vanished, averaged
    extra = float(volume(drawn_big, lesion)) - float(plain(drawn_big, lesion))
    assert extra == pytest.approx((math.log(126 / 28) + math.log(126)) / 2, rel=1e-3)
    # it is symmetric in the log: a lesion drawn empty costs like one drawn too large
    nothing = torch.full_like(lesion, -20.0)
    extra_empty = float(volume(nothing, lesion)) - float(plain(nothing, lesion))
    assert extra_empty == pytest.approx(math.log(28) / 2, rel=1e-3)
    # volume_empty: false: the vanished lesion's crop does not count
    present = _tracker_loss(TrackerConfig(volume_weight=1.0, volume_empty=False))
    extra_present = float(present(drawn_big, lesion)) - float(plain(drawn_big, lesion))
    assert extra_present == pytest.approx(math.log(126 / 28), rel=1e-3)


def test_volume_term_reaches_training_and_the_card(cache: Path, tmp_path: Path) -> None:
    plain = TrackerConfig.model_validate(TINY)
    weighted = TrackerConfig.model_validate({**TINY, "volume_weight": 1.0})
    train_tracker(cache, tmp_path / "plain", plain)
    train_tracker(cache, tmp_path / "volume", weighted)
    a = load_file(tmp_path / "plain/tracker.safetensors")
    b = load_file(tmp_path / "volume/tracker.safetensors")
    assert any(not np.array_equal(a[k], b[k]) for k in a)
    assert Tracker.load(tmp_path / "volume").card.config.volume_weight == 1.0
    assert Tracker.load(tmp_path / "plain").card.config.volume_weight == 0.0


def test_scale_prior_and_pasted_lesions_reach_training(cache: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import medseq.tracker.pairs as pairs

    seen: list[float] = []
    pasted: list[int] = []
    fit, insert = pairs.fit_carried, pairs.insert_lesion

    def spy_fit(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(args[-1].prior_sd)
        return fit(*args, **kwargs)

    def spy_insert(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = insert(*args, **kwargs)
        pasted.append(0 if out is None else int(out.sum()))
        return out

    monkeypatch.setattr(pairs, "fit_carried", spy_fit)
    monkeypatch.setattr(pairs, "insert_lesion", spy_insert)
    config = TrackerConfig.model_validate({**TINY, "steps": 3, "scale_prior_sd": 0.6,
                                           "detector": "separate", "detect_target": "new",
                                           "detect_insert": 1.0})
    train_tracker(cache, tmp_path / "run", config)
    card = Tracker.load(tmp_path / "run").card
    assert (card.config.scale_prior_sd, card.config.detect_insert) == (0.6, 1.0)
    assert set(seen) == {0.6}
    assert max(pasted, default=0) >= 2
