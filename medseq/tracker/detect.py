"""New lesions: by subtraction (the default, :mod:`medseq.tracker.subtraction`) or by a
network without a prompt slid over the follow-up's body.

The network's prompt and baseline-mask channels are zero, so it segments every lesion it
sees (it is trained so on the ``detect`` samples); with ``detect_context`` the baseline
channel holds the baseline image carried onto the window, so it also sees what was there
before. Windows overlap by a quarter; probabilities are averaged. Either way, components that
no baseline lesion explains (they touch no tracked lesion's mask, grown by one voxel for the
network and two for subtraction, and their centroid is farther than the lesion's radius +
10 mm from every baseline lesion's propagated position) are proposals, kept when their score
reaches the threshold chosen on training patients (:func:`choose_threshold` on the held-out
ones for a network, :func:`choose_subtraction_threshold` on all of them for subtraction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medseq.tracker.prompt import crop
from medseq.tracker.segment import Tracker

EXPLAIN_MARGIN_MM = 10.0


@dataclass(frozen=True)
class Candidate:
    """A proposed new lesion."""

    mask: np.ndarray
    """Boolean, on the follow-up's grid."""
    score: float
    centroid: np.ndarray
    """Voxel coordinates."""


def detect_new(tracker: Tracker, image: np.ndarray, body: np.ndarray, spacing: np.ndarray, *,
               tracked: Sequence[np.ndarray], baseline: Sequence[np.ndarray],
               min_score: float = 0.0, baseline_image: np.ndarray | None = None,
               to_view: np.ndarray | None = None) -> list[Candidate]:
    """Candidates not explained by ``tracked`` (follow-up masks) or ``baseline`` lesions (both
    on the follow-up's grid). ``baseline_image`` (registered grid, reached by ``to_view``;
    None: the identity) is the context for a tracker trained with ``detect_context``."""
    from scipy import ndimage

    config = tracker.config
    probability = sliding_window(tracker, image, body, baseline_image, to_view)
    components, count = ndimage.label((probability >= config.threshold) & body,
                                      structure=np.ones((3, 3, 3)))
    if not count:
        return []
    explained = _explained(image.shape, tracked)
    anchors = _anchors(baseline, spacing)
    out = []
    for j, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        mask = np.zeros(image.shape, dtype=bool)
        mask[box] = components[box] == j
        if int(mask.sum()) < config.min_new_voxels or (explained & mask).any():
            continue
        centroid = np.argwhere(mask).mean(axis=0)
        if _near_anchor(centroid, anchors, spacing):
            continue
        score = float(probability[mask].max())
        if score >= min_score:
            out.append(Candidate(mask=mask, score=score, centroid=centroid))
    return out


def detect_by_subtraction(image: np.ndarray, body: np.ndarray, spacing: np.ndarray, *,
                          tracked: Sequence[np.ndarray], baseline: Sequence[np.ndarray],
                          baseline_image: np.ndarray, to_view: np.ndarray | None,
                          preprocess_config: Mapping[str, Any], min_score: float = 0.0,
                          min_voxels: int = 2) -> list[Candidate]:
    """New-lesion candidates of :mod:`medseq.tracker.subtraction` not explained by
    ``tracked`` (follow-up masks) or ``baseline`` lesions (both on the follow-up's grid);
    ``baseline_image`` is on the registered grid, reached by ``to_view``."""
    from medseq.tracker.subtraction import (
        Levels,
        covered,
        resample_to_view,
        subtraction_candidates,
    )

    carried = resample_to_view(baseline_image, to_view, image.shape)
    body = body & covered(to_view, baseline_image.shape, image.shape, spacing)
    explained = np.zeros(image.shape, dtype=bool)
    for mask in [*tracked, *baseline]:
        explained |= mask
    anchors = _anchors(baseline, spacing)
    out = []
    for blob in subtraction_candidates(image, carried, body, spacing, explained,
                                       Levels.for_cache(preprocess_config)):
        if blob.voxels < min_voxels or blob.score < min_score:
            continue
        centroid = blob.centroid()
        if not _near_anchor(centroid, anchors, spacing):
            out.append(Candidate(mask=blob.full(image.shape), score=blob.score,
                                 centroid=centroid))
    return out


def _explained(shape: tuple[int, ...], tracked: Sequence[np.ndarray]) -> np.ndarray:
    """The tracked lesions grown by one voxel."""
    from scipy import ndimage

    explained = np.zeros(shape, dtype=bool)
    for mask in tracked:
        explained |= mask
    return ndimage.binary_dilation(explained, structure=np.ones((3, 3, 3)))


