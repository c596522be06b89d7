"""Choose the analysable image series of one DICOM study, reading headers only.

A study's analysable series is a CT, MR or PT image series that is not a localizer, whose
geometry :func:`medseq.io.dicom.series_geometry` accepts, with the most slices; a
``--series`` regular expression on SeriesDescription narrows the choice. Every other series is
reported with its reason.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medseq.errors import DicomError
from medseq.io.cohort import ImageFormat, SeriesInfo, SkipKind, Skipped
from medseq.io.dicom_fields import (
    Header,
    Item,
    common_folder,
    frame_count,
    header_number,
    header_text,
    image_type,
    sop_class,
)
from medseq.io.timeline import parse_date

if TYPE_CHECKING:
    from medseq.io.dicom import SeriesGeometry

IMAGE_MODALITIES: frozenset[str] = frozenset({"CT", "MR", "PT"})
NON_IMAGE_MODALITIES: dict[str, str] = {
    "SR": "structured report",
    "RTSTRUCT": "RT structure set",
    "SEG": "segmentation object",
    "PR": "presentation state",
    "KO": "key object selection",
    "RTPLAN": "RT plan",
    "RTDOSE": "RT dose",
    "RTRECORD": "RT treatment record",
    "REG": "registration object",
    "DOC": "encapsulated document",
    "FID": "fiducials",
    "PLAN": "plan",
}
"""Modalities whose objects are not images; they are skipped with this description."""

_NON_IMAGE_SOP_PREFIXES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.88.": "structured report",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT structure set",
    "1.2.840.10008.5.1.4.1.1.66.4": "segmentation object",
    "1.2.840.10008.5.1.4.1.1.66.": "registration, fiducials or surface object",
    "1.2.840.10008.5.1.4.1.1.66": "raw data object",
    "1.2.840.10008.5.1.4.1.1.4.2": "MR spectroscopy object",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state",
    "1.2.840.10008.5.1.4.1.1.104.": "encapsulated document",
}
_LOCALIZER_TYPES = ("LOCALIZER", "SCOUT", "TOPOGRAM")
_LOCALIZER_DESCRIPTION = re.compile(
    r"\b(locali[sz]er|scout|survey|topogram|surview|scanogram|3[- ]?plane)", re.IGNORECASE)
_SCOUT_MAX_IMAGES = 3
"""A part of a series in another orientation is taken for a scout only when this small..."""
_SCOUT_MIN_ANGLE_DEGREES = 45.0
"""...and turned at least this far from the series' main orientation."""

@dataclass(frozen=True)
class SeriesChoice:
    """The series chosen for one study, with the study's date."""

    series: SeriesInfo
    study_uid: str
    date: dt.date | None
    time: str


def compile_series_pattern(series: str | None) -> re.Pattern[str] | None:
    """Compile ``--series``; a bad expression is a usage error naming it."""
    if series is None:
        return None
    from medseq.errors import UsageError

    try:
        return re.compile(series, re.IGNORECASE)
    except re.error as err:
        raise UsageError(f"--series {series!r} is not a valid regular expression ({err})"
                         ) from None


class NoImageSeriesError(Exception):
    """A study holds no image series worth a timepoint (only non-images or localizers)."""


@dataclass(frozen=True)
class _Candidate:
    uid: str
    headers: list[Item]
    geometry: SeriesGeometry
    description: str

    def rank(self) -> tuple[float, ...]:
        ds = self.headers[0][1]
        original = 1.0 if "ORIGINAL" in image_type(ds) else 0.0
        number = float(header_number(ds, "SeriesNumber") or 0.0)
        return (float(self.geometry.shape[2]), -float(self.geometry.spacing[2]), original,
                -number)


