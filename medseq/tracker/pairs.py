"""Training samples from a cache whose timepoints have masks.

Every patient is loaded once: the baseline on the registered grid, each follow-up on its own
grid when the cache keeps the source image (:mod:`medseq.tracker.views`; else the registered
grid), with the normalised image and the 26-connected lesion components of the mask on that
grid. Baseline lesions are linked to follow-up components by overlap on the registered grid,
else by the nearest centroid within ``r_a + r_b + 10`` mm; a follow-up component linked to none
is a new lesion. Three kinds of sample are drawn:

- **track**: [follow-up crop, point prompt, baseline crop, baseline lesion mask] -> the
  lesion's follow-up mask (empty when it vanished). The crop lies on the follow-up's grid around
  the propagated baseline centroid; the two baseline channels are sampled onto it (trilinear).
  The follow-up image and target are displaced from the others by a random simulated
  registration error (``jitter_mm``).
- **self**: [crop, point or RECIST-line prompt, the same crop, zeros] -> the lesion's mask at
  that timepoint (a baseline annotation becoming a mask).
- **detect**: [crop, zeros, baseline crop carried onto it (``detect_context``; the crop itself
  at baseline), zeros] -> every lesion in the crop (new-lesion detection). Half of them are
  centred near a lesion, and then on a new one (at a follow-up that has one) half the time.
  With ``detect_target: new`` the context is another timepoint, earlier or later, and the
  target only the lesions it lacks.

Links are made for every ordered pair of timepoints (``pair_links``, ``pair_new``): with
``track_pairs: all`` a tracking sample's prior may be any other timepoint, time reversed too.

Augmentations change no lesion's size: flips, a swap of the two in-plane axes, intensity
scale and shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medseq.contracts.cache import PatientRecord, TimepointRecord
from medseq.errors import CacheError
from medseq.preprocess.config import PreprocessConfig
from medseq.tracker.config import TrackerConfig
from medseq.tracker.prompt import crop, line_prompt, point_prompt
from medseq.tracker.refine import SOFT_CLIP_HU, FitLevels, ScaleFit, fit_carried, scaled_view

if TYPE_CHECKING:
    from medseq.tracker.views import View

LINK_MARGIN_MM = 10.0


@dataclass
class Timepoint:
    """One timepoint as the tracker sees it: the baseline on the registered grid, a follow-up
    on its own grid when the cache keeps it (:mod:`medseq.tracker.views`)."""

    image: np.ndarray
    """float16, normalised like the cache's crops."""
    components: np.ndarray
    """int16 component labels 1..n of the mask on this grid."""
    centroids: np.ndarray
    """[n, 3] voxel coordinates on this grid."""
    voxels: np.ndarray
    """[n] voxel counts."""
    body: np.ndarray
    spacing: np.ndarray = field(default_factory=lambda: np.ones(3))
    to_view: np.ndarray = field(default_factory=lambda: np.eye(4))
    """Registered voxel index -> this grid's voxel index (identity on the registered grid)."""


@dataclass
class PatientData:
    patient_id: str
    timepoints: list[Timepoint]
    spacing: np.ndarray
    """The registered grid's spacing (the baseline's)."""
    pair_links: dict[tuple[int, int], dict[int, list[int]]] = field(default_factory=dict)
    """(source, target) timepoints: source component -> target components carrying it (every
    ordered pair)."""
    pair_new: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    """(source, target): target components no source component explains."""
    levels: FitLevels | None = None
    """The cache's levels for ``prior_refine: scale`` (None: the default preprocessing's)."""
    fits: dict[tuple[int, int, int], ScaleFit] = field(default_factory=dict)
    """(source, target, source component): the prior's scale fit, computed once."""

    @property
    def links(self) -> list[dict[int, list[int]]]:
        """Per timepoint: baseline lesion (1-based) -> follow-up components carrying it."""
        return [self.pair_links[0, t] for t in range(len(self.timepoints))]

    @property
    def new(self) -> list[list[int]]:
        """Per timepoint: components no baseline lesion explains."""
        return [self.pair_new[0, t] for t in range(len(self.timepoints))]


def normaliser(manifest_config: dict[str, object]) -> PreprocessConfig:
    """The cache's preprocessing settings (defaults for keys an older cache lacks)."""
    known = set(PreprocessConfig.model_fields)
    return PreprocessConfig.model_validate({k: v for k, v in manifest_config.items()
                                            if k in known})


