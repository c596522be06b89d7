"""Architecture settings of the response model (pydantic, no torch import)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RECIST_CLASSES: tuple[str, ...] = ("CR", "PR", "SD", "PD")
"""Class order of the ``recist`` task; responders are the first two."""
BINARY_CLASSES: tuple[str, ...] = ("non-responder", "responder")


class ModelConfig(BaseModel):
    """What the network looks like; saved in ``model.json`` so a model rebuilds itself."""

    model_config = ConfigDict(extra="forbid")

    encoder: Literal["small", "resnet10", "resnet18"] = "small"
    """``small``: a 4-block 3D CNN (~0.2 M parameters) that trains on CPUs; the MONAI ResNets
    belong on a GPU."""
    widths: list[int] = Field(default_factory=lambda: [8, 16, 32, 64], min_length=1)
    """Channels of the small encoder's blocks (each block after the first halves the size)."""
    embed: int = Field(default=64, ge=4)
    """Lesion embedding size."""
    pooling: Literal["attention", "mean"] = "attention"
    """How lesion embeddings of one timepoint are pooled (padding lesions are masked out)."""
    cell: Literal["lstm", "gru", "rnn"] = "lstm"
    layers: int = Field(default=1, ge=1, le=4)
    hidden: int = Field(default=64, ge=4)
    time: Literal["none", "concat", "decay"] = "concat"
    """``none``: the intervals are not input; ``concat``: days since baseline and since the
    previous scan join the timepoint embedding; ``decay``: as concat, and the recurrent memory is
    discounted by g(dt) = 1/log(e + dt) before each step (T-LSTM style)."""
    time_scale_days: float = Field(default=100.0, gt=0)
    """Days are divided by this before entering the network."""
    task: Literal["binary", "recist"] = "binary"
    """``binary``: responder (CR/PR) vs not; ``recist``: the four RECIST classes."""
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    in_channels: int = Field(default=2, ge=1)
    """Image and mask channel of each crop."""

    @property
    def n_outputs(self) -> int:
        """Width of the response head."""
        return 1 if self.task == "binary" else len(RECIST_CLASSES)

    @property
    def label_names(self) -> list[str]:
        """Names of the label values, in order."""
        return list(BINARY_CLASSES if self.task == "binary" else RECIST_CLASSES)
