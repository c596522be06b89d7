"""Load and save NIfTI volumes and masks, refusing what later stages cannot use.

A NIfTI image medseq accepts is 3D (a trailing fourth axis of length 1 is dropped), holds no NaN
or infinity, and has a usable affine from its qform or sform (a header with neither gives no
orientation, and is refused). Its affine is nibabel's (sform when set, else qform), so
``Volume.affine`` maps voxel indices to RAS+ millimetres exactly as ITK-SNAP and 3D Slicer show.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medseq.errors import NiftiError
from medseq.io.atomic import atomic_path
from medseq.io.volume import Provenance, Volume

if TYPE_CHECKING:
    import nibabel as nib

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
MASK_TOLERANCE_MM: float = 0.01
"""How far (mm) a mask's voxel centres may sit from its image's: far under any voxel, far above
the rounding of affines stored as float32."""


@dataclass(frozen=True)
class NiftiHeader:
    """What discovery needs from a NIfTI header, read without the voxels."""

    path: Path
    shape: tuple[int, int, int]
    affine: np.ndarray
    dtype: np.dtype[Any]
    scaled: bool
    """True when scl_slope/scl_inter change the stored values."""

    @property
    def spacing(self) -> tuple[float, float, float]:
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(norms[0]), float(norms[1]), float(norms[2])

    @property
    def may_hold_nan(self) -> bool:
        """Only float storage (or float scaling) can hold NaN or infinity."""
        return bool(np.issubdtype(self.dtype, np.floating)) or self.scaled


def is_nifti(path: Path) -> bool:
    """True when the file name ends in ``.nii`` or ``.nii.gz``."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def read_nifti_header(path: Path) -> NiftiHeader:
    """Shape, affine and data type of a NIfTI file, checking it is 3D; reads no voxels.

    Raises:
        NiftiError: unreadable or not NIfTI, not 3D, no geometry, or a singular affine.
    """
    image = _open(path)
    shape = _three_d_shape(image, path)
    affine = _affine(image, path)
    slope, inter = _slope_inter(image)
    scaled = not (slope == 1.0 and inter == 0.0)
    return NiftiHeader(path=path, shape=shape, affine=affine,
                       dtype=np.dtype(image.get_data_dtype()), scaled=scaled)


def load_nifti(path: Path) -> Volume:
    """Read a 3D NIfTI image into a :class:`Volume`.

    Integer images without scaling keep their integer type (CT stays int16 HU); anything else
    becomes float32. Never goes through float64.

    Raises:
        NiftiError: unreadable, not 3D, no geometry, a singular affine, or NaN/infinite voxels.
    """
    path = Path(path)
    image = _open(path)
    shape = _three_d_shape(image, path)
    affine = _affine(image, path)
    try:
        raw = np.asanyarray(image.dataobj.get_unscaled())  # type: ignore[attr-defined]
    except (OSError, EOFError, ValueError, MemoryError) as err:  # truncated or corrupt gzip
        raise NiftiError(f"cannot read the voxels ({_short(err)})", path=path) from None
    array = _apply_scaling(raw.reshape(shape), *_slope_inter(image))
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise NiftiError(
                f"{bad} voxel(s) are NaN or infinite; fix or replace them before using this image",
                path=path,
            )
    return Volume(array=array, affine=affine,
                  provenance=Provenance(source=str(path), kind="nifti", file_count=1))


def check_finite(path: Path) -> None:
    """Raise :class:`NiftiError` if a float NIfTI image holds NaN or infinity (reads the voxels)."""
    load_nifti(path)


def save_nifti(volume: Volume, path: Path) -> None:
    """Write ``volume`` to ``path`` (``.nii`` or ``.nii.gz``) atomically.

    qform and sform both carry the affine (code 1, scanner) so nibabel, ITK and dcm2niix users
    read the same geometry.
    """
    import nibabel as nib

    path = Path(path)
    if not is_nifti(path):
        raise ValueError(f"path must end in .nii or .nii.gz, got {path}")
    image = nib.Nifti1Image(np.asarray(volume.array), volume.affine)
    image.set_qform(volume.affine, code=1)
    image.set_sform(volume.affine, code=1)
    image.header.set_xyzt_units(xyz="mm")
    with atomic_path(path) as tmp:
        nib.save(image, tmp)


