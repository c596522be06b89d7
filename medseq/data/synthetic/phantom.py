"""A torso-like CT phantom: analytic organs in the body frame, rendered with partial volume.

Values follow typical contrast-enhanced CT (portal venous phase) in Hounsfield units: air -1000,
lung about -850, fat about -100, muscle and soft tissue about 40, liver about 60, kidney about
30, spleen about 45, blood pool about 40 (aorta brighter, enhanced), bone 400-1000 (cancellous
to cortical). Shapes and sizes vary smoothly between patients through the sampled parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseq.data.synthetic import portable
from medseq.data.synthetic.coords import BodyCoords, occupancy, paint
from medseq.data.synthetic.geometry import rotation_matrix

HU = {
    "air": -1000.0,
    "lung": -850.0,
    "fat": -100.0,
    "muscle": 45.0,
    "soft_tissue": 35.0,
    "liver": 60.0,
    "spleen": 45.0,
    "kidney": 30.0,
    "heart": 40.0,
    "vessel": 40.0,
    "aorta": 150.0,
    "stomach": 15.0,
    "bowel": 30.0,
    "cancellous_bone": 420.0,
    "cortical_bone": 900.0,
    "rib": 650.0,
    "disc": 90.0,
    "canal": 20.0,
    "table": 150.0,
    "table_foam": -950.0,
}
"""Nominal HU of each tissue."""

RIB_HALF_MM = 3.5
"""Half thickness of a rib."""

ORGANS = ("liver", "lung_right", "lung_left", "kidney_right", "kidney_left", "spleen")
"""Organs that can hold lesions."""


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid in the body frame: ``rotation`` columns are its axes, ``radii`` their halves."""

    centre: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray

    def bounds(self, pad: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Body-frame axis-aligned box holding the ellipsoid (plus ``pad`` mm)."""
        spread = portable.matmul(self.rotation * self.rotation, self.radii * self.radii)
        half = np.sqrt(spread) + pad
        return self.centre - half, self.centre + half

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Approximate signed distance (mm), measured radially from the centre."""
        dx = x - np.float32(self.centre[0])
        dy = y - np.float32(self.centre[1])
        dz = z - np.float32(self.centre[2])
        rho2 = np.zeros_like(dx)
        for a in range(3):
            r = self.rotation[:, a] / self.radii[a]
            q = np.float32(r[0]) * dx + np.float32(r[1]) * dy + np.float32(r[2]) * dz
            rho2 += q * q
        dist = np.sqrt(dx * dx + dy * dy + dz * dz)
        rho = np.sqrt(np.maximum(rho2, np.float32(1e-12)))
        return dist - dist / rho

    def contains(self, point: np.ndarray) -> float:
        """Normalised radius of ``point`` (< 1 inside)."""
        q = portable.matmul(self.rotation.T, np.asarray(point) - self.centre) / self.radii
        return float(portable.norm(q))


@dataclass(frozen=True)
class Anatomy:
    """One patient's anatomy, fixed across scans (the lesions and bowel gas change)."""

    torso_half: np.ndarray
    """Half width (x) and half depth (y) of the torso at z = 0, mm."""
    torso_taper: float
    """Relative change of the torso width per 100 mm upwards."""
    torso_squareness: float
    """0 for an elliptical cross-section; larger values square it off."""
    fat_mm: float
    muscle_mm: float
    diaphragm_z: float
    organs: dict[str, Ellipsoid]
    heart: Ellipsoid
    vessels: tuple[tuple[np.ndarray, np.ndarray, float], ...]
    """Pulmonary vessels: (start, end, radius) segments in the body frame, from the hila."""
    stomach: Ellipsoid
    aorta_xy: np.ndarray
    aorta_radius: float
    spine_xy: np.ndarray
    disc_pitch: float
    disc_phase: float
    rib_pitch: float
    rib_phase: float
    bowel_k: np.ndarray
    """(3, 3) wave vectors (1/mm) of the bowel-versus-fat pattern."""
    bowel_phase: np.ndarray
    table_y: float
    """Top of the table in the scanner frame (RAS+ y, mm); it does not follow the patient."""


@dataclass(frozen=True)
class Enhancement:
    """Per-scan contrast timing: HU offsets added to enhancing organs."""

    liver: float
    spleen: float
    kidney: float
    aorta: float


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw a patient's anatomy: sizes, positions and orientations vary smoothly."""
    scale = rng.uniform(0.9, 1.1)
    half = np.array([rng.uniform(140, 165), rng.uniform(100, 118)]) * scale
    dz = rng.uniform(15, 40)

    def ell(centre: list[float], radii: list[float], jitter: float, angle_sd: float) -> Ellipsoid:
        c = np.asarray(centre) + rng.normal(0.0, jitter, 3)
        r = np.asarray(radii) * scale * rng.uniform(0.9, 1.1, 3)
        rot = rotation_matrix(rng.normal(0.0, angle_sd, 3))
        return Ellipsoid(c, r, rot)

    organs = {
        "liver": ell([48, 8, dz - 55], [80, 78, 68], 4, 6),
        "spleen": ell([-88, -25, dz - 40], [32, 48, 52], 4, 8),
        "kidney_right": ell([72, -55, dz - 100], [26, 24, 50], 4, 8),
        "kidney_left": ell([-72, -55, dz - 92], [26, 24, 50], 4, 8),
        "lung_right": ell([68, -8, dz + 95], [55, 80, 105], 3, 4),
        "lung_left": ell([-70, -8, dz + 95], [52, 78, 105], 3, 4),
    }
    return Anatomy(
        torso_half=half,
        torso_taper=rng.uniform(-0.02, 0.06),
        torso_squareness=rng.uniform(0.2, 0.6),
        fat_mm=rng.uniform(8, 28),
        muscle_mm=rng.uniform(8, 14),
        diaphragm_z=dz,
        organs=organs,
        heart=ell([-22, 38, dz + 48], [55, 45, 50], 4, 10),
        vessels=_sample_vessels(rng, organs),
        stomach=ell([-45, 40, dz - 35], [38, 30, 30], 4, 10),
        aorta_xy=np.array([-14.0, -55.0]) + rng.normal(0, 3, 2),
        aorta_radius=rng.uniform(10, 14),
        spine_xy=np.array([0.0, -82.0 * scale]) + rng.normal(0, 2, 2),
        disc_pitch=rng.uniform(26, 32),
        disc_phase=rng.uniform(0, 1),
        rib_pitch=rng.uniform(22, 28),
        rib_phase=rng.uniform(0, 1),
        bowel_k=_unit_rows(rng, 3) * rng.uniform(0.1, 0.2, (3, 1)),
        bowel_phase=rng.uniform(0, 2 * np.pi, 3),
        table_y=-half[1] - 4.0,
    )


def _sample_vessels(
    rng: np.random.Generator, organs: dict[str, Ellipsoid]
) -> tuple[tuple[np.ndarray, np.ndarray, float], ...]:
    """Two generations of tapering vessels fanning out from each lung's hilum."""
    out: list[tuple[np.ndarray, np.ndarray, float]] = []
    for side in ("lung_right", "lung_left"):
        lung = organs[side]
        medial = -np.sign(lung.centre[0])
        hilum = lung.centre + np.array([medial * 0.55 * lung.radii[0], 0.0, -0.2 * lung.radii[2]])
        for _ in range(int(rng.integers(6, 9))):
            direction = rng.normal(size=3) + np.array([-medial * 1.2, 0.0, 0.3])
            direction /= portable.norm(direction)
            mid = hilum + direction * rng.uniform(35, 55)
            out.append((hilum, mid, float(rng.uniform(3.0, 4.5))))
            for _ in range(2):
                branch = direction + 0.6 * rng.normal(size=3)
                branch /= portable.norm(branch)
                out.append((mid, mid + branch * rng.uniform(25, 45), float(rng.uniform(1.5, 2.5))))
    return tuple(out)


def _unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.normal(size=(n, 3))
    return rows / portable.norm(rows, axis=1, keepdims=True)


def sample_enhancement(rng: np.random.Generator) -> Enhancement:
    """Scan-to-scan variation of contrast timing."""
    return Enhancement(
        liver=rng.normal(0, 6), spleen=rng.normal(0, 6), kidney=rng.normal(0, 8),
        aorta=rng.normal(0, 25),
    )


def sample_bowel_gas(rng: np.random.Generator, anat: Anatomy) -> list[Ellipsoid]:
    """Gas pockets in the lower abdomen; they move from scan to scan as bowel does."""
    pockets = []
    for _ in range(int(rng.integers(2, 7))):
        centre = np.array([
            rng.uniform(-70, 40), rng.uniform(-10, 55), anat.diaphragm_z - rng.uniform(95, 150),
        ])
        radii = rng.uniform(5, 14, 3)
        pockets.append(Ellipsoid(centre, radii, rotation_matrix(rng.uniform(-40, 40, 3))))
    return pockets


def paint_anatomy(
    anat: Anatomy,
    coords: BodyCoords,
    hu: np.ndarray,
    *,
    width: float,
    enhancement: Enhancement,
    bowel_gas: list[Ellipsoid],
) -> None:
    """Paint the anatomy into the HU block ``hu`` (shape ``coords.shape``), in place."""
    hu.fill(HU["air"])
    _paint_table(anat, coords, hu)
    f_body = _torso_distance(anat, coords)
    cavity_depth = anat.fat_mm + anat.muscle_mm
    cavity = _cavity_background(anat, coords, width)
    _paint_cavity(anat, coords, cavity, width, enhancement, bowel_gas)
    occ_cavity = occupancy(f_body + np.float32(cavity_depth), width)
    occ_muscle = occupancy(f_body + np.float32(anat.fat_mm), width)
    occ_body = occupancy(f_body, width)
    # Outside the cavity: subcutaneous fat over a muscle layer.
    wall = HU["fat"] + occ_muscle * np.float32(HU["muscle"] - HU["fat"])
    inside = wall + occ_cavity * (cavity - wall)
    paint(hu, occ_body, inside)
    _paint_ribs(anat, coords, hu, f_body, width)
    _paint_spine(anat, coords, hu, width)


def _cavity_background(anat: Anatomy, coords: BodyCoords, width: float) -> np.ndarray:
    """Fat-rich mediastinum above the diaphragm; below it, bowel loops in visceral fat."""
    cavity = np.full(coords.shape, HU["fat"] * 0.8, dtype=np.float32)
    hi = np.array([1e4, 1e4, anat.diaphragm_z - 10.0])
    box = coords.region(-hi * np.array([1, 1, 0]) - np.array([0, 0, 1e4]), hi)
    if box is None:
        return cavity
    x, y, z = coords.take(box)
    field = np.zeros(x.shape, dtype=np.float32)
    for k, phase in zip(anat.bowel_k, anat.bowel_phase, strict=True):
        field += portable.cos(
            np.float32(k[0]) * x + np.float32(k[1]) * y + np.float32(k[2]) * z + np.float32(phase)
        )
    # Fat collects towards the back and flanks; bowel fills the front.
    field += np.float32(0.02) * y + np.float32(0.6)
    bowel = np.clip(field * np.float32(1.5), 0.0, 1.0)
    below = occupancy(z - np.float32(anat.diaphragm_z - 10.0), 10.0)
    target = cavity[box]
    paint(target, below, np.float32(HU["fat"]) + bowel * np.float32(HU["bowel"] - HU["fat"]))
    return cavity


def _torso_distance(anat: Anatomy, coords: BodyCoords) -> np.ndarray:
    scale = np.float32(1.0) + np.float32(anat.torso_taper / 100.0) * coords.z
    u2 = np.square(coords.x / (np.float32(anat.torso_half[0]) * scale))
    v2 = np.square(coords.y / (np.float32(anat.torso_half[1]) * scale))
    # A squared-off ellipse: the cross term flattens the flanks and the back.
    rho = np.sqrt(np.maximum(u2 + v2 - np.float32(anat.torso_squareness) * u2 * v2, 1e-12))
    rxy = np.sqrt(coords.x * coords.x + coords.y * coords.y)
    return rxy - rxy / rho


def _paint_ellipsoid(
    coords: BodyCoords, target: np.ndarray, shape: Ellipsoid, value: float, width: float
) -> None:
    lo, hi = shape.bounds(pad=width)
    box = coords.region(lo, hi)
    if box is None:
        return
    x, y, z = coords.take(box)
    paint(target[box], occupancy(shape.distance(x, y, z), width), np.float32(value))


def _paint_cavity(
    anat: Anatomy,
    coords: BodyCoords,
    cavity: np.ndarray,
    width: float,
    enh: Enhancement,
    bowel_gas: list[Ellipsoid],
) -> None:
    for pocket in bowel_gas:
        _paint_ellipsoid(coords, cavity, pocket, HU["air"], width)
    o = anat.organs
    _paint_ellipsoid(coords, cavity, o["liver"], HU["liver"] + enh.liver, width)
    _paint_ellipsoid(coords, cavity, o["spleen"], HU["spleen"] + enh.spleen, width)
    for side in ("kidney_right", "kidney_left"):
        kidney = o[side]
        capsule = Ellipsoid(kidney.centre, kidney.radii + 9.0, kidney.rotation)
        _paint_ellipsoid(coords, cavity, capsule, HU["fat"], width)
        _paint_ellipsoid(coords, cavity, kidney, HU["kidney"] + enh.kidney, width)
    _paint_stomach(anat, coords, cavity, width)
    for side in ("lung_right", "lung_left"):
        _paint_ellipsoid(coords, cavity, o[side], HU["lung"], width)
    for start, end, radius in anat.vessels:
        _paint_segment(coords, cavity, start, end, radius, HU["vessel"], width)
    _paint_ellipsoid(coords, cavity, anat.heart, HU["heart"], width)
    # Aorta: a vertical cylinder in front of the spine, enhanced by contrast.
    r = anat.aorta_radius
    cx, cy = anat.aorta_xy
    lo = np.array([cx - r - width, cy - r - width, -1e4])
    hi = np.array([cx + r + width, cy + r + width, anat.diaphragm_z + 70])
    box = coords.region(lo, hi)
    if box is not None:
        x, y, z = coords.take(box)
        d = np.sqrt(np.square(x - np.float32(cx)) + np.square(y - np.float32(cy))) - np.float32(r)
        d = np.maximum(d, z - np.float32(anat.diaphragm_z + 60))
        paint(cavity[box], occupancy(d, width), np.float32(HU["aorta"] + enh.aorta))


def _paint_segment(
    coords: BodyCoords,
    target: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    radius: float,
    value: float,
    width: float,
) -> None:
    """A cylinder with rounded ends (a capsule) from ``start`` to ``end``."""
    pad = radius + width
    box = coords.region(np.minimum(start, end) - pad, np.maximum(start, end) + pad)
    if box is None:
        return
    x, y, z = coords.take(box)
    axis = end - start
    length2 = float(axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2])
    px = x - np.float32(start[0])
    py = y - np.float32(start[1])
    pz = z - np.float32(start[2])
    t = (px * np.float32(axis[0]) + py * np.float32(axis[1]) + pz * np.float32(axis[2]))
    t = np.clip(t / np.float32(length2), 0.0, 1.0)
    dx = px - t * np.float32(axis[0])
    dy = py - t * np.float32(axis[1])
    dz = pz - t * np.float32(axis[2])
    d = np.sqrt(dx * dx + dy * dy + dz * dz) - np.float32(radius)
    paint(target[box], occupancy(d, width), np.float32(value))


