"""Lesion-centred crops for the model: targets chosen at baseline, cut at every timepoint.

Targets are the largest connected components (26-connectivity) of the baseline mask above a
minimum volume; their centroids are fixed in the baseline's RAS+ frame, which is the registered
frame of every timepoint. Each crop is resampled straight from the source scan through the
registration (one interpolation, only the crop's voxels: no whole-volume resampling needed).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk  # noqa: N813 - the name every ITK user knows

from medseq.arrays import nonzero_box
from medseq.contracts.cache import TargetRecord
from medseq.io.volume import Volume
from medseq.preprocess.config import PreprocessConfig
from medseq.preprocess.normalize import IntensityRecord, normalize
from medseq.preprocess.orient import cube_grid
from medseq.preprocess.resample import resample

CROP_DTYPE = np.float16


def select_targets(mask: Volume, *, min_ml: float, max_targets: int) -> list[TargetRecord]:
    """Up to ``max_targets`` largest lesions of a (native) mask, largest first."""
    from scipy import ndimage

    inside = np.asarray(mask.array) > 0
    box = nonzero_box(inside)
    if box is None:
        return []
    # Label only the box around the lesions: a whole-CT int32 label image would be 400 MiB.
    labels, count = ndimage.label(inside[box], structure=np.ones((3, 3, 3), bool))
    del inside
    offset = np.array([s.start for s in box], dtype=np.float64)
    sizes = np.bincount(labels.ravel())[1:]
    voxel_ml = mask.voxel_volume_ml
    # Largest first; ties broken by label (scan order), so the choice is deterministic.
    order = sorted(range(count), key=lambda n: (-int(sizes[n]), n))
    chosen = [n + 1 for n in order if sizes[n] * voxel_ml >= min_ml][:max_targets]
    boxes = ndimage.find_objects(labels)
    targets = []
    for index, label in enumerate(chosen):
        lesion_box = boxes[label - 1]
        assert lesion_box is not None  # every label from ndimage.label has a box
        voxels = np.argwhere(labels[lesion_box] == label)
        centre = voxels.mean(axis=0) + np.array([s.start for s in lesion_box]) + offset
        world = mask.world_coordinates(centre[None, :])[0]
        targets.append(TargetRecord(
            index=index, centroid_mm=[round(float(v), 3) for v in world],
            volume_ml=round(float(sizes[label - 1] * voxel_ml), 4),
        ))
    return targets


def cut_crops(image: sitk.Image, mask: sitk.Image | None, targets: list[TargetRecord], *,
              baseline_to_source: np.ndarray, intensity: IntensityRecord, default: float,
              config: PreprocessConfig) -> np.ndarray:
    """Crops ``[L, 2, S, S, S]`` (normalised image, binary mask) of one timepoint, float16.

    ``baseline_to_source`` maps baseline RAS+ points into this scan's world; outside the scan
    the image channel holds ``default`` (air for CT) before normalisation.
    """
    size = config.crop_size
    out = np.zeros((len(targets), 2, size, size, size), dtype=CROP_DTYPE)
    for target in targets:
        grid = cube_grid(target.centroid_mm, size=size, spacing=config.crop_spacing)
        values = resample(image, grid, grid_to_source=baseline_to_source, default=default)
        out[target.index, 0] = normalize(values, intensity, config)
        if mask is not None:
            labels = resample(mask, grid, grid_to_source=baseline_to_source,
                              interpolation="nearest")
            out[target.index, 1] = labels > 0
    return out
