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

    @property
    def observed(self) -> int:
        """Scans the model sees (k)."""
        return int(self.crops.shape[0])


def prepare_inputs(
    inputs: ModelInputs,
    crops: np.ndarray,
    days: Sequence[float],
    days_since_previous: Sequence[float] | None = None,
) -> PreparedInputs:
    """A patient's input as the model was trained on it.

    Args:
        inputs: the model card's input specification.
        crops: [T, L, C, S, S, S] (float16 or float32; a memory map reads only the observed
            scans), the cache's ``crops.npy``.
        days: days from baseline of the T scans.
        days_since_previous: the intervals as the cache recorded them; None: from ``days``.
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
    tensor = torch.from_numpy(np.array(crops[:k], dtype=np.float32))
    return PreparedInputs(
        crops=resize_crops(tensor, inputs.input_size),
        days=torch.tensor([float(d) for d in days[:k]]),
        days_since_previous=torch.tensor([float(d) for d in days_since_previous[:k]]),
    )
