"""The dataset: observe truncation, padding masks, forecast targets, augmentation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from medseq.contracts.cache import read_manifest
from medseq.contracts.run import ModelInputs
from medseq.training.config import AugmentConfig
from medseq.training.dataset import CacheDataset, augment_patient, collate


def _dataset(cache: Path, **kwargs: object) -> CacheDataset:
    manifest = read_manifest(cache)
    records = [r for r in manifest.ok_patients() if r.crops]
    return CacheDataset(cache, records, {r.patient_id: int(r.label or 0) for r in records},
                        **kwargs)  # type: ignore[arg-type]


def test_observe_keeps_the_first_k_scans_and_targets_the_next_burden(fake_cache: Path) -> None:
    ds = _dataset(fake_cache, inputs=ModelInputs(observe=2))
    for i in range(len(ds)):
        record = ds.records[i]
        item = ds[i]
        assert item["crops"].shape[0] == 2
        assert item["crops"].dtype == torch.float32
        assert item["days"].tolist() == [tp.days for tp in record.timepoints[:2]]
        # state t forecasts timepoint t+1, even beyond the observed scans
        expected = math.log1p(record.timepoints[1].lesion_volume_ml or 0)
        assert item["forecast_target"][0].item() == np.float32(expected)
        assert item["forecast_mask"].tolist() == [True, len(record.timepoints) > 2]


def test_collate_pads_and_masks(fake_cache: Path) -> None:
    ds = _dataset(fake_cache)
    items = [ds[i] for i in range(4)]
    batch = collate(items)
    t_max = max(it["crops"].shape[0] for it in items)
    l_max = max(it["crops"].shape[1] for it in items)
    assert batch["crops"].shape[:3] == (4, t_max, l_max)
    for i, item in enumerate(items):
        t, n = item["crops"].shape[:2]
        assert batch["lengths"][i] == t
        assert batch["lesion_mask"][i].tolist() == [True] * n + [False] * (l_max - n)
        assert not batch["forecast_mask"][i, t:].any()
        assert batch["crops"][i, t:].abs().sum() == 0


def test_augmentation_is_identical_across_timepoints_and_lesions() -> None:
    rng = np.random.default_rng(0)
    one = torch.from_numpy(rng.normal(size=(1, 1, 2, 12, 12, 12)).astype(np.float32))
    one[:, :, 1] = (one[:, :, 1] > 0).float()
    crops = one.expand(3, 2, 2, 12, 12, 12).clone()
    config = AugmentConfig(flip=0.5, rotate_probability=1.0, rotate_degrees=20)
    out = augment_patient(crops, np.random.default_rng(5), config)
    assert not torch.equal(out, crops)
    for t in range(3):
        for lesion in range(2):
            torch.testing.assert_close(out[t, lesion], out[0, 0])
    # Masks are interpolated, not re-binarised: occupancy fractions that keep the volume.
    assert float(out[:, :, 1].min()) >= 0.0
    assert float(out[:, :, 1].max()) <= 1.0


def test_rotation_keeps_a_small_lesions_volume() -> None:
    grid = np.indices((16, 16, 16)).astype(np.float32)
    ball = ((grid - 7.5) ** 2).sum(axis=0) <= 2.6**2  # a lesion of a few voxels
    crops = torch.zeros(1, 1, 2, 16, 16, 16)
    crops[0, 0, 1] = torch.from_numpy(ball.astype(np.float32))
    config = AugmentConfig(flip=0.0, rotate_probability=1.0, rotate_degrees=30,
                           intensity_shift=0.0, intensity_scale=0.0)
    for seed in range(5):
        out = augment_patient(crops, np.random.default_rng(seed), config)
        assert float(out[0, 0, 1].sum()) == pytest.approx(float(ball.sum()), rel=0.03)


def test_augmentation_depends_on_seed_and_epoch_only(fake_cache: Path) -> None:
    config = AugmentConfig()
    a = _dataset(fake_cache, augment=config, seed=3)
    b = _dataset(fake_cache, augment=config, seed=3)
    torch.testing.assert_close(a[2]["crops"], b[2]["crops"])
    b.set_epoch(1)
    assert not torch.equal(a[2]["crops"], b[2]["crops"])
