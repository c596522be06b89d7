"""The promptable segmenter: a small MONAI residual U-Net over 4 input channels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseq.tracker.config import TrackerConfig
from medseq.tracker.prompt import CHANNELS

if TYPE_CHECKING:
    import torch


DETECTOR_CHANNELS = (CHANNELS.index("follow_up"), CHANNELS.index("baseline"))
"""The input channels the separate detector reads."""


def build_detector(config: TrackerConfig) -> torch.nn.Module:
    """The separate detector: the same U-Net over [follow-up, baseline] -> lesion logits."""
    return _unet(config, len(DETECTOR_CHANNELS))


def _unet(config: TrackerConfig, in_channels: int, *, full_resolution: bool = False
          ) -> torch.nn.Module:
    """MONAI ``UNet`` with ``config.widths``, strides 2 (the first 1 with
    ``full_resolution``), one residual unit, instance norm."""
    from monai.networks.nets import UNet

    widths = tuple(config.widths)
    strides = (1 if full_resolution else 2,) + (2,) * (len(widths) - 2)
    return UNet(spatial_dims=3, in_channels=in_channels, out_channels=1, channels=widths,
                strides=strides, num_res_units=1, norm="instance")


def build_network(config: TrackerConfig) -> torch.nn.Module:
    """``monai.networks.nets.UNet``: [follow-up, prompt, baseline, baseline mask] -> logits.

    With ``prior_logit`` > 0 the baseline-mask channel, times a learned scale starting there,
    is added to the logits: at initialisation the network already proposes the carried
    baseline mask (registration only) and learns the change from it.
    """
    import torch

    unet = _unet(config, len(CHANNELS), full_resolution=config.full_resolution)
    if config.prior_logit <= 0:
        return unet

    class PriorResidual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unet = unet
            self.prior_scale = torch.nn.Parameter(torch.tensor(float(config.prior_logit)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            prior = x[:, CHANNELS.index("baseline_mask")].unsqueeze(1)
            return self.unet(x) + self.prior_scale * prior

    return PriorResidual()