def load_patient(cache_dir: Path, record: PatientRecord, config: PreprocessConfig, *,
                 native: bool = True) -> PatientData | None:
    """Every timepoint of a patient whose masks all exist, else None: the baseline on the
    registered grid, each follow-up on its own grid (``native`` and the cache keeps it)."""
    from medseq.tracker.views import load_view

    if record.status != "ok" or not record.timepoints:
        return None
    if any(not tp.mask for tp in record.timepoints):
        return None
    timepoints = []
    for index, tp in enumerate(record.timepoints):
        view = load_view(cache_dir, record, index, config, native=native and index > 0)
        mask = _view_mask(cache_dir, tp, view)
        if mask is None:  # the source mask is not on the source image's grid
            view = load_view(cache_dir, record, index, config, native=False)
            mask = _view_mask(cache_dir, tp, view)
        assert mask is not None
        timepoints.append(timepoint(view.image, mask, view.body, view.spacing, view.to_view))
    data = linked(record.patient_id, timepoints)
    data.levels = FitLevels.for_cache(config.model_dump())
    return data


def linked(patient_id: str, timepoints: list[Timepoint]) -> PatientData:
    """A patient's timepoints (the first on the registered grid) with the lesion links of
    every ordered pair of them."""
    data = PatientData(patient_id, timepoints, timepoints[0].spacing)
    for s, source in enumerate(timepoints):
        for t, target in enumerate(timepoints):
            data.pair_links[s, t], data.pair_new[s, t] = link(source, target)
    return data


def _view_mask(cache_dir: Path, tp: TimepointRecord, view: View) -> np.ndarray | None:
    """The timepoint's mask on the view's grid (None: the source mask is on another grid)."""
    from medseq.io.nifti import load_nifti

    path = Path(cache_dir) / str(tp.mask_native if view.native and tp.mask_native else tp.mask)
    if not path.is_file():
        raise CacheError("mask named in manifest.json is missing", path=path)
    volume = load_nifti(path)
    if view.native and (volume.array.shape != view.image.shape
                        or not np.allclose(volume.affine, view.affine, atol=1e-3)):
        return None
    return np.asarray(volume.array > 0)


def timepoint(image: np.ndarray, mask: np.ndarray, body: np.ndarray, spacing: np.ndarray,
              to_view: np.ndarray) -> Timepoint:
    """A timepoint from its image and mask on one grid (``to_view``: registered -> it)."""
    from scipy import ndimage

    components, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    ids = np.arange(1, count + 1)
    voxels = ndimage.sum_labels(np.ones(mask.shape), components, ids) if count else np.zeros(0)
    centroids = (np.array(ndimage.center_of_mass(mask, components, ids)).reshape(count, 3)
                 if count else np.zeros((0, 3)))
    return Timepoint(image=image, components=components.astype(np.int16), centroids=centroids,
                     voxels=np.asarray(voxels), body=body, spacing=np.asarray(spacing),
                     to_view=np.asarray(to_view, dtype=np.float64))


def link(base: Timepoint, follow: Timepoint) -> tuple[dict[int, list[int]], list[int]]:
    """Components of ``follow`` per component of ``base`` (overlap on ``base``'s grid, else the
    nearest centroid) and the rest. Either may be any timepoint (each knows its grid)."""
    from medseq.tracker.views import apply

    links: dict[int, list[int]] = {i: [] for i in range(1, len(base.voxels) + 1)}
    new: list[int] = []
    back = base.to_view @ np.linalg.inv(follow.to_view)
    where = np.argwhere(follow.components > 0)
    labels = follow.components[tuple(where.T)].astype(np.int64)
    source = np.rint(apply(back, where)).astype(np.int64)
    inside = np.all((source >= 0) & (source < np.asarray(base.components.shape)), axis=1)
    hit = np.zeros(len(where), dtype=np.int64)
    hit[inside] = base.components[tuple(source[inside].T)]
    n_base = len(base.voxels)
    overlap = np.zeros((len(follow.voxels) + 1, n_base + 1), dtype=np.int64)
    np.add.at(overlap, (labels, hit), 1)
    base_ml = float(np.prod(base.spacing)) / 1000.0
    follow_ml = float(np.prod(follow.spacing)) / 1000.0
    radius = lambda ml: (3 * ml * 1000 / (4 * np.pi)) ** (1 / 3)  # noqa: E731
    centroids = apply(back, follow.centroids) if len(follow.voxels) else follow.centroids
    for j in range(1, len(follow.voxels) + 1):
        counts = overlap[j, 1:]
        if counts.size and counts.max() > 0:
            links[int(np.argmax(counts)) + 1].append(j)
            continue
        best, best_d = 0, np.inf
        for i in range(1, n_base + 1):
            d = float(np.linalg.norm((base.centroids[i - 1] - centroids[j - 1]) * base.spacing))
            limit = (radius(base.voxels[i - 1] * base_ml) + radius(follow.voxels[j - 1]
                                                                     * follow_ml)
                     + LINK_MARGIN_MM)
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
    """Component of the prior timepoint ``source`` (track; a baseline lesion unless
    ``track_pairs: all``), component at the timepoint (self), unused (detect)."""
    change: float = 0.0
    """Track items: |log| of the lesion's follow-up to baseline volume ratio (+1 voxel each)."""
    source: int = 0
    """Track items: the timepoint whose lesion is the prior (0: the baseline)."""


