"""Local scale registration: a lesion that grew, shrank, moved or vanished between two crops,
and the prior the tracker then sees."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from medseq.tracker.config import TrackerConfig
from medseq.tracker.refine import IDENTITY, FitLevels, fit_scale, scaled_view
from medseq.tracker.segment import track_lesions
from medseq.tracker.views import sample_crop
from tests.tracker.test_fill import StubTracker
from tests.tracker.tiny_cache import CONFIG

SIZE = 24
CENTRE = np.array([11.6, 12.2, 11.8])
SPACING = np.array([4.0, 4.0, 5.0])
LEVELS = FitLevels.for_cache(CONFIG)


def _lesion(scale: float, shift: tuple[float, float, float] = (0.0, 0.0, 0.0), *,
            seed: int = 0, tissue: float = 0.52, noise: float = 0.008, rim: float = 0.14
            ) -> tuple[np.ndarray, np.ndarray]:
    """A crop of a textured lesion (dark core, bright rim) of radius 4.5 * scale voxels (in mm
    on SPACING, scaled about CENTRE + shift) in flat tissue, with partial volume from 3^3
    supersampling, and its mask (voxel centres inside)."""
    sub = (np.arange(SIZE * 3) + 0.5) / 3 - 0.5
    grid = np.stack(np.meshgrid(sub, sub, sub, indexing="ij"), axis=-1)
    d = (grid - CENTRE - np.asarray(shift)) * SPACING / 4.0
    r = np.sqrt((d**2).sum(-1)) / (4.5 * max(scale, 1e-6))
    inside = r < 1
    value = np.where(inside, 0.43 + rim * np.clip((r - 0.7) / 0.15, 0, 1), tissue)
    if rim:
        value = value + inside * 0.02 * np.cos(d[..., 0] / max(scale, 1e-6))
    image = value.reshape(SIZE, 3, SIZE, 3, SIZE, 3).mean(axis=(1, 3, 5))
    image += np.random.default_rng(seed).normal(0, noise, image.shape)
    centres = inside.reshape(SIZE, 3, SIZE, 3, SIZE, 3)[:, 1, :, 1, :, 1]
    return image.astype(np.float32), centres


@pytest.mark.parametrize("scale", [0.55, 1.0, 1.45])
def test_fit_recovers_growth_and_shrinkage_under_an_organ_offset(scale: float) -> None:
    baseline, mask = _lesion(1.0)
    follow_up, _ = _lesion(scale, (0.3, -0.2, 0.1), seed=1, tissue=0.53)
    fit = fit_scale(follow_up, baseline, mask.astype(np.float32), CENTRE, LEVELS)
    assert fit.scale == pytest.approx(scale, rel=0.08)


@pytest.mark.parametrize("scale", [0.55, 1.45])
def test_the_scale_prior_leaves_a_visible_change_alone(scale: float) -> None:
    baseline, mask = _lesion(1.0)
    follow_up, _ = _lesion(scale, (0.3, -0.2, 0.1), seed=1, tissue=0.53)
    plain = fit_scale(follow_up, baseline, mask.astype(np.float32), CENTRE, LEVELS)
    prior = fit_scale(follow_up, baseline, mask.astype(np.float32), CENTRE,
                      replace(LEVELS, prior_sd=0.6))
    assert prior.scale == pytest.approx(plain.scale, rel=0.02)


def test_the_scale_prior_keeps_a_lesion_lost_in_noise_at_about_its_size() -> None:
    """An unchanged lesion on a follow-up whose noise (100 HU) hides it: least squares lands
    anywhere in the search range; with the prior, near 1."""
    baseline, mask = _lesion(1.0)
    plain, prior = [], []
    for seed in range(6):
        follow_up, _ = _lesion(1.0, seed=30 + seed, tissue=0.53, noise=0.2)
        plain.append(fit_scale(follow_up, baseline, mask.astype(np.float32), CENTRE,
                               LEVELS).scale)
        prior.append(fit_scale(follow_up, baseline, mask.astype(np.float32), CENTRE,
                               replace(LEVELS, prior_sd=0.6)).scale)
    assert max(abs(np.log(prior))) < 0.3
    assert max(abs(np.log(plain))) > 0.6


def test_a_lesion_the_registration_left_a_voxel_off_keeps_its_size() -> None:
    """Without the shift search it would fit as a smaller lesion (a small one as none)."""
    baseline, mask = _lesion(1.0)
    follow_up, _ = _lesion(1.0, (1.0, 0.0, -1.0), seed=5, tissue=0.53)
    fit = fit_scale(follow_up, baseline, mask.astype(np.float32), CENTRE, LEVELS)
    assert fit.shift == (1.0, 0.0, -1.0)
    assert fit.scale == pytest.approx(1.0, rel=0.05)


def test_a_vanished_lesion_fits_the_smallest_scale_and_an_empty_mask_the_identity() -> None:
    baseline, mask = _lesion(1.0)
    gone = np.full_like(baseline, 0.52) + np.random.default_rng(3).normal(
        0, 0.008, baseline.shape).astype(np.float32)
    assert fit_scale(gone, baseline, mask.astype(np.float32), CENTRE, LEVELS).scale < 0.3
    assert fit_scale(gone, baseline, np.zeros_like(baseline), CENTRE, LEVELS) == IDENTITY


def test_a_vanished_lesion_is_not_fitted_as_one_covering_its_organ() -> None:
    """A hyperdense kidney lesion (+20 HU) gone at a follow-up where the kidney moved by a
    voxel within its fat. Grown over the whole cost region, the flat lesion hides the moved
    kidney edge; were the organ offset re-fitted at each scale, its 20 HU would be absorbed
    and that fit would beat "no lesion" (measured: scale 2.24, the search's largest). The
    offset is taken once, from a ring outside what the lesion can grow into."""
    grid = np.indices((SIZE,) * 3).transpose(1, 2, 3, 0).astype(float)
    lesion = np.linalg.norm(grid - CENTRE, axis=-1) <= 3.2

    def scan(kidney_shift: float, with_lesion: bool, seed: int) -> np.ndarray:
        kidney = np.linalg.norm(grid - CENTRE - [kidney_shift, 2.0, 0.0], axis=-1) <= 7.5
        image = np.where(kidney, 0.45, 0.2)  # 25 HU in -100 HU fat
        if with_lesion:
            image = np.where(lesion, 0.49, image)
        return (image + np.random.default_rng(seed).normal(0, 0.008, image.shape)).astype(
            np.float32)

    fit = fit_scale(scan(1.0, False, 1), scan(0.0, True, 0), lesion.astype(np.float32), CENTRE,
                    LEVELS)
    assert fit.scale < 0.3


def test_scaled_view_scales_the_carried_mask_about_the_point() -> None:
    _, mask = _lesion(1.0)
    to_view = np.eye(4)
    to_view[:3, 3] = [0.4, -0.3, 0.2]  # registered voxel r is view voxel r + shift
    point = CENTRE + to_view[:3, 3]
    centre = np.rint(point).astype(int)
    fit = IDENTITY.__class__(0.6, (0.0, 0.0, 0.0), 0.0)
    carried = sample_crop(mask.astype(np.float32), scaled_view(to_view, point, fit), centre,
                          SIZE, order=1) >= 0.5
    local = point - centre + SIZE // 2
    moved = local - CENTRE
    _, expected = _lesion(0.6, (float(moved[0]), float(moved[1]), float(moved[2])))
    # the scaled mask keeps its centroid at the point, its volume goes with the scale cubed
    assert np.allclose(np.argwhere(carried).mean(0), local, atol=0.35)
    assert carried.sum() == pytest.approx(mask.sum() * 0.6**3, rel=0.2)
    assert (carried & expected).sum() / expected.sum() > 0.8


def test_track_lesions_hands_the_network_the_scaled_prior() -> None:
    baseline, mask = _lesion(1.0)
    follow_up, truth = _lesion(0.6, seed=2, tissue=0.53)
    stub = StubTracker()  # returns the prior mask channel as its output
    results = {}
    for refine in ("none", "scale"):
        stub.config = TrackerConfig(crop_size=SIZE, prior_refine=refine, flip_average=False)
        (outcome,) = track_lesions(stub, follow_up, baseline, [mask], SPACING)  # type: ignore[arg-type]
        assert outcome.mask is not None
        results[refine] = outcome.mask
    assert results["none"].sum() == mask.sum()
    dice = {k: 2 * (v & truth).sum() / (v.sum() + truth.sum()) for k, v in results.items()}
    assert dice["scale"] > 0.8 > dice["none"]


def test_track_lesions_fits_with_the_cards_scale_prior() -> None:
    baseline, mask = _lesion(1.0)
    follow_up, _ = _lesion(1.0, seed=31, tissue=0.53, noise=0.2)  # plain fit: 1.78
    stub = StubTracker()  # returns the prior mask channel as its output
    sizes = {}
    for sd in (0.0, 0.6):
        stub.config = TrackerConfig(crop_size=SIZE, scale_prior_sd=sd, flip_average=False)
        (outcome,) = track_lesions(stub, follow_up, baseline, [mask], SPACING)  # type: ignore[arg-type]
        assert outcome.mask is not None
        sizes[sd] = int(outcome.mask.sum())
    assert sizes[0.0] > 3 * mask.sum()
    assert sizes[0.6] < 2.5 * mask.sum()
