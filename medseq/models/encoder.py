"""3D CNN encoders: one lesion crop (image + mask channels) -> one embedding vector.

The encoder is shared by every lesion and timepoint, so its size sets the cost of a step
(``PERFORMANCE.md``: the recurrent part is 0.01% of it). The default is small enough to train on
two CPU cores; MONAI's ResNets are options for a GPU.
"""

from __future__ import annotations

import torch
from torch import nn

from medseq.contracts.run import ModelConfig
from medseq.errors import MissingDependencyError


def build_encoder(config: ModelConfig) -> nn.Module:
    """The encoder named by ``config.encoder``, mapping [N, C, S, S, S] to [N, config.embed]."""
    if config.encoder == "small":
        return SmallCNN(config.in_channels, config.widths, config.embed,
                        first_block_norm=config.first_block_norm)
    if config.encoder == "flatten":
        return Flatten(config.flatten_edge)
    return _monai_resnet(config)


def embedding_size(config: ModelConfig) -> int:
    """Width of the encoder's output for ``config``."""
    if config.encoder == "flatten":
        return config.in_channels * config.flatten_edge ** 3
    return config.embed


class Flatten(nn.Module):
    """No CNN: each crop average-pooled to ``edge``^3 and flattened (the seed reference feeds
    raw downsampled images straight into its recurrent cell)."""

    def __init__(self, edge: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(edge)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, S, S, S] -> [N, C * edge^3]."""
        return self.pool(x).flatten(1)


class SmallCNN(nn.Module):
    """Four (by default) conv blocks, GroupNorm (batches of a few patients are too small for
    BatchNorm), global average pooling and a linear projection.

    The first block has no normalisation unless asked: GroupNorm there would divide out each
    crop's intensity level and contrast, and with them the HU and size cues of response.
    """

    def __init__(self, in_channels: int, widths: list[int], embed: int, *,
                 first_block_norm: bool = False) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            blocks.append(_block(channels, width, stride=1 if i == 0 else 2,
                                 norm=first_block_norm or i > 0))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.project = nn.Linear(channels, embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, S, S, S] -> [N, embed]."""
        features = self.pool(self.blocks(x)).flatten(1)
        return torch.relu(self.project(features))


def _block(cin: int, cout: int, *, stride: int, norm: bool = True) -> nn.Module:
    groups = _groups(cout)

    def normalise() -> nn.Module:
        return nn.GroupNorm(groups, cout) if norm else nn.Identity()

    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=not norm),
        normalise(),
        nn.SiLU(inplace=True),
        nn.Conv3d(cout, cout, 3, padding=1, bias=not norm),
        normalise(),
        nn.SiLU(inplace=True),
    )


def _groups(channels: int) -> int:
    for groups in (8, 4, 2):
        if channels % groups == 0:
            return groups
    return 1


def _monai_resnet(config: ModelConfig) -> nn.Module:
    try:
        from monai.networks.nets import resnet10, resnet18
    except ImportError as err:  # pragma: no cover - monai is a dependency
        raise MissingDependencyError(
            f"encoder {config.encoder} needs monai (pip install monai)"
        ) from err
    factory = resnet10 if config.encoder == "resnet10" else resnet18
    # num_classes doubles as the embedding size: MONAI's ResNet ends in a linear layer.
    # Group norm, not MONAI's default batch norm: a batch holds a few patients' crops only.
    net: nn.Module = factory(
        spatial_dims=3, n_input_channels=config.in_channels, num_classes=config.embed,
        feed_forward=True, norm=("group", {"num_groups": 8}),
    )
    _replace_batch_norm(net)  # MONAI's shortcut projections keep batch norm regardless
    return net


def _replace_batch_norm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm3d):
            setattr(module, name, nn.GroupNorm(_groups(child.num_features), child.num_features))
        else:
            _replace_batch_norm(child)