def items(patients: Sequence[PatientData], pairs: str = "baseline") -> dict[str, list[Item]]:
    """Every sample location, by kind; ``pairs`` as ``TrackerConfig.track_pairs``."""
    out: dict[str, list[Item]] = {"track": [], "self": [], "detect": []}
    for p, data in enumerate(patients):
        for t, tp in enumerate(data.timepoints):
            out["detect"].append(Item("detect", p, t, 0))
            out["self"] += [Item("self", p, t, j) for j in range(1, len(tp.voxels) + 1)]
            sources = range(len(data.timepoints)) if pairs == "all" else [0]
            for s in sources:
                if s == t:
                    continue
                prior = data.timepoints[s]
                for i, parts in data.pair_links[s, t].items():
                    voxels = float(sum(tp.voxels[j - 1] for j in parts))
                    ratio = (voxels + 1) / (float(prior.voxels[i - 1]) + 1)
                    out["track"].append(Item("track", p, t, i, abs(float(np.log(ratio))), s))
    return out


def sample(item: Item, data: PatientData, config: TrackerConfig,
           rng: np.random.Generator, *, augment: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(input [4, S, S, S] float32, target [1, S, S, S] float32) for one item."""
    from medseq.tracker.views import apply, sample_crop

    size = config.crop_size
    tp = data.timepoints[item.timepoint]
    spacing = tp.spacing
    x = np.zeros((4, size, size, size), dtype=np.float32)
    if item.kind == "track":
        base = data.timepoints[item.source]
        carry = tp.to_view @ np.linalg.inv(base.to_view)  # prior's grid -> this grid
        point = apply(carry, base.centroids[item.lesion - 1])
        centre = np.rint(point + rng.normal(0, 1.0, 3)).astype(int)
        if config.prior_refine == "scale":
            fit = prior_fit(item, data, carry, point, size)
            carry = scaled_view(carry, point, fit)
            point = point + np.asarray(fit.shift)  # the prompt follows the prior
        shift = np.clip(rng.normal(0, config.jitter_mm, 3), -2 * config.jitter_mm,
                        2 * config.jitter_mm) / spacing if augment else np.zeros(3)
        moved = centre + np.rint(shift).astype(int)
        x[0] = crop(tp.image, moved, size)
        to_view = carry
        if augment and config.prior_zoom > 0:
            to_view = to_view @ _zoom(base.centroids[item.lesion - 1],
                                      float(np.exp(rng.uniform(-config.prior_zoom,
                                                               config.prior_zoom))))
        x[2] = sample_crop(base.image, to_view, centre, size, order=1)
        x[3] = sample_crop(base.components == item.lesion, to_view, centre, size, order=1)
        x[1] = point_prompt(size, point - centre + size // 2, spacing, config.prompt_sigma_mm)
        y = np.isin(crop(tp.components, moved, size),
                    data.pair_links[item.source, item.timepoint][item.lesion])
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
        t = item.timepoint
        if config.detect_target == "new":
            # The context is another timepoint, earlier or later; half the time one against
            # which this timepoint has a new lesion, centred near it.
            others = [s for s in range(len(data.timepoints)) if s != t] or [t]
            with_new = [s for s in others if data.pair_new[s, t]]
            if with_new and rng.random() < 0.5:
                source = with_new[int(rng.integers(len(with_new)))]
                new = data.pair_new[source, t]
            else:
                source = others[int(rng.integers(len(others)))]
                new = []
        else:
            source, new = 0, data.new[t] if t else []
        near = (bool(new) or rng.random() < 0.5) if config.detect_target == "new" else (
            rng.random() < 0.5)
        if len(tp.voxels) and near:
            j = (int(new[int(rng.integers(len(new)))]) - 1 if new and (
                config.detect_target == "new" or rng.random() < 0.5)
                 else int(rng.integers(len(tp.voxels))))
            centre = np.rint(tp.centroids[j] + rng.uniform(-size / 3, size / 3, 3)).astype(int)
        else:
            inside = np.argwhere(tp.body[::2, ::2, ::2]) * 2
            centre = (inside[int(rng.integers(len(inside)))] if len(inside)
                      else np.array(tp.image.shape) // 2)
        x[0] = crop(tp.image, centre, size)
        context = data.timepoints[source]
        if config.detect_context:
            x[2] = (sample_crop(context.image, tp.to_view @ np.linalg.inv(context.to_view),
                                centre, size, order=1) if source != t else x[0])
        components = crop(tp.components, centre, size)
        if config.detect_target == "new":
            y = np.isin(components, data.pair_new[source, t]) & (components > 0)
        else:
            y = components > 0
        if config.detect_insert > 0 and rng.random() < config.detect_insert:
            pasted = insert_lesion(x[0], components, data, rng)
            if pasted is not None:
                y = y | pasted
    target = y[None].astype(np.float32)
    if augment:
        x, target = _augment(x, target, rng)
    return x, target


INSERT_PATCH = 14
"""Edge (voxels) of the patch a pasted lesion is cut from."""
INSERT_MAX_VOXELS = 300
INSERT_TISSUE_HU = 40.0
"""A lesion is pasted where the follow-up's smoothed value is within this of the median of
the tissue around it at its own scan."""


def surrounding_tissue(lesion: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The tissue around a lesion: between its 1- and 3-voxel dilations, lesions excluded."""
    from scipy import ndimage

    return (ndimage.binary_dilation(lesion, iterations=3) & ~ndimage.binary_dilation(lesion)
            & (labels == 0))


def insert_lesion(window: np.ndarray, components: np.ndarray, data: PatientData,
                  rng: np.random.Generator) -> np.ndarray | None:
    """Paste one of the patient's lesions into ``window`` (in place) as a new lesion: its
    difference from its surrounding tissue, cut with its mask grown by a voxel, lightly
    smoothed (so its noise does not add to the window's), shrunk by a random factor, added at
    a voxel of similar tissue away from the window's lesions. The pasted mask, or None where
    no lesion or spot qualifies."""
    from scipy import ndimage

    choices = [(u, j) for u, tp in enumerate(data.timepoints)
               for j in range(1, len(tp.voxels) + 1) if 3 <= tp.voxels[j - 1] <= INSERT_MAX_VOXELS]
    if not choices:
        return None
    u, j = choices[int(rng.integers(len(choices)))]
    source = data.timepoints[u]
    centre = np.rint(source.centroids[j - 1]).astype(int)
    image = crop(source.image, centre, INSERT_PATCH).astype(np.float32)
    labels = crop(source.components, centre, INSERT_PATCH)
    lesion = labels == j
    grown = ndimage.binary_dilation(lesion)
    ring = surrounding_tissue(lesion, labels)
    if not lesion.any() or not ring.any():
        return None
    tissue = float(np.median(image[ring]))
    contrast = ndimage.gaussian_filter(np.where(grown, image - tissue, 0.0), 0.6)
    zoom = float(np.exp(rng.uniform(np.log(0.6), 0.0)))
    contrast = ndimage.zoom(contrast, zoom, order=1)
    mask = ndimage.zoom(lesion.astype(np.float32), zoom, order=1) >= 0.5
    if mask.sum() < 2:
        return None
    levels = data.levels or FitLevels.for_cache({})
    tolerance = INSERT_TISSUE_HU * levels.soft_clip / SOFT_CLIP_HU
    half = np.array(mask.shape) // 2
    free = ~ndimage.binary_dilation(components > 0, iterations=int(half.max()) + 2)
    spots = free & (np.abs(ndimage.uniform_filter(window, 3) - tissue) < tolerance)
    spots[:half[0]] = spots[-half[0] - 1:] = False
    spots[:, :half[1]] = spots[:, -half[1] - 1:] = False
    spots[:, :, :half[2]] = spots[:, :, -half[2] - 1:] = False
    candidates = np.argwhere(spots)
    if not len(candidates):
        return None
    at = candidates[int(rng.integers(len(candidates)))] - half
    box = tuple(slice(a, a + n) for a, n in zip(at, mask.shape, strict=True))
    window[box] += contrast.astype(np.float32)
    out = np.zeros(window.shape, dtype=bool)
    out[box] = mask
    return out


def prior_fit(item: Item, data: PatientData, carry: np.ndarray, point: np.ndarray,
              size: int) -> ScaleFit:
    """The local scale fit of a tracking item's prior (:mod:`medseq.tracker.refine`), on
    crops centred on the propagated point, computed once per item."""
    key = (item.source, item.timepoint, item.lesion)
    if key not in data.fits:
        base, tp = data.timepoints[item.source], data.timepoints[item.timepoint]
        data.fits[key] = fit_carried(tp.image, base.image, base.components == item.lesion, carry,
                                     point, size, data.levels or FitLevels.for_cache({}))
    return data.fits[key]


def _zoom(centre: np.ndarray, scale: float) -> np.ndarray:
    """4x4 scaling by ``scale`` about ``centre`` (voxel coordinates)."""
    matrix = np.eye(4)
    matrix[:3, :3] *= scale
    matrix[:3, 3] = (1 - scale) * np.asarray(centre, dtype=np.float64)
    return matrix


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
