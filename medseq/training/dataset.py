"""A torch Dataset over the preprocessing cache: one item per patient, padded into batches.

Crops are read with ``np.load(mmap_mode='r')`` so only the observed timepoints leave the disk;
:func:`medseq.models.inputs.prepare_inputs` cuts and resizes them as inference does.
Augmentations are drawn once per patient from a generator seeded by (seed, stream, epoch,
patient), so they are the same whatever the worker count or resume point, and are applied
identically to every timepoint and lesion of that patient: the model must see change over time,
not change of augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional
from torch.utils.data import Dataset

from medseq.contracts.cache import PatientRecord
from medseq.contracts.run import ModelInputs
from medseq.errors import CacheError
from medseq.models.inputs import prepare_inputs
from medseq.training.config import AugmentConfig

Batch = dict[str, torch.Tensor]


class CacheDataset(Dataset[dict[str, Any]]):
    """Patients of a cache with their labels, fed as ``inputs`` says (the model card's)."""

    def __init__(
        self,
        cache_dir: Path,
        records: Sequence[PatientRecord],
        labels: dict[str, int],
        *,
        inputs: ModelInputs | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        stream: int = 0,
        times: dict[str, float] | None = None,
        new_lesions: dict[str, list[bool]] | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.records = list(records)
        self.labels = labels
        self.inputs = inputs if inputs is not None else ModelInputs()
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = seed
        self.stream = stream
        self.epoch = 0
        self.times = times or {}
        """Progression labels: days to progression or censoring (``labels`` holds the event)."""
        self.new_lesions = new_lesions or {}
        """Per patient and scan, whether tracking found a new lesion."""
        self._measured: dict[int, tuple[torch.Tensor, torch.Tensor, dict[str, float] | None]] = {}

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation draw (call before each epoch, like DistributedSampler)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        total = len(record.timepoints)
        prepared = prepare_inputs(
            self.inputs, load_crops(self.cache_dir, record),
            [float(tp.days) for tp in record.timepoints],
            [float(tp.days_since_previous) for tp in record.timepoints],
            burden_ml=[tp.lesion_volume_ml for tp in record.timepoints],
            new_lesions=self.new_lesions.get(record.patient_id),
            measured=self._measured.get(index),
        )
        self._measured.setdefault(
            index, (prepared.lesion_features, prepared.scan_features, prepared.classical))
        crops, k = prepared.crops, prepared.observed
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.stream, self.epoch, index])
            crops = augment_patient(crops, rng, self.augment)
        burden = [tp.lesion_volume_ml for tp in record.timepoints]
        target = torch.zeros(k)
        target_mask = torch.zeros(k, dtype=torch.bool)
        for t in range(k):
            if t + 1 < total and burden[t + 1] is not None:
                target[t] = math.log1p(max(float(burden[t + 1] or 0.0), 0.0))
                target_mask[t] = True
        return {
            "crops": crops,
            "days": prepared.days,
            "days_since_previous": prepared.days_since_previous,
            "forecast_target": target,
            "forecast_mask": target_mask,
            "lesion_features": prepared.lesion_features,
            "scan_features": prepared.scan_features,
            "label": self.labels.get(record.patient_id, -1),
            "time": float(self.times.get(record.patient_id, 0.0)),
            "index": index,
        }

    def classical(self, index: int) -> dict[str, float] | None:
        """The classical features of patient ``index`` (measured on first use)."""
        if index not in self._measured:
            self[index]
        return self._measured[index][2]


def load_crops(cache_dir: Path, record: PatientRecord) -> np.ndarray:
    """A patient's crops [T, L, C, S, S, S] as a read-only memory map (nothing read yet)."""
    if record.crops is None:
        raise CacheError(f"patient {record.patient_id} has no crops", path=cache_dir)
    path = Path(cache_dir) / record.crops
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise CacheError(f"unreadable crops ({err})", path=path) from None
    if array.ndim != 6 or array.shape[0] != len(record.timepoints):
        raise CacheError(
            f"crops shape {list(array.shape)} does not match {len(record.timepoints)} timepoints "
            "[T, L, C, S, S, S]; rerun preprocess", path=path,
        )
    return array