def choose_series(groups: dict[str, list[Item]],
                   pattern: re.Pattern[str] | None, skipped: list[Skipped], *,
                   where: Path, patient_id: str | None,
                   broken: dict[str, list[tuple[Path, str, str]]] | None = None) -> SeriesChoice:
    """Choose a study's series; report every other series in ``skipped`` with its reason.

    Raises:
        NoImageSeriesError: nothing but non-image objects or localizers (not a timepoint).
        DicomError: image series exist but none is usable (the timepoint is broken).
    """
    from medseq.io.dicom_geometry import series_geometry

    def skip(items: Sequence[Item], reason: str) -> None:
        where_items = items[0][0] if len(items) == 1 else common_folder(p for p, _ in items)
        skipped.append(Skipped(path=str(where_items), reason=reason,
                               patient_id=patient_id, kind=SkipKind.SERIES))

    candidates: list[_Candidate] = []
    broken_series: list[tuple[int, DicomError]] = []
    unmatched = 0
    localizer_only = 0
    for uid, items in sorted(groups.items()):
        label = _series_label(uid, items)
        reasons = [_file_not_image(ds) for _, ds in items]
        if all(reasons):
            skip(items, f"{label}: {reasons[0]}; {len(items)} file(s)")
            continue
        for item, why in zip(items, reasons, strict=True):
            if why:  # e.g. a Philips raw data object inside the image series
                skip([item], f"{label}: {why}: left out of the series")
        items = [item for item, why in zip(items, reasons, strict=True) if not why]
        reason = _modality_reason(items)
        if reason is not None:
            skip(items, f"{label}: {reason}; {len(items)} file(s)")
            continue
        description = header_text(items[0][1], "SeriesDescription")
        if pattern is not None and not pattern.search(description):
            unmatched += 1
            skip(items, f"{label}: SeriesDescription does not match --series "
                        f"{pattern.pattern!r}")
            continue
        main, dropped = _split_scouts(items)
        for part, why in dropped:
            skip(part, f"{label}: {why}")
        if not main:
            localizer_only += 1
            continue
        present = {header_text(ds, "SOPInstanceUID") for _, ds in main}
        unusable = [b for b in (broken or {}).get(uid, []) if not b[2] or b[2] not in present]
        if unusable:
            # Dropping the file would leave a gap (or a shorter stack) that hides the cause.
            path, why, _ = unusable[0]
            more = f" and {len(unusable) - 1} more file(s)" if len(unusable) > 1 else ""
            err = DicomError(f"{label}: {path.name}{more} unusable ({why}): the series cannot "
                             "be loaded whole", path=path.parent)
            broken_series.append((len(main) + len(unusable), err))
            skip(main, err.reason)
            continue
        try:
            geometry = series_geometry([ds for _, ds in main],
                                       name=str(common_folder(p for p, _ in main)))
        except DicomError as err:
            broken_series.append((len(main), DicomError(f"{label}: {err.reason}",
                                                         path=err.path)))
            skip(main, f"{label}: {err.reason}")
            continue
        candidates.append(_Candidate(uid=uid, headers=main, geometry=geometry,
                                     description=header_text(main[0][1], "SeriesDescription")))
    if not candidates:
        if broken_series:
            worst = max(broken_series, key=lambda b: b[0])[1]
            raise DicomError(worst.reason, path=worst.path or where)
        if localizer_only:
            raise NoImageSeriesError("only localizer/scout images, no analysable CT, MR or PT "
                                 "series")
        if unmatched:
            raise NoImageSeriesError(f"no image series whose SeriesDescription matches --series "
                                 f"{pattern.pattern if pattern else ''!r}")
        raise NoImageSeriesError("no image series (only non-image objects such as SR, RTSTRUCT "
                             "or SEG)")
    best = max(candidates, key=lambda c: (c.rank(), c.uid))
    for other in candidates:
        if other is not best:
            skip(other.headers, f"{_series_label(other.uid, other.headers)}: not chosen "
                 f"({other.geometry.shape[2]} slices); chose {best.uid} "
                 f"({best.description or 'no description'}, {best.geometry.shape[2]} slices)")
    return _choice(best)


def _choice(best: _Candidate) -> SeriesChoice:
    geometry = best.geometry
    # Slice indices count frames; map them to files, each once, in slice order. Files holding
    # only duplicates of kept slices come last: loading compares their pixels with the kept
    # ones (a repeated position with other pixels is a conflict, not a copy to drop).
    indices = list(geometry.order) + list(geometry.duplicates)
    files = [geometry.sources[i][0] if geometry.sources else i for i in indices]
    ordered = [best.headers[i] for i in dict.fromkeys(files)]
    ds = ordered[0][1]
    date = None
    for key in ("StudyDate", "AcquisitionDate", "SeriesDate", "ContentDate"):
        date = parse_date(header_text(ds, key))
        if date is not None:
            break
    series = SeriesInfo(
        format=ImageFormat.DICOM,
        files=tuple(p for p, _ in ordered),
        series_uid=best.uid,
        description=best.description,
        modality=header_text(ds, "Modality").upper(),
        shape=tuple(int(n) for n in geometry.shape),  # type: ignore[arg-type]
        spacing=tuple(float(s) for s in geometry.spacing),  # type: ignore[arg-type]
        affine=tuple(tuple(float(v) for v in row) for row in np.asarray(geometry.affine)),
        frame_of_reference_uid=header_text(ds, "FrameOfReferenceUID") or None,
    )
    return SeriesChoice(series=series, study_uid=header_text(ds, "StudyInstanceUID"), date=date,
                        time=header_text(ds, "StudyTime"))


