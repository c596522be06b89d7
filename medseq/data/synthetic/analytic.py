"""Lesion diameters from the analytic shape, without a voxel mask.

A lesion is star-shaped about its centre ``c``: along each unit direction ``u`` of its own frame
its surface lies at ``R(u) = scale * (1 + sum_m a_m cos(k_m . u + phi_m)) / |u / radii|`` (see
:mod:`.lesions`). An axial plane of the scan (world z = the plane's z) cuts it in a planar
region; the region's boundary is found by walking rays in the plane from the foot of the
perpendicular from ``c`` and locating every sign change of ``|p - c| - R(u(p))`` (refined by a
few bisections and a secant step). The longest axial diameter is the largest distance between
two boundary points, the short axis the region's extent perpendicular to it, and the lesion's
value is that of the plane with the longest diameter, over the scan's own slice planes (the
planes a mask on this grid samples). Nothing here looks at a rasterised mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError, cKDTree

from medseq.data.synthetic.geometry import Grid
from medseq.data.synthetic.lesions import LesionShape

RAYS = 180
"""In-plane directions per slice plane (the chord error is second order in the ray spacing)."""
RAY_SAMPLES = 32
"""Samples along each ray before bisection; boundary crossings closer than one step are missed."""
SURFACE_SAMPLES = 2000
"""Directions along which :func:`sample_surface` samples a lesion's surface."""
CHORD_ERROR_MM = 0.02
"""How much the ray sampling may underestimate a chord (measured: under 0.01 mm against 720
rays and 128 samples per ray)."""
BISECTIONS = 6
"""Halvings of a crossing's bracket before the secant step (a 1 mm step ends at 0.016 mm, where
the secant is exact to well under 1e-4 mm for these smooth surfaces)."""


@dataclass(frozen=True)
class Section:
    """A lesion's longest axial diameter and perpendicular short axis, from its shape (mm)."""

    longest_mm: float
    short_mm: float


def section_diameters(
    shape: LesionShape,
    scale: float,
    body_to_world: np.ndarray,
    grid: Grid,
    *,
    surface: Surface | None = None,
) -> Section | None:
    """Largest axial cross-section of the lesion over ``grid``'s slice planes.

    ``surface`` is the lesion's :func:`sample_surface` at ``scale`` when the caller has it.
    Returns ``None`` when no slice plane cuts the lesion.
    """
    if scale <= 0.0:
        return None
    rot = body_to_world[:3, :3]
    centre = rot @ shape.centre + body_to_world[:3, 3]
    to_local = (rot @ shape.rotation).T
    reach = shape.max_radius * scale
    outer = (surface or sample_surface(shape, scale)).outer_mm
    heights = grid.axis_world(2) - float(centre[2])
    best: Section | None = None
    # Nearest planes first: a plane's section fits in a disc of radius sqrt(outer^2 - h^2), so
    # once that disc is narrower than the best chord no farther plane can beat it.
    for h in sorted((float(h) for h in heights if abs(h) < reach), key=abs):
        if best is not None and 4.0 * (outer**2 - h**2) <= best.longest_mm**2:
            break
        points = _boundary(shape, scale, to_local, h, float(np.sqrt(reach**2 - h**2)))
        if points.shape[0] < 2:
            continue
        longest, short = _chord(points)
        if best is None or longest > best.longest_mm:
            best = Section(longest, short)
    return best


@dataclass(frozen=True)
class Surface:
    """A lesion's surface sampled along a Fibonacci set of ``SURFACE_SAMPLES`` directions."""

    centre: np.ndarray
    points: np.ndarray
    """(N, 3) body-frame surface points."""
    spacing_mm: float
    """Largest distance from a sample to its nearest other sample: how far, for these smooth
    shapes, the surface between samples can stray from them."""
    inner_mm: float
    """The lesion holds the ball of this radius about its centre."""
    outer_mm: float
    """The ball of this radius about the centre holds the lesion."""


def sample_surface(shape: LesionShape, scale: float) -> Surface:
    """Sample the lesion's surface at ``scale``."""
    n = SURFACE_SAMPLES
    z = 1.0 - (np.arange(n) + 0.5) * 2.0 / n
    r = np.sqrt(1.0 - z * z)
    turn = np.pi * (3.0 - np.sqrt(5.0)) * np.arange(n)
    u = np.stack([r * np.cos(turn), r * np.sin(turn), z], axis=1)
    radius = surface_radius(shape, scale, u)
    points = shape.centre + (u * radius[:, None]) @ shape.rotation.T
    spacing = float(cKDTree(points).query(points, k=2)[0][:, 1].max())
    return Surface(
        centre=shape.centre,
        points=points,
        spacing_mm=spacing,
        inner_mm=max(0.0, float(radius.min()) - spacing),
        outer_mm=float(radius.max()) + spacing,
    )