def collate(items: Sequence[dict[str, Any]]) -> Batch:
    """Pad patients to the batch's longest sequence and largest lesion count."""
    b = len(items)
    t_max = max(item["crops"].shape[0] for item in items)
    l_max = max(item["crops"].shape[1] for item in items)
    crop_shape = items[0]["crops"].shape[2:]
    crops = torch.zeros((b, t_max, l_max, *crop_shape))
    lesion_mask = torch.zeros(b, l_max, dtype=torch.bool)
    days = torch.zeros(b, t_max)
    previous = torch.zeros(b, t_max)
    target = torch.zeros(b, t_max)
    target_mask = torch.zeros(b, t_max, dtype=torch.bool)
    lengths = torch.zeros(b, dtype=torch.long)
    lesion_features = torch.zeros(b, t_max, l_max, items[0]["lesion_features"].shape[-1])
    scan_features = torch.zeros(b, t_max, items[0]["scan_features"].shape[-1])
    for i, item in enumerate(items):
        t, n = item["crops"].shape[:2]
        crops[i, :t, :n] = item["crops"]
        lesion_features[i, :t, :n] = item["lesion_features"]
        scan_features[i, :t] = item["scan_features"]
        lesion_mask[i, :n] = True
        days[i, :t] = item["days"]
        previous[i, :t] = item["days_since_previous"]
        target[i, :t] = item["forecast_target"]
        target_mask[i, :t] = item["forecast_mask"]
        lengths[i] = t
    return {
        "crops": crops,
        "lesion_mask": lesion_mask,
        "lengths": lengths,
        "days": days,
        "days_since_previous": previous,
        "forecast_target": target,
        "forecast_mask": target_mask,
        "lesion_features": lesion_features,
        "scan_features": scan_features,
        "label": torch.tensor([item["label"] for item in items], dtype=torch.long),
        "time": torch.tensor([item["time"] for item in items], dtype=torch.float32),
        "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
    }


def augment_patient(
    crops: torch.Tensor, rng: np.random.Generator, config: AugmentConfig
) -> torch.Tensor:
    """One random flip / rotation / intensity change applied to all of a patient's crops.

    ``crops`` is [T, L, C, S, S, S] with channel 0 the normalised image and channel 1 the mask.
    """
    shape = crops.shape
    flat = crops.reshape(-1, *shape[2:])
    flip_dims = [d for d in (2, 3, 4) if rng.random() < config.flip]
    rotate = config.rotate_degrees > 0 and rng.random() < config.rotate_probability
    angles = rng.uniform(-config.rotate_degrees, config.rotate_degrees, size=3)
    scale = 1.0 + rng.uniform(-config.intensity_scale, config.intensity_scale)
    shift = rng.uniform(-config.intensity_shift, config.intensity_shift)
    if flip_dims:
        flat = torch.flip(flat, dims=flip_dims)
    if rotate:
        flat = _rotate(flat, np.deg2rad(angles))
    flat = flat.clone() if not (flip_dims or rotate) else flat
    if scale != 1.0 or shift != 0.0:
        flat[:, 0] = flat[:, 0] * scale + shift
    return flat.reshape(shape)


def _rotate(volumes: torch.Tensor, radians: np.ndarray) -> torch.Tensor:
    """Rotate [N, C, S, S, S] about the centre by the same angles.

    Masks are interpolated like the image and NOT re-binarised: thresholding a rotated mask
    changes a small lesion's volume by a median 17%, as much as the size signal of response.
    """
    ax, ay, az = (float(a) for a in radians)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    matrix = torch.zeros(1, 3, 4, dtype=volumes.dtype)
    matrix[0, :, :3] = torch.from_numpy(rz @ ry @ rx)
    theta = matrix.expand(volumes.shape[0], 3, 4)
    grid = functional.affine_grid(theta, list(volumes.shape), align_corners=False)
    out: torch.Tensor = functional.grid_sample(volumes, grid, mode="bilinear",
                                               padding_mode="border", align_corners=False)
    return out