def _split_scouts(items: list[Item]) -> tuple[list[Item], list[tuple[list[Item], str]]]:
    """Separate localizer images from a series' main stack.

    Localizers are images whose ImageType says LOCALIZER (or SCOUT, TOPOGRAM), every image of
    a series described as a localizer, and small groups of images turned far from the rest of
    the series (a scout sharing the axial series' UID). Returns the main stack and the dropped
    parts with their reasons.
    """
    description = header_text(items[0][1], "SeriesDescription")
    if _LOCALIZER_DESCRIPTION.search(description):
        return [], [(items, f"localizer series (SeriesDescription {description!r}); "
                            f"{len(items)} file(s)")]
    typed = [(p, ds) for p, ds in items if any(t in v for v in image_type(ds)
                                                for t in _LOCALIZER_TYPES)]
    rest = [(p, ds) for p, ds in items if not any(t in v for v in image_type(ds)
                                                  for t in _LOCALIZER_TYPES)]
    dropped: list[tuple[list[Item], str]] = []
    if typed:
        dropped.append((typed, f"{len(typed)} localizer image(s) (ImageType LOCALIZER) left "
                               "out of the series"))
    clusters = _orientation_clusters(rest)
    if len(clusters) > 1:
        main_normal, main = max(clusters, key=lambda c: len(c[1]))
        keep = list(main)
        for normal, members in clusters:
            if members is main:
                continue
            angle = _angle_degrees(main_normal, normal)
            if (len(members) <= _SCOUT_MAX_IMAGES and len(main) >= 2 * len(members)
                    and angle >= _SCOUT_MIN_ANGLE_DEGREES):
                dropped.append((members, f"{len(members)} image(s) turned {angle:.0f} degrees "
                                          "from the other images: taken for a scout and left "
                                          "out of the series"))
            else:
                keep.extend(members)  # a real mix: let the geometry check name it
        rest = [item for item in rest if any(item is k for k in keep)]
    return rest, dropped


def _orientation_clusters(items: list[Item]
                          ) -> list[tuple[np.ndarray | None, list[Item]]]:
    """Group single-frame images by slice normal (within one degree)."""
    clusters: list[tuple[np.ndarray | None, list[Item]]] = []
    unknown: list[Item] = []
    for item in items:
        normal = _normal(item[1])
        if normal is None:
            unknown.append(item)
            continue
        for centre, members in clusters:
            if centre is not None and abs(float(centre @ normal)) > 0.99985:
                members.append(item)
                break
        else:
            clusters.append((normal, [item]))
    if unknown:
        if clusters:  # missing tags stay with the main stack so the geometry check names them
            max(clusters, key=lambda c: len(c[1]))[1].extend(unknown)
        else:
            clusters.append((None, unknown))
    return clusters


def _normal(ds: Header) -> np.ndarray | None:
    if frame_count(ds) > 1:
        return None
    iop = ds.get("ImageOrientationPatient")
    try:
        values = tuple(float(v) for v in iop) if iop else None
    except (TypeError, ValueError):
        return None
    return _unit_normal(values) if values is not None and len(values) == 6 else None


@functools.lru_cache(maxsize=256)
def _unit_normal(values: tuple[float, ...]) -> np.ndarray | None:
    normal = np.cross(values[:3], values[3:])
    norm = float(np.linalg.norm(normal))
    return normal / norm if norm > 1e-6 else None


def _angle_degrees(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None:
        return 0.0
    return float(np.degrees(np.arccos(min(1.0, abs(float(a @ b))))))


def _file_not_image(ds: Header) -> str | None:
    """Why one file is not an image (SR, raw data, no Rows...), or None for an image."""
    modality = header_text(ds, "Modality").upper()
    if modality in NON_IMAGE_MODALITIES:
        return f"{modality} ({NON_IMAGE_MODALITIES[modality]}), not an image"
    sop = sop_class(ds)
    for prefix, what in _NON_IMAGE_SOP_PREFIXES.items():
        if sop == prefix or (prefix.endswith(".") and sop.startswith(prefix)):
            return f"{what} (SOP class {sop}), not an image"
    if "Rows" not in ds:
        return f"holds no image (no Rows; modality {modality or 'not given'})"
    return None


def _modality_reason(items: list[Item]) -> str | None:
    modality = header_text(items[0][1], "Modality").upper()
    if modality not in IMAGE_MODALITIES:
        return (f"modality {modality or 'not given'} is not analysed "
                "(CT, MR and PT only)")
    return None


def _series_label(uid: str, items: Sequence[Item]) -> str:
    description = header_text(items[0][1], "SeriesDescription")
    return f"series {uid}" + (f" ({description})" if description else "")
