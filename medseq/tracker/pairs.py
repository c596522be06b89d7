"""Training samples from a cache whose timepoints have masks.

Every patient is loaded once on the registered grid (normalised image, 26-connected lesion
components of the registered mask). Baseline lesions are linked to follow-up components by
overlap on that grid, else by the nearest centroid within ``r_a + r_b + 10`` mm; a follow-up
component linked to none is a new lesion. Three kinds of sample are drawn:

- **track**: [follow-up crop, point prompt, baseline crop, baseline lesion mask] -> the
  lesion's follow-up mask (empty when it vanished). The follow-up crop is displaced from the
  others by a random simulated registration error (``jitter_mm``).
- **self**: [crop, point or RECIST-line prompt, the same crop, zeros] -> the lesion's mask at
  that timepoint (a baseline annotation becoming a mask).
- **detect**: [crop, zeros, zeros, zeros] -> every lesion in the crop (new-lesion detection).

Augmentations change no lesion's size: flips, a swap of the two in-plane axes, intensity
scale and shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseq.contracts.cache import PatientRecord
from medseq.errors import CacheError
from medseq.preprocess.config import PreprocessConfig
from medseq.tracker.annotations import body_mask
from medseq.tracker.config import TrackerConfig
from medseq.tracker.prompt import crop, line_prompt, point_prompt

LINK_MARGIN_MM = 10.0


@dataclass
class Timepoint:
    """One registered timepoint: normalised image, lesion components, their centroids."""

    image: np.ndarray
    """float16, normalised like the cache's crops."""
    components: np.ndarray
    """int16 component labels 1..n of the registered mask."""
    centroids: np.ndarray
    """[n, 3] voxel coordinates."""
    voxels: np.ndarray
    """[n] voxel counts."""
    body: np.ndarray


@dataclass
class PatientData:
    patient_id: str
    timepoints: list[Timepoint]
    spacing: np.ndarray
    links: list[dict[int, list[int]]] = field(default_factory=list)
    """Per timepoint: baseline lesion (1-based) -> follow-up components carrying it."""
    new: list[list[int]] = field(default_factory=list)
    """Per timepoint: components no baseline lesion explains."""


def normaliser(manifest_config: dict[str, object]) -> PreprocessConfig:
    """The cache's preprocessing settings (defaults for keys an older cache lacks)."""
    known = set(PreprocessConfig.model_fields)
    return PreprocessConfig.model_validate({k: v for k, v in manifest_config.items()
                                            if k in known})