def surfaces_apart(a: Surface, b: Surface, gap_mm: float) -> bool:
    """Whether two surfaces are surely more than ``gap_mm`` apart."""
    centres = float(np.linalg.norm(a.centre - b.centre))
    if centres - a.outer_mm - b.outer_mm > gap_mm:
        return True
    nearest = float(cKDTree(a.points).query(b.points)[0].min())
    return nearest - a.spacing_mm - b.spacing_mm > gap_mm


def surface_radius(shape: LesionShape, scale: float, u: np.ndarray) -> np.ndarray:
    """Distance from the centre to the surface along unit directions ``u`` (N, 3) of the
    lesion's own frame."""
    lobes = np.ones(u.shape[0])
    for k, amp, phase in zip(shape.lobe_k, shape.lobe_amp, shape.lobe_phase, strict=True):
        lobes += amp * np.cos(u @ k + phase)
    return scale * lobes / np.sqrt(((u / shape.radii) ** 2).sum(axis=1))


def _boundary(
    shape: LesionShape, scale: float, to_local: np.ndarray, h: float, t_max: float
) -> np.ndarray:
    """In-plane points (N, 2), relative to the foot of the perpendicular, where rays cross the
    surface."""
    phi = np.arange(RAYS) * (2.0 * np.pi / RAYS)
    e = np.stack([np.cos(phi), np.sin(phi)], axis=1)
    t = np.linspace(0.0, t_max, RAY_SAMPLES)
    f = _signed(shape, scale, to_local, h, e[:, None, :] * t[None, :, None])
    inside = f < 0
    ray, step = np.nonzero(inside[:, 1:] != inside[:, :-1])
    if ray.size == 0:
        return np.zeros((0, 2))
    lo, hi = t[step], t[step + 1]
    f_lo, f_hi = f[ray, step], f[ray, step + 1]
    dirs = e[ray]
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        f_mid = _signed(shape, scale, to_local, h, dirs * mid[:, None])
        same = (f_mid < 0) == (f_lo < 0)
        lo, f_lo = np.where(same, mid, lo), np.where(same, f_mid, f_lo)
        hi, f_hi = np.where(same, hi, mid), np.where(same, f_hi, f_mid)
    # The bracket is a small fraction of a mm: the secant through its ends finds the root.
    root = lo - f_lo * (hi - lo) / np.where(f_hi != f_lo, f_hi - f_lo, 1.0)
    return dirs * np.clip(root, lo, hi)[:, None]


def _signed(
    shape: LesionShape, scale: float, to_local: np.ndarray, h: float, xy: np.ndarray
) -> np.ndarray:
    """``|p - c| - R(u)`` at in-plane offsets ``xy`` (..., 2) at height ``h`` above the centre."""
    flat = xy.reshape(-1, 2)
    d = np.concatenate([flat, np.full((flat.shape[0], 1), h)], axis=1)
    dist = np.linalg.norm(d, axis=1)
    u = (d @ to_local.T) / np.maximum(dist, 1e-12)[:, None]
    u[dist < 1e-12] = (1.0, 0.0, 0.0)  # the centre itself: any direction puts it inside
    return (dist - surface_radius(shape, scale, u)).reshape(xy.shape[:-1])


def _chord(points: np.ndarray) -> tuple[float, float]:
    """Longest distance between two points and the extent perpendicular to it."""
    hull = points
    if points.shape[0] > 3:
        try:
            hull = points[ConvexHull(points).vertices]
        except QhullError:  # collinear or repeated points: use them all
            hull = points
    diff = hull[:, None, :] - hull[None, :, :]
    d2 = np.einsum("abk,abk->ab", diff, diff)
    a, b = np.unravel_index(int(np.argmax(d2)), d2.shape)
    longest = float(np.sqrt(d2[a, b]))
    if longest == 0.0:
        return 0.0, 0.0
    direction = (hull[b] - hull[a]) / longest
    proj = points @ np.array([-direction[1], direction[0]])
    return longest, float(proj.max() - proj.min())