def _paint_stomach(anat: Anatomy, coords: BodyCoords, cavity: np.ndarray, width: float) -> None:
    shape = anat.stomach
    lo, hi = shape.bounds(pad=width)
    box = coords.region(lo, hi)
    if box is None:
        return
    x, y, z = coords.take(box)
    d = shape.distance(x, y, z)
    paint(cavity[box], occupancy(d, width), np.float32(HU["stomach"]))
    # Supine patient: gas floats anteriorly (+y) above a horizontal fluid level.
    level = np.float32(shape.centre[1] + 0.35 * shape.radii[1])
    gas = np.maximum(d, level - y)
    paint(cavity[box], occupancy(gas, width), np.float32(HU["air"]))


def _paint_ribs(
    anat: Anatomy, coords: BodyCoords, hu: np.ndarray, f_body: np.ndarray, width: float
) -> None:
    lo = np.array([-1e4, -1e4, anat.diaphragm_z - 60])
    hi = np.array([1e4, 1e4, 1e4])
    box = coords.region(lo, hi)
    if box is None:
        return
    centre = np.float32(anat.fat_mm + anat.muscle_mm * 0.6)
    radial = np.abs(-f_body[box] - centre) - np.float32(RIB_HALF_MM)
    # Only the thin shell near the rib radius can hold rib voxels.
    sel = radial < np.float32(width)
    if not sel.any():
        return
    x, y, z = (c[sel] for c in coords.take(box))
    # Ribs wind down from the spine towards the front, so an axial slice cuts each of them
    # into a short arc; a cosine of (z, angle around the body) spaces them.
    angle = np.abs(portable.arctan2(x, y)) / np.float32(np.pi)  # 0 in front, 1 at the back
    phase = z / np.float32(anat.rib_pitch) + np.float32(1.6) * angle + np.float32(anat.rib_phase)
    along = np.float32(anat.rib_pitch * 0.5) * (np.float32(0.55) - portable.cos(2 * np.pi * phase))
    d = np.maximum(radial[sel], along)
    # No ribs at the sternum or over the spine.
    d = np.maximum(d, np.float32(22.0) - np.abs(x))
    target = hu[box]
    values = target[sel]
    paint(values, occupancy(d, width), np.float32(HU["rib"]))
    target[sel] = values