@dataclass(frozen=True)
class GridMatch:
    """How a mask's voxel axes map onto its image's when both share one grid.

    ``axes[a]`` is the mask axis that runs along image axis ``a``; ``flips[a]`` says it runs
    backwards. Identity (``(0, 1, 2)``, no flips) for a mask saved on the image's own grid.
    """

    axes: tuple[int, int, int] = (0, 1, 2)
    flips: tuple[bool, bool, bool] = (False, False, False)

    @property
    def is_identity(self) -> bool:
        return self.axes == (0, 1, 2) and not any(self.flips)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """The mask's voxels in the image's voxel order."""
        out = np.transpose(array, self.axes)
        for axis, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis=axis)
        return np.ascontiguousarray(out) if not self.is_identity else out


def check_mask_geometry(mask_shape: tuple[int, ...], mask_affine: np.ndarray, *,
                        image_shape: tuple[int, ...], image_affine: np.ndarray, mask_path: Path,
                        tolerance_mm: float = MASK_TOLERANCE_MM) -> GridMatch:
    """Check a mask covers its image's voxel grid; say how to reorder its axes onto it.

    The grids must put voxel centres at the same places (within ``tolerance_mm``); the mask
    may store them in another axis order or direction (a mask saved from a reoriented copy).

    Raises:
        NiftiError: the voxel grids differ (shape, spacing, origin or orientation).
    """
    image_affine = np.asarray(image_affine, dtype=np.float64)
    mask_affine = np.asarray(mask_affine, dtype=np.float64)
    # Image voxel index of every mask voxel index: a signed permutation plus an offset when
    # both grids coincide.
    to_image = np.linalg.solve(image_affine, mask_affine)
    rotation = np.round(to_image[:3, :3])
    offset = np.round(to_image[:3, 3])
    axes: list[int] = []
    flips: list[bool] = []
    permutation = (np.abs(rotation).sum(axis=0) == 1).all() and (
        np.abs(rotation).sum(axis=1) == 1).all()
    if permutation:
        for a in range(3):
            b = int(np.flatnonzero(rotation[a])[0])
            axes.append(b)
            flips.append(bool(rotation[a, b] < 0))
    expected_shape = tuple(mask_shape[b] for b in axes) if permutation else tuple(mask_shape)
    if expected_shape != tuple(image_shape) or len(image_shape) != 3:
        raise NiftiError(
            f"mask shape {tuple(mask_shape)} differs from its image's {tuple(image_shape)}",
            path=mask_path,
        )
    corners = np.array([[i, j, k, 1.0] for i in (0, mask_shape[0] - 1)
                        for j in (0, mask_shape[1] - 1) for k in (0, mask_shape[2] - 1)])
    snapped = np.eye(4)
    snapped[:3, :3] = rotation
    snapped[:3, 3] = offset
    in_image = corners @ snapped.T
    inside = permutation and bool(
        (in_image[:, :3] >= -0.5).all()
        and (in_image[:, :3] <= np.asarray(image_shape) - 0.5).all())
    distance = np.linalg.norm((corners @ mask_affine.T - in_image @ image_affine.T)[:, :3],
                              axis=1).max()
    if not inside or distance > tolerance_mm:
        direct = np.linalg.norm((corners @ mask_affine.T - corners @ image_affine.T)[:, :3],
                                axis=1).max()
        raise NiftiError(
            f"mask geometry differs from its image's: voxels sit up to {direct:.3g} mm apart "
            f"(tolerance {tolerance_mm} mm); resample the mask onto the image grid",
            path=mask_path,
        )
    return GridMatch(axes=(axes[0], axes[1], axes[2]), flips=(flips[0], flips[1], flips[2]))


def mask_labels(array: np.ndarray, *, path: Path) -> np.ndarray:
    """A mask's voxels as non-negative integer labels (uint8 when they fit, else int32).

    Raises:
        NiftiError: NaN, negative or non-integer values.
    """
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise NiftiError("mask holds NaN or infinite values", path=path)
        if not np.array_equal(array, np.round(array)):
            raise NiftiError("mask values are not integer labels (a probability map?); "
                             "threshold it first", path=path)
    if array.size and array.min() < 0:
        raise NiftiError("mask holds negative values; labels must be 0 (background) or above",
                         path=path)
    top = int(array.max()) if array.size else 0
    return array.astype(np.uint8 if top <= 255 else np.int32, copy=False)


