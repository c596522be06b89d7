"""Lesion shapes (irregular, star-shaped) and their heterogeneous appearance.

A lesion is a randomly oriented ellipsoid whose radius in each direction ``u`` is modulated by a
few low-frequency cosines of ``u`` (lobulation). Growth scales the whole shape about its centre,
so volume goes with the cube of the scale. Inside, a necrotic core and an enhancing rim are laid
out by the normalised radius ``r`` (0 at the centre, 1 at the surface), plus a smooth texture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseq.data.synthetic import portable
from medseq.data.synthetic.coords import BodyCoords, occupancy, paint
from medseq.data.synthetic.geometry import Grid, random_rotation

LESION_HU = {
    "liver": 35.0,
    "lung_right": 30.0,
    "lung_left": 30.0,
    "kidney_right": 50.0,
    "kidney_left": 50.0,
    "spleen": 25.0,
}
"""Solid-tumour HU per host organ (liver metastases are hypodense, kidney ones hyperdense)."""
NECROSIS_HU = 12.0
"""HU of the necrotic core (fluid-like)."""


@dataclass(frozen=True)
class LesionShape:
    """Geometry of one lesion at scale 1 (body frame, mm)."""

    centre: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray
    lobe_k: np.ndarray
    """(M, 3) wave vectors of the lobulation, on unit directions."""
    lobe_amp: np.ndarray
    lobe_phase: np.ndarray
    tex_k: np.ndarray
    """(M, 3) wave vectors (1/mm) of the interior texture, in the lesion's own frame."""
    tex_phase: np.ndarray
    unit_volume_ml: float
    """Volume at scale 1 (numerically integrated once)."""

    @property
    def max_radius(self) -> float:
        """Largest radius at scale 1 (an upper bound, lobulation included)."""
        return float(self.radii.max() * (1.0 + self.lobe_amp.sum()))

    def scale_for(self, volume_ml: float) -> float:
        """Scale at which the lesion has ``volume_ml``."""
        return float(portable.cbrt(max(volume_ml, 0.0) / self.unit_volume_ml))

    def bounds(self, scale: float, pad: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Body-frame box holding the lesion at ``scale``."""
        half = self.max_radius * scale + pad
        return self.centre - half, self.centre + half

    def radial(
        self, x: np.ndarray, y: np.ndarray, z: np.ndarray, scale: float
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Signed radial distance to the surface (mm), normalised radius, and local coordinates."""
        d = (
            x - np.float32(self.centre[0]),
            y - np.float32(self.centre[1]),
            z - np.float32(self.centre[2]),
        )
        local = tuple(
            np.float32(self.rotation[0, a]) * d[0]
            + np.float32(self.rotation[1, a]) * d[1]
            + np.float32(self.rotation[2, a]) * d[2]
            for a in range(3)
        )
        dist = np.sqrt(local[0] * local[0] + local[1] * local[1] + local[2] * local[2])
        safe = np.maximum(dist, np.float32(1e-6))
        q2 = sum(np.square(local[a] / np.float32(self.radii[a])) for a in range(3))
        rho = np.sqrt(np.maximum(q2, np.float32(1e-12)))
        lobes = np.ones_like(dist)
        for k, amp, phase in zip(self.lobe_k, self.lobe_amp, self.lobe_phase, strict=True):
            arg = (
                np.float32(k[0]) * local[0] + np.float32(k[1]) * local[1]
                + np.float32(k[2]) * local[2]
            ) / safe + np.float32(phase)
            lobes += np.float32(amp) * portable.cos(arg)
        surface = (dist / rho) * lobes * np.float32(scale)
        return dist - surface, dist / np.maximum(surface, np.float32(1e-6)), local  # type: ignore[return-value]


def sample_shape(rng: np.random.Generator, centre: np.ndarray) -> LesionShape:
    """Draw an irregular lesion shape centred on ``centre`` (radii about 10 mm at scale 1)."""
    axes = rng.uniform(0.75, 1.3, 3)
    axes /= portable.cbrt(axes[0] * axes[1] * axes[2])
    n_lobes = int(rng.integers(3, 6))
    directions = rng.normal(size=(n_lobes, 3))
    directions /= portable.norm(directions, axis=1, keepdims=True)
    lobe_k = directions * rng.uniform(1.5, 3.5, (n_lobes, 1))
    lobe_amp = rng.uniform(0.04, 0.12, n_lobes)
    tex_dirs = rng.normal(size=(4, 3))
    tex_dirs /= portable.norm(tex_dirs, axis=1, keepdims=True)
    shape = LesionShape(
        centre=np.asarray(centre, dtype=np.float64),
        radii=10.0 * axes,
        rotation=random_rotation(rng),
        lobe_k=lobe_k,
        lobe_amp=lobe_amp,
        lobe_phase=rng.uniform(0, 2 * np.pi, n_lobes),
        tex_k=tex_dirs * rng.uniform(0.25, 0.6, (4, 1)),
        tex_phase=rng.uniform(0, 2 * np.pi, 4),
        unit_volume_ml=1.0,
    )
    return _with_unit_volume(shape)


def _with_unit_volume(shape: LesionShape) -> LesionShape:
    """Volume of the star-shaped lesion: (4 pi / 3) times the mean of R(u)^3 over directions."""
    n = 4000
    golden = np.pi * (3.0 - np.sqrt(5.0))
    z = 1.0 - (np.arange(n) + 0.5) * 2.0 / n
    r = np.sqrt(1.0 - z * z)
    turn = golden * np.arange(n)
    u = np.stack([r * portable.cos(turn), r * portable.sin(turn), z], 1)
    # Directions in the lesion frame; evaluate at unit distance from the centre.
    points = shape.centre + portable.matmul(u, shape.rotation.T)
    pts = points.astype(np.float32)
    f, _, _ = shape.radial(pts[:, 0], pts[:, 1], pts[:, 2], 1.0)
    radius = 1.0 - f.astype(np.float64)  # f = |p - c| - R(u) with |p - c| = 1
    volume = 4.0 * np.pi / 3.0 * float(np.mean(radius * radius * radius)) / 1000.0
    return LesionShape(**{**shape.__dict__, "unit_volume_ml": volume})


@dataclass(frozen=True)
class Appearance:
    """How a lesion looks at one scan."""

    base_hu: float
    rim_hu: float
    """Enhancement of the rim above ``base_hu``."""
    rim_width: float
    """Rim thickness as a fraction of the radius."""
    necrosis: float
    """Radius of the necrotic core as a fraction of the lesion radius (0: none)."""
    texture_hu: float
    """Amplitude of the smooth interior texture."""


def paint_lesion(
    shape: LesionShape,
    scale: float,
    look: Appearance,
    coords: BodyCoords,
    hu: np.ndarray,
    *,
    width: float,
) -> None:
    """Composite the lesion into ``hu`` with partial volume at its surface."""
    lo, hi = shape.bounds(scale, pad=width)
    box = coords.region(lo, hi)
    if box is None:
        return
    x, y, z = coords.take(box)
    f, r, local = shape.radial(x, y, z, scale)
    occ = occupancy(f, width)
    if not occ.any():
        return
    value = np.full(f.shape, look.base_hu, dtype=np.float32)
    rim_start = np.float32(1.0 - look.rim_width)
    rim = np.clip((r - rim_start) / np.float32(max(look.rim_width, 1e-3) * 0.5), 0, 1)
    value += np.float32(look.rim_hu) * rim
    if look.necrosis > 0:
        core = np.clip((np.float32(look.necrosis) - r) / np.float32(0.12), 0, 1)
        value += core * (np.float32(NECROSIS_HU) - value)
    if look.texture_hu > 0:
        tex = np.zeros_like(f)
        for k, phase in zip(shape.tex_k, shape.tex_phase, strict=True):
            tex += portable.cos(
                np.float32(k[0] / scale) * local[0] + np.float32(k[1] / scale) * local[1]
                + np.float32(k[2] / scale) * local[2] + np.float32(phase)
            )
        value += np.float32(look.texture_hu / 2.0) * tex
    paint(hu[box], occ, value)


def rasterise(
    shape: LesionShape, scale: float, grid: Grid, body_to_world: np.ndarray
) -> tuple[tuple[int, int, int], np.ndarray] | None:
    """Voxels whose centre lies inside the lesion: ``(offset, boolean block)`` or ``None``."""
    lo, hi = shape.bounds(scale)
    coords = BodyCoords.covering(grid, body_to_world, lo, hi, margin=1)
    if coords is None:
        return None
    f, _, _ = shape.radial(coords.x, coords.y, coords.z, scale)
    inside = f < 0
    if not inside.any():
        return None
    return (coords.start[0], coords.start[1], coords.start[2]), inside
