"""The one way a patient's scans become model input, in training and in inference alike.

:class:`medseq.contracts.run.ModelInputs` (``model.json``'s ``inputs``) says what the model is
fed; :func:`prepare_inputs` applies it: keep the first ``observe`` scans, convert the crops to
float32, resize them to ``input_size``, and pair them with the per-scan features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medseq.contracts.run import ModelInputs
from medseq.errors import InputDataError
from medseq.models.measurements import (
    CropGeometry,
    classical_features,
    lesion_features,
    measure_crops,
    timepoint_features,
)
from medseq.models.sequence import resize_crops


@dataclass(frozen=True)
class PreparedInputs:
    """One patient's model input (the observed scans only)."""

    crops: torch.Tensor
    """[k, L, C, s, s, s] float32, resized to ``input_size``."""
    days: torch.Tensor
    """[k] days from baseline."""
    days_since_previous: torch.Tensor
    """[k] days since the previous scan (0 at baseline)."""
    lesion_features: torch.Tensor
    """[k, L, F] lesion measurements (F = 0 when the model reads none)."""
    scan_features: torch.Tensor
    """[k, G] per-scan measurements (G = 0 when the model reads none)."""
    classical: dict[str, float] | None = None
    """The classical feature model's inputs for the observed scans (with measurements)."""

    @property
    def observed(self) -> int:
        """Scans the model sees (k)."""
        return int(self.crops.shape[0])


def prepare_inputs(
    inputs: ModelInputs,
    crops: np.ndarray,
    days: Sequence[float],
    days_since_previous: Sequence[float] | None = None,
    *,
    burden_ml: Sequence[float | None] | None = None,
    new_lesions: Sequence[bool] | None = None,
    measured: tuple[torch.Tensor, torch.Tensor, dict[str, float] | None] | None = None,
) -> PreparedInputs:
    """A patient's input as the model was trained on it.

    Args:
        inputs: the model card's input specification.
        crops: [T, L, C, S, S, S] (float16 or float32; a memory map reads only the observed
            scans), the cache's ``crops.npy``.
        days: days from baseline of the T scans.
        days_since_previous: the intervals as the cache recorded them; None: from ``days``.
        burden_ml: total lesion volume of each scan's whole mask (the cache's
            ``lesion_volume_ml``); None: the crops' lesion volumes.
        new_lesions: per scan, whether tracking found a new lesion; None: none.
        measured: (lesion, scan, classical) features computed earlier for the same patient
            (training measures each patient once).
    """
    total = len(days)
    if crops.ndim != 6 or crops.shape[0] != total or total < 1:
        raise InputDataError(f"crops must be [T, L, C, S, S, S] with T = len(days) = {total}, "
                             f"got shape {list(crops.shape)}")
    if crops.shape[2] != len(inputs.channels):
        raise InputDataError(f"crops have {crops.shape[2]} channels; the model reads "
                             f"{len(inputs.channels)} ({', '.join(inputs.channels)})")
    k = inputs.observed(total)
    if days_since_previous is None:
        days_since_previous = [0.0] + [float(days[i]) - float(days[i - 1])
                                       for i in range(1, total)]
    observed = np.array(crops[:k], dtype=np.float32)
    n_lesions = observed.shape[1]
    lesion = np.zeros((k, n_lesions, len(inputs.lesion_measurements)), dtype=np.float32)
    scan = np.zeros((k, len(inputs.scan_measurements)), dtype=np.float32)
    classical: dict[str, float] | None = None
    if measured is not None:
        lesion_t, scan_t, classical = measured
        lesion, scan = lesion_t.numpy(), scan_t.numpy()
    elif inputs.lesion_measurements or inputs.scan_measurements:
        geometry = CropGeometry(spacing_mm=inputs.crop_spacing_mm or 1.0,
                                hu_offset=inputs.hu_offset, hu_scale=inputs.hu_scale)
        measures = measure_crops(observed, geometry)
        seen_days = [float(d) for d in days[:k]]
        if inputs.lesion_measurements:
            lesion = lesion_features(measures, seen_days)
        if inputs.scan_measurements:
            burden = list(burden_ml[:k]) if burden_ml is not None else [None] * k
            flags = list(new_lesions[:k]) if new_lesions is not None else None
            scan = timepoint_features(measures, burden, flags)
        classical = classical_features(measures, seen_days, k)
    tensor = torch.from_numpy(observed)
    return PreparedInputs(
        crops=resize_crops(tensor, inputs.input_size),
        days=torch.tensor([float(d) for d in days[:k]]),
        days_since_previous=torch.tensor([float(d) for d in days_since_previous[:k]]),
        lesion_features=torch.from_numpy(lesion),
        scan_features=torch.from_numpy(scan),
        classical=classical,
    )
