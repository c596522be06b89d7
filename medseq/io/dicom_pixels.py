"""Pixels of DICOM files: decoding, reading into one array, rescaling, tilt resampling.

Uncompressed little-endian pixels are read straight from the file into the preallocated
volume (the fast path: one thread, no intermediate copies); every other encoding (big endian,
deflated, RLE, JPEG, JPEG-LS, JPEG 2000) is decoded by pydicom and its pylibjpeg plugins.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medseq.errors import DicomError, first_line
from medseq.io.dicom_geometry import SeriesGeometry, as_float, as_int

__all__ = ["read_pixels", "read_series_pixels"]

PIXEL_OFFSET_ATTRIBUTE = "_medseq_pixel_offset"
"""Where :func:`medseq.io.dicom.read_header` records the file offset of the pixel element."""
_NATIVE_LITTLE = {ImplicitVRLittleEndian, ExplicitVRLittleEndian}


def read_series_pixels(paths: list[Path], headers: list[Dataset], geometry: SeriesGeometry, *,
                       name: str, records: Sequence[Any] | None = None) -> np.ndarray:
    """Rescaled voxels of a validated series as ``(slices, rows, columns)`` in slice order.

    CT whose rescaled values fit stays int16 (HU); anything else is float32. Dropped duplicates
    are checked to carry the same pixels as the slice kept at their position, and tilted stacks
    are resampled onto the orthogonal grid of ``geometry.affine``.

    Args:
        paths: The files, in the order of ``headers``.
        headers: Their headers from :func:`medseq.io.dicom.read_header`.
        geometry: From :func:`medseq.io.dicom_geometry.series_geometry`.
        name: The series in error messages.
        records: Plain-value copies of ``headers`` (anything with ``get``) to read fields from
            faster than through pydicom; default ``headers``.
    """
    fields = list(records) if records is not None else headers
    first = fields[geometry.sources[geometry.order[0]][0]]
    raw = _read_raw(paths, headers, fields, geometry, name=name)
    _check_duplicates(paths, headers, fields, geometry, raw, name=name)
    slopes, intercepts = _rescale(fields, geometry)
    array = _apply_rescale(raw, slopes, intercepts, modality=str(first.get("Modality", "")))
    if geometry.shear_pixels != (0.0, 0.0):
        array = _unshear(array, geometry)
    return array


def read_pixels(path: Path) -> np.ndarray:
    """Decoded, rescaled pixels of one file as float64 ``(frames, rows, cols[, samples])``.

    A reference reader for checks and tests: the values pydicom gives after the modality LUT
    (RescaleSlope/Intercept, shared or per frame).
    """
    ds = _read_full(Path(path))
    data = np.asarray(_pixel_array(ds, Path(path)), dtype=np.float64)
    frames = as_int(ds.get("NumberOfFrames"), 1)
    samples = as_int(ds.get("SamplesPerPixel"), 1)
    if frames == 1:
        data = data[None]
    slopes, intercepts = _file_rescale(ds, frames)
    shape = (frames,) + (1,) * (data.ndim - 1)
    if samples == 1:
        data = data * slopes.reshape(shape) + intercepts.reshape(shape)
    return data


# -- reading ---------------------------------------------------------------------------------


def _read_raw(paths: list[Path], headers: list[Dataset], fields: Sequence[Any],
              geometry: SeriesGeometry, *, name: str) -> np.ndarray:
    """Stored values, (slices, rows, columns), in geometry order (before rescale)."""
    first = fields[geometry.sources[geometry.order[0]][0]]
    count = geometry.shape[2]
    # The acquired slice size (a tilted stack's resampled grid is larger).
    rows, cols = as_int(first.get("Rows"), 0), as_int(first.get("Columns"), 0)
    raw = np.empty((count, rows, cols), dtype=_stored_dtype(first))
    by_file: dict[int, list[tuple[int, int]]] = {}
    for k, n in enumerate(geometry.order):
        src, frame = geometry.sources[n]
        by_file.setdefault(src, []).append((k, frame))
    for src, targets in by_file.items():
        record = fields[src]
        if len(targets) == 1 and as_int(record.get("NumberOfFrames"), 1) == 1 and (
                _read_native_into(paths[src], headers[src], record, raw[targets[0][0]])):
            continue
        frames = _decoded_frames(paths[src], raw.dtype, name=name)
        for k, frame in targets:
            raw[k] = frames[frame]
    return raw


def _read_native_into(path: Path, ds: Dataset, record: Any, out: np.ndarray) -> bool:
    """Read uncompressed little-endian pixels straight into ``out``; False if not that kind."""
    offset = getattr(ds, PIXEL_OFFSET_ATTRIBUTE, None)
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if (offset is None or syntax not in _NATIVE_LITTLE
            or as_int(record.get("SamplesPerPixel"), 1) != 1
            or as_int(record.get("BitsAllocated"), 0) != out.itemsize * 8):
        return False
    with open(path, "rb") as fp:
        fp.seek(offset)
        head = fp.read(12)
        if len(head) < 12 or head[:4] != b"\xe0\x7f\x10\x00":
            return False
        if syntax == ImplicitVRLittleEndian:
            length, start = struct.unpack("<I", head[4:8])[0], offset + 8
        elif head[4:6] in (b"OW", b"OB", b"UN", b"OV"):
            length, start = struct.unpack("<I", head[8:12])[0], offset + 12
        else:
            return False  # an unusual VR: pydicom knows what to do
        if length == 0xFFFFFFFF or length < out.nbytes:
            return False
        fp.seek(start)
        got = fp.readinto(memoryview(out).cast("B"))  # type: ignore[arg-type]
    if got != out.nbytes:
        raise DicomError(f"truncated (pixel data has {got} of {out.nbytes} bytes)", path=path)
    _fix_unused_bits(out, record)
    return True


def _decoded_frames(path: Path, dtype: np.dtype, *, name: str) -> np.ndarray:
    ds = _read_full(path)
    data = _pixel_array(ds, path)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise DicomError(f"{path.name}: pixels of shape {data.shape} are not grey-level slices",
                         path=name)
    return data.astype(dtype, copy=False)


def _read_full(path: Path) -> Dataset:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
    except (EOFError, struct.error) as exc:
        raise DicomError(f"truncated ({first_line(exc)})", path=path) from None
    except OSError as exc:
        raise DicomError(f"cannot be read ({exc.strerror or exc})", path=path) from None
    except Exception as exc:
        raise DicomError(f"corrupt file ({type(exc).__name__}: {first_line(exc)})",
                         path=path) from None
    record_transfer_syntax(ds)
    return ds


def _pixel_array(ds: Dataset, path: Path) -> np.ndarray:
    if "PixelData" not in ds:
        raise DicomError("has no pixel data", path=path)
    syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(ds.pixel_array)
    except Exception as exc:  # decoders raise ValueError, RuntimeError, NotImplementedError...
        reason = first_line(exc)
        if "length" in reason and ("expected" in reason or "doesn't match" in reason):
            raise DicomError(f"truncated pixel data ({reason})", path=path) from None
        raise DicomError(f"cannot decode pixel data ({getattr(syntax, 'name', syntax)}): "
                         f"{reason}", path=path) from None


# -- values ----------------------------------------------------------------------------------


def _stored_dtype(ds: Any) -> np.dtype:
    bits = as_int(ds.get("BitsAllocated"), 16)
    signed = as_int(ds.get("PixelRepresentation"), 0) == 1
    if bits == 1:
        return np.dtype(np.uint8)
    if bits not in (8, 16, 32, 64):
        raise DicomError(f"unsupported BitsAllocated {bits}", path=_label(ds))
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


def _fix_unused_bits(out: np.ndarray, ds: Any) -> None:
    """Treat bits above BitsStored as pydicom does: sign-extend signed values, mask unsigned."""
    bits = as_int(ds.get("BitsStored"), out.itemsize * 8)
    if bits >= out.itemsize * 8 or bits <= 0:
        return
    if out.dtype.kind == "i":
        shift = out.itemsize * 8 - bits
        np.left_shift(out, shift, out=out)
        np.right_shift(out, shift, out=out)
    else:
        np.bitwise_and(out, (1 << bits) - 1, out=out)


def _rescale(headers: Sequence[Any], geometry: SeriesGeometry) -> tuple[np.ndarray, np.ndarray]:
    per_file: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    slopes = np.ones(len(geometry.order))
    intercepts = np.zeros(len(geometry.order))
    for k, n in enumerate(geometry.order):
        src, frame = geometry.sources[n]
        if src not in per_file:
            ds = headers[src]
            per_file[src] = _file_rescale(ds, as_int(ds.get("NumberOfFrames"), 1))
        slopes[k] = per_file[src][0][frame]
        intercepts[k] = per_file[src][1][frame]
    return slopes, intercepts


def _file_rescale(ds: Any, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """RescaleSlope/Intercept per frame: top level, or shared / per-frame functional groups."""
    slopes = np.full(frames, as_float(ds.get("RescaleSlope"), 1.0))
    intercepts = np.full(frames, as_float(ds.get("RescaleIntercept"), 0.0))
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    for f in range(frames):
        groups = [g for g in ((per_frame[f] if per_frame and f < len(per_frame) else None),
                              (shared[0] if shared else None)) if g is not None]
        for group in groups:
            seq = group.get("PixelValueTransformationSequence")
            if seq:
                slopes[f] = as_float(seq[0].get("RescaleSlope"), 1.0)
                intercepts[f] = as_float(seq[0].get("RescaleIntercept"), 0.0)
                break
    slopes[slopes == 0] = 1.0  # a zero slope is a writer bug; DICOM readers treat it as 1
    return slopes, intercepts


def _apply_rescale(raw: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray, *,
                   modality: str) -> np.ndarray:
    """int16 for CT whose rescaled values fit (intercept added in place), else float32."""
    intercept = float(intercepts[0])
    if (modality == "CT" and raw.dtype.kind in "iu" and np.all(slopes == 1.0)
            and np.all(intercepts == intercept) and intercept.is_integer()):
        # Only the bound the intercept pushes towards the int16 limits needs a pass over the
        # data (unsigned input also needs its maximum to be viewable as int16).
        info = np.iinfo(raw.dtype)
        signed = info.min < 0
        lo = int(raw.min()) if signed and (intercept < 0 or info.min < -32768) else info.min
        hi = int(raw.max()) if intercept > 0 or info.max > 32767 else info.max
        if lo + intercept >= -32768 and hi + intercept <= 32767:
            if raw.dtype == np.int16 or (raw.dtype == np.uint16 and hi <= 32767):
                out = raw.view(np.int16)
            else:
                out = raw.astype(np.int16)
            if intercept:
                out += np.int16(intercept)
            return out
    values: np.ndarray[Any, np.dtype[np.float32]] = raw.astype(np.float32)
    if np.any(slopes != 1.0):
        values *= slopes.astype(np.float32)[:, None, None]
    if np.any(intercepts != 0.0):
        values += intercepts.astype(np.float32)[:, None, None]
    return values


def _check_duplicates(paths: list[Path], headers: list[Dataset], fields: Sequence[Any],
                      geometry: SeriesGeometry, raw: np.ndarray, *, name: str) -> None:
    """Dropped duplicates must carry the same values as the slice kept at their position.

    Copies sharing one SOPInstanceUID are no exception: four instances of one UID whose
    pixels differ (a lossy copy among them) are a conflict, not a duplicate to drop.
    """
    if not geometry.duplicates:
        return
    position = {n: k for k, n in enumerate(geometry.order)}
    decoded: dict[int, np.ndarray] = {}
    rescale: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def values(n: int, stored: np.ndarray | None = None) -> np.ndarray:
        src, frame = geometry.sources[n]
        if stored is None:
            stored = np.empty(raw.shape[1:], dtype=raw.dtype)
            single = as_int(fields[src].get("NumberOfFrames"), 1) == 1
            if not (single and _read_native_into(paths[src], headers[src], fields[src],
                                                 stored)):
                if src not in decoded:
                    decoded[src] = _decoded_frames(paths[src], raw.dtype, name=name)
                stored = decoded[src][frame]
        if src not in rescale:
            rescale[src] = _file_rescale(fields[src], as_int(fields[src].get("NumberOfFrames"),
                                                             1))
        slope, intercept = rescale[src][0][frame], rescale[src][1][frame]
        return stored.astype(np.float64) * slope + intercept

    for dup, kept in zip(geometry.duplicates, geometry.duplicate_of, strict=True):
        if not np.array_equal(values(dup), values(kept, raw[position[kept]])):
            labels = geometry.labels or tuple(
                f"{paths[s].name}" for s, _ in geometry.sources)
            same_uid = (str(fields[geometry.sources[dup][0]].get("SOPInstanceUID") or "")
                        == str(fields[geometry.sources[kept][0]].get("SOPInstanceUID") or "x"))
            raise DicomError(f"two slices at one position with different pixels: "
                             f"{labels[kept]} and {labels[dup]}"
                             + (" (the same SOPInstanceUID: conflicting copies of one "
                                "instance, e.g. a lossy one)" if same_uid else ""), path=name)


def _unshear(array: np.ndarray, geometry: SeriesGeometry) -> np.ndarray:
    """Shift each tilted slice in its plane so the stack becomes orthogonal (linear).

    The output grid is ``geometry.shape``, enlarged from the acquired slice size so that every
    acquired voxel of every slice lands inside it; the acquired slice 0 starts at
    ``geometry.grid_offset``. Voxels no acquired slice covers get the series minimum.
    """
    from scipy import ndimage

    si, sj = geometry.shear_pixels
    oi, oj = geometry.grid_offset
    cols, rows, count = geometry.shape
    fill = float(array.min())
    out = np.empty((count, rows, cols), dtype=array.dtype)
    canvas = np.empty((rows, cols), dtype=np.float32)
    acquired_rows, acquired_cols = array.shape[1:]
    for k in range(count):
        canvas.fill(fill)
        canvas[-oj:-oj + acquired_rows, -oi:-oi + acquired_cols] = array[k]
        moved = ndimage.shift(canvas, (k * sj, k * si), order=1, mode="grid-constant", cval=fill,
                              prefilter=False)
        out[k] = np.rint(moved) if out.dtype.kind in "iu" else moved
    return out


# -- small helpers ---------------------------------------------------------------------------


def record_transfer_syntax(ds: Dataset) -> None:
    """Give bare datasets (no file meta) the transfer syntax pydicom inferred while reading."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _label(ds: Any) -> str:
    return Path(str(getattr(ds, "filename", "") or "instance")).name