def _paint_spine(anat: Anatomy, coords: BodyCoords, hu: np.ndarray, width: float) -> None:
    sx, sy = anat.spine_xy
    lo = np.array([sx - 45, sy - 60, -1e4])
    hi = np.array([sx + 45, sy + 25, 1e4])
    box = coords.region(lo, hi)
    if box is None:
        return
    x, y, z = coords.take(box)
    target = hu[box]
    dxb = (x - np.float32(sx)) / np.float32(21.0)
    dyb = (y - np.float32(sy)) / np.float32(17.0)
    rho = np.sqrt(dxb * dxb + dyb * dyb)
    f_vert = (rho - np.float32(1.0)) * np.float32(18.0)
    # Posterior arch around the canal.
    cy = np.float32(sy - 30.0)
    r_canal = np.sqrt(np.square(x - np.float32(sx)) + np.square(y - cy))
    paint(target, occupancy(r_canal - np.float32(16.0), width), np.float32(HU["cortical_bone"]))
    paint(target, occupancy(r_canal - np.float32(8.0), width), np.float32(HU["canal"]))
    paint(target, occupancy(f_vert, width), np.float32(HU["cortical_bone"]))
    paint(target, occupancy(f_vert + np.float32(2.5), width), np.float32(HU["cancellous_bone"]))
    phase = z / np.float32(anat.disc_pitch) + np.float32(anat.disc_phase)
    disc = np.float32(anat.disc_pitch * 0.5) * (np.float32(0.82) - portable.cos(2 * np.pi * phase))
    paint(target, occupancy(np.maximum(f_vert, -disc), width), np.float32(HU["disc"]))


def _paint_table(anat: Anatomy, coords: BodyCoords, hu: np.ndarray) -> None:
    # The table lives in the scanner frame: it does not follow the patient's repositioning.
    wx = coords.world_x[:, None]
    wy = coords.world_y[None, :]
    top = np.float32(anat.table_y) - np.float32(0.0008) * wx * wx
    inside = (np.abs(wx) < 230) & (wy <= top)
    shell = inside & ((wy > top - 3) | ((wy <= top - 40) & (wy > top - 43)))
    foam = inside & (wy <= top - 3) & (wy > top - 40)
    plane = np.where(shell, np.float32(HU["table"]), np.float32(HU["air"]))
    plane = np.where(foam, np.float32(HU["table_foam"]), plane)
    hu[...] = plane[:, :, None]