def load_image(cache_dir: Path, record: PatientRecord, index: int,
               config: PreprocessConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalised float16 image, body mask, affine) of a registered timepoint."""
    from medseq.io.nifti import load_nifti
    from medseq.preprocess.normalize import IntensityRecord, normalize

    tp = record.timepoints[index]
    volume = load_nifti(Path(cache_dir) / tp.image)
    intensity = IntensityRecord.model_validate(tp.intensity or {"kind": "ct_window"})
    image = normalize(volume.array, intensity, config).astype(np.float16)
    return image, body_mask(volume.array), np.asarray(volume.affine)


def load_patient(cache_dir: Path, record: PatientRecord, config: PreprocessConfig
                 ) -> PatientData | None:
    """Every timepoint of a patient whose registered masks all exist, else None."""
    from scipy import ndimage

    from medseq.io.nifti import load_nifti

    if record.status != "ok" or not record.timepoints:
        return None
    if any(not tp.mask for tp in record.timepoints):
        return None
    timepoints = []
    spacing = np.ones(3)
    for index, tp in enumerate(record.timepoints):
        path = Path(cache_dir) / str(tp.mask)
        if not path.is_file():
            raise CacheError("mask named in manifest.json is missing", path=path)
        mask = load_nifti(path).array > 0
        image, body, affine = load_image(cache_dir, record, index, config)
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        components, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
        ids = np.arange(1, count + 1)
        voxels = ndimage.sum_labels(np.ones(mask.shape), components, ids) if count else np.zeros(0)
        centroids = (np.array(ndimage.center_of_mass(mask, components, ids)).reshape(count, 3)
                     if count else np.zeros((0, 3)))
        timepoints.append(Timepoint(image=image, components=components.astype(np.int16),
                                    centroids=centroids, voxels=np.asarray(voxels),
                                    body=body))
    data = PatientData(record.patient_id, timepoints, spacing)
    for frame in timepoints:
        links, new = link(timepoints[0], frame, spacing)
        data.links.append(links)
        data.new.append(new)
    return data


def link(base: Timepoint, follow: Timepoint, spacing: np.ndarray
         ) -> tuple[dict[int, list[int]], list[int]]:
    """Follow-up components per baseline lesion (overlap, else nearest centroid) and the rest."""
    links: dict[int, list[int]] = {i: [] for i in range(1, len(base.voxels) + 1)}
    new: list[int] = []
    voxel_ml = float(np.prod(spacing)) / 1000.0
    radius = lambda n: (3 * n * voxel_ml * 1000 / (4 * np.pi)) ** (1 / 3)  # noqa: E731
    for j in range(1, len(follow.voxels) + 1):
        inside = base.components[follow.components == j]
        counts = np.bincount(inside, minlength=len(base.voxels) + 1)[1:]
        if counts.size and counts.max() > 0:
            links[int(np.argmax(counts)) + 1].append(j)
            continue
        best, best_d = 0, np.inf
        for i in range(1, len(base.voxels) + 1):
            d = float(np.linalg.norm((base.centroids[i - 1] - follow.centroids[j - 1]) * spacing))
            limit = radius(base.voxels[i - 1]) + radius(follow.voxels[j - 1]) + LINK_MARGIN_MM
            if d <= limit and d < best_d:
                best, best_d = i, d
        if best:
            links[best].append(j)
        else:
            new.append(j)
    return links, new


@dataclass(frozen=True)
class Item:
    kind: str
    """``track``, ``self`` or ``detect``."""
    patient: int
    timepoint: int
    lesion: int
    """Baseline lesion (track), component at the timepoint (self), unused (detect)."""


def items(patients: Sequence[PatientData]) -> dict[str, list[Item]]:
    """Every sample location, by kind."""
    out: dict[str, list[Item]] = {"track": [], "self": [], "detect": []}
    for p, data in enumerate(patients):
        for t, tp in enumerate(data.timepoints):
            out["detect"].append(Item("detect", p, t, 0))
            out["self"] += [Item("self", p, t, j) for j in range(1, len(tp.voxels) + 1)]
            if t:
                out["track"] += [Item("track", p, t, i) for i in data.links[t]]
    return out


def sample(item: Item, data: PatientData, config: TrackerConfig,
           rng: np.random.Generator, *, augment: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(input [4, S, S, S] float32, target [1, S, S, S] float32) for one item."""
    size = config.crop_size
    spacing = data.spacing
    tp = data.timepoints[item.timepoint]
    x = np.zeros((4, size, size, size), dtype=np.float32)
    if item.kind == "track":
        base = data.timepoints[0]
        point = base.centroids[item.lesion - 1]
        centre = np.rint(point + rng.normal(0, 1.0, 3)).astype(int)
        shift = np.clip(rng.normal(0, config.jitter_mm, 3), -2 * config.jitter_mm,
                        2 * config.jitter_mm) / spacing if augment else np.zeros(3)
        moved = centre + np.rint(shift).astype(int)
        x[0] = crop(tp.image, moved, size)
        x[2] = crop(base.image, centre, size)
        x[3] = crop(base.components == item.lesion, centre, size)
        x[1] = point_prompt(size, point - centre + size // 2, spacing, config.prompt_sigma_mm)
        y = np.isin(crop(tp.components, moved, size), data.links[item.timepoint][item.lesion])
        y &= _nonzero(crop(tp.components, moved, size))
    elif item.kind == "self":
        point = tp.centroids[item.lesion - 1]
        centre = np.rint(point + rng.normal(0, 1.5, 3)).astype(int)
        x[0] = crop(tp.image, centre, size)
        x[2] = x[0]
        lesion = crop(tp.components, centre, size) == item.lesion
        local = point - centre + size // 2
        if rng.random() < 0.5:
            x[1] = point_prompt(size, local + rng.normal(0, 0.5, 3), spacing,
                                config.prompt_sigma_mm)
        else:
            a, b = recist_line(lesion, spacing)
            x[1] = line_prompt(size, a, b, spacing, config.prompt_sigma_mm)
        y = lesion
    else:
        if len(tp.voxels) and rng.random() < 0.5:
            j = int(rng.integers(len(tp.voxels)))
            centre = np.rint(tp.centroids[j] + rng.uniform(-size / 3, size / 3, 3)).astype(int)
        else:
            inside = np.argwhere(tp.body[::2, ::2, ::2]) * 2
            centre = (inside[int(rng.integers(len(inside)))] if len(inside)
                      else np.array(tp.image.shape) // 2)
        x[0] = crop(tp.image, centre, size)
        y = crop(tp.components, centre, size) > 0
    target = y[None].astype(np.float32)
    if augment:
        x, target = _augment(x, target, rng)
    return x, target


def _nonzero(array: np.ndarray) -> np.ndarray:
    return array > 0


def recist_line(lesion: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Endpoints (voxel coordinates) of the lesion's longest in-plane axis on its widest slice."""
    points = np.argwhere(lesion)
    if not len(points):
        centre = np.array(lesion.shape, dtype=np.float64) / 2
        return centre, centre
    k = int(np.bincount(points[:, 2]).argmax())
    plane = points[points[:, 2] == k].astype(np.float64)
    mm = plane[:, :2] * spacing[:2]
    if len(mm) == 1:
        return plane[0], plane[0]
    diff = mm[:, None, :] - mm[None, :, :]
    i, j = np.unravel_index(np.argmax((diff**2).sum(-1)), (len(mm), len(mm)))
    return plane[i], plane[j]


def _augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    for axis in (1, 2, 3):
        if rng.random() < 0.5:
            x, y = np.flip(x, axis), np.flip(y, axis)
    if rng.random() < 0.5:
        x, y = np.swapaxes(x, 1, 2), np.swapaxes(y, 1, 2)
    x = np.ascontiguousarray(x)
    for channel in (0, 2):
        x[channel] = x[channel] * np.float32(rng.uniform(0.9, 1.1)) + np.float32(
            rng.uniform(-0.05, 0.05))
    return x, np.ascontiguousarray(y)