def _anchors(baseline: Sequence[np.ndarray], spacing: np.ndarray
             ) -> list[tuple[np.ndarray, float]]:
    """(carried centroid, radius + ``EXPLAIN_MARGIN_MM``) of every baseline lesion."""
    anchors = []
    for mask in baseline:
        voxels = int(mask.sum())
        if not voxels:
            continue
        radius = (3 * voxels * float(np.prod(spacing)) / (4 * np.pi)) ** (1 / 3)
        anchors.append((np.argwhere(mask).mean(axis=0), radius + EXPLAIN_MARGIN_MM))
    return anchors


def _near_anchor(centroid: np.ndarray, anchors: Sequence[tuple[np.ndarray, float]],
                 spacing: np.ndarray) -> bool:
    return any(np.linalg.norm((centroid - a) * spacing) <= r for a, r in anchors)


def sliding_window(tracker: Tracker, image: np.ndarray, body: np.ndarray,
                   baseline_image: np.ndarray | None = None,
                   to_view: np.ndarray | None = None) -> np.ndarray:
    """Mean probability of the unprompted network over windows covering the body's box."""
    from medseq.tracker.views import sample_crop

    size = tracker.config.crop_size
    step = max(1, size * 3 // 4)
    inside = np.argwhere(body)
    if not len(inside):
        return np.zeros(image.shape, dtype=np.float32)
    lo, hi = inside.min(axis=0), inside.max(axis=0) + 1
    starts = [_starts(int(a), int(b), size, step) for a, b in zip(lo, hi, strict=True)]
    centres = [np.array([x, y, z]) + size // 2 for x in starts[0] for y in starts[1]
               for z in starts[2]]
    inputs = np.zeros((len(centres), 4, size, size, size), dtype=np.float32)
    context = tracker.config.detect_context and baseline_image is not None
    matrix = np.eye(4) if to_view is None else np.asarray(to_view, dtype=np.float64)
    for n, centre in enumerate(centres):
        inputs[n, 0] = crop(image, centre, size)
        if context:
            assert baseline_image is not None
            inputs[n, 2] = sample_crop(baseline_image, matrix, centre, size, order=1)
    predictions = tracker.predict_detection(inputs)
    total = np.zeros(image.shape, dtype=np.float32)
    weight = np.zeros(image.shape, dtype=np.float32)
    for centre, prob in zip(centres, predictions, strict=True):
        _accumulate(total, weight, prob, centre)
    return total / np.maximum(weight, 1.0)


def _starts(lo: int, hi: int, size: int, step: int) -> list[int]:
    if hi - lo <= size:
        return [lo + (hi - lo - size) // 2]
    out = list(range(lo, hi - size, step))
    out.append(hi - size)
    return out


def _accumulate(total: np.ndarray, weight: np.ndarray, block: np.ndarray,
                centre: np.ndarray) -> None:
    size = block.shape[0]
    src, dst = [], []
    for c, n in zip(centre, total.shape, strict=True):
        start = int(c) - size // 2
        lo, hi = max(start, 0), min(start + size, n)
        dst.append(slice(lo, hi))
        src.append(slice(lo - start, hi - start))
    total[tuple(dst)] += block[tuple(src)]
    weight[tuple(dst)] += 1.0


def choose_threshold(scored: Sequence[tuple[float, bool]], scans: int, max_fp_per_scan: float
                     ) -> float | None:
    """The lowest score threshold whose false positives per scan stay within the limit.

    ``scored``: (score, is a true new lesion) for every candidate of the held-out scans. None
    when no threshold qualifies: there were no candidates at all (the unprompted network
    proposed nothing), the top-scoring ones already exceed the limit, or the threshold keeps
    no true new lesion of the held-out scans (a detector that finds none there adds only
    false positives, each of which makes its follow-up PD). The detector is then off (a
    number such as 1.0 would still pass a saturated probability).
    """
    allowed = max_fp_per_scan * max(scans, 1)
    best = None
    for threshold in sorted({s for s, _ in scored}, reverse=True):
        false_positives = sum(1 for s, true in scored if s >= threshold and not true)
        if false_positives > allowed:
            break
        best = threshold
    if best is None or not any(true and s >= best for s, true in scored):
        return None
    return best


def choose_subtraction_threshold(scores: Sequence[tuple[float, bool]], scans: int,
                                 max_fp_per_scan: float) -> float | None:
    """The lowest score threshold whose false positives (candidates that are no true new
    lesion) stay within ``max_fp_per_scan`` on ``scans`` training follow-ups.

    Unlike :func:`choose_threshold` a true new lesion above it is not required: the score is
    not learned, so the false positives alone fix what it costs (each makes its follow-up PD),
    and a training cohort's new lesions may all lie in tissue where subtraction sees none.
    None: no candidate at all (nothing to threshold). With fewer false positives than allowed,
    the lowest score seen.
    """
    if not scores:
        return None
    allowed = int(np.floor(max_fp_per_scan * max(scans, 1) + 1e-9))
    false = sorted((s for s, true in scores if not true), reverse=True)
    if allowed >= len(false):
        return float(min(s for s, _ in scores))
    return float(np.nextafter(false[allowed], np.inf))