def _open(path: Path) -> nib.Nifti1Image:
    import nibabel as nib

    if not path.is_file():
        raise NiftiError("file not found", path=path)
    if path.stat().st_size == 0:
        raise NiftiError("file is empty (0 bytes)", path=path)
    try:
        # nibabel logs the header fields it repairs (pixdim 0 -> 1) on stderr; what matters
        # for medseq is checked and reported below, in one line.
        with _quiet_nibabel():
            image = nib.load(path, mmap=False)  # voxels in memory, not tied to the file
    except Exception as err:  # nibabel raises many types for bad files
        raise NiftiError(f"not a readable NIfTI file ({_short(err)})", path=path) from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise NiftiError(f"not a NIfTI image ({type(image).__name__})", path=path)
    return image


@contextlib.contextmanager
def _quiet_nibabel() -> Iterator[None]:
    logger = logging.getLogger("nibabel.global")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _three_d_shape(image: nib.Nifti1Image, path: Path) -> tuple[int, int, int]:
    shape = tuple(int(n) for n in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:
        raise NiftiError(
            f"image is {len(shape)}D with shape {shape}; medseq needs one 3D volume per file "
            "(split time series or channels into separate timepoints)",
            path=path,
        )
    return shape[0], shape[1], shape[2]


def _affine(image: nib.Nifti1Image, path: Path) -> np.ndarray:
    """The voxel -> RAS+ affine; refused when the header does not say where the voxels are.

    With ``qform_code`` and ``sform_code`` both 0 the NIfTI standard falls back to ANALYZE's
    "method 1": pixdim scaling and no orientation. nibabel then makes up an LAS affine (1 mm
    where pixdim is 0), which would silently mirror or rescale the scan, so medseq refuses it.
    """
    header = image.header
    if int(header["qform_code"]) <= 0 and int(header["sform_code"]) <= 0:
        unknown = ("the orientation is unknown (pixdim gives only the voxel size)"
                   if _stored_zooms_valid(image, path)
                   else "the orientation and voxel size are unknown (pixdim is 0)")
        raise NiftiError(f"no valid geometry: qform_code and sform_code are both 0, so "
                         f"{unknown}; convert the scan again with its scanner geometry "
                         "(dcm2niix), or set the file's sform", path=path)
    affine = np.asarray(image.affine, dtype=np.float64)
    _check_affine(affine, path)
    return affine


def _stored_zooms_valid(image: nib.Nifti1Image, path: Path) -> bool:
    """Whether pixdim[1:4] as stored are positive (nibabel's loaded header sets 0 to 1)."""
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as handle:
            raw = type(image.header).from_fileobj(handle, check=False)
        zooms = [float(v) for v in raw["pixdim"][1:4]]
    except Exception:  # the header was read once already; this is only for the message
        return True
    return all(np.isfinite(z) and z > 0 for z in zooms)


def _check_affine(affine: np.ndarray, path: Path) -> None:
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise NiftiError("affine is singular or not finite: no usable voxel geometry", path=path)


def _slope_inter(image: nib.Nifti1Image) -> tuple[float, float]:
    """scl_slope/scl_inter as nibabel applies them (it moves them from header to proxy)."""
    proxy = image.dataobj
    slope = float(getattr(proxy, "slope", 1.0))
    inter = float(getattr(proxy, "inter", 0.0))
    return slope, inter


def _apply_scaling(raw: np.ndarray, slope: float | None, inter: float | None) -> np.ndarray:
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    if np.issubdtype(raw.dtype, np.integer):
        if slope == 1.0 and inter == 0.0:
            return raw
        if slope.is_integer() and inter.is_integer():
            low = raw.min() * slope + inter if raw.size else 0
            high = raw.max() * slope + inter if raw.size else 0
            lo, hi = sorted((float(low), float(high)))
            info = np.iinfo(np.int16)
            if info.min <= lo and hi <= info.max:
                wide = raw.astype(np.int32)
                if slope != 1.0:
                    wide *= int(slope)
                wide += int(inter)
                return wide.astype(np.int16)
    array = raw.astype(np.float32, copy=False)
    if slope != 1.0 or inter != 0.0:
        array = array * np.float32(slope) + np.float32(inter)
    return array


def _short(err: BaseException) -> str:
    return " ".join(str(err).split())[:160] or type(err).__name__
