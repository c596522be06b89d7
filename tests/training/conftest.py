"""Fixtures for training tests: a small fake cache and a fast configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseq.training.config import TrainConfig
from tests.training.fake_cache import write_fake_cache


@pytest.fixture(scope="session")
def fake_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 patients (6 responders), 1-3 lesions, 2-4 scans, 12^3 crops, plus one without crops."""
    return write_fake_cache(tmp_path_factory.mktemp("cache"), size=12, extra_without_crops=1)


def tiny_config(**settings: object) -> TrainConfig:
    """A model and schedule small enough for a few seconds per run on 2 cores."""
    base: dict[str, object] = {
        # The fake cache has no tracking, so no new-lesion flags: measurements are tested on
        # generated data (tests/test_pipeline.py, tests/training/test_early.py).
        "model": {"widths": [4, 8, 16], "embed": 16, "hidden": 16, "measurements": False},
        "epochs": 3, "folds": 2, "batch_size": 4, "threads": 2,
        "early_stopping": {"patience": 2},
        # The fake cache's labels are the manifest's (kind overall); it has no tracking.
        "label": {"kind": "overall"}, "observe": None,
    }
    base.update(settings)
    return TrainConfig.model_validate(base)
