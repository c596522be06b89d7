"""The promptable segmenter: a small MONAI residual U-Net over 4 input channels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseq.tracker.config import TrackerConfig
from medseq.tracker.prompt import CHANNELS

if TYPE_CHECKING:
    import torch


def build_network(config: TrackerConfig) -> torch.nn.Module:
    """``monai.networks.nets.UNet``: [follow-up, prompt, baseline, baseline mask] -> logits."""
    from monai.networks.nets import UNet

    widths = tuple(config.widths)
    return UNet(spatial_dims=3, in_channels=len(CHANNELS), out_channels=1, channels=widths,
                strides=(2,) * (len(widths) - 1), num_res_units=1, norm="instance")
