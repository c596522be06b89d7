"""medseq: longitudinal medical image series, from PACS export to response prediction.

This module holds the version and nothing heavy: ``medseq --help`` must not import torch,
monai or SimpleITK.
"""

__version__ = "0.1.0"
