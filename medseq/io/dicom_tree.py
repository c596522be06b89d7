"""A DICOM tree read by headers only: group files into patients, studies and series, and choose
the analysable series of each study.

Files may have any name or none, sit anywhere, lack the preamble and mix patients: grouping uses
PatientID -> StudyInstanceUID (one timepoint) -> SeriesInstanceUID, never names or folders.
A study's analysable series is a CT, MR or PT image series that is not a localizer, whose
geometry :func:`medseq.io.dicom.series_geometry` accepts, with the most slices; a
``--series`` regular expression on SeriesDescription narrows the choice.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from medseq.errors import DicomError, InputDataError, LayoutError
from medseq.io.cohort import ImageFormat, Patient, SeriesInfo, SkipKind, Skipped, Timepoint
from medseq.io.dicomdir import is_dicomdir_name, referenced_files
from medseq.io.header_record import HeaderRecord
from medseq.io.header_scan import scan_record
from medseq.io.timeline import in_date_order, parse_date
from medseq.io.walk import WalkReport, walk_files

if TYPE_CHECKING:
    from pydicom import Dataset

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
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_LOCALIZER_TYPES = ("LOCALIZER", "SCOUT", "TOPOGRAM")
_LOCALIZER_DESCRIPTION = re.compile(
    r"\b(locali[sz]er|scout|survey|topogram|surview|scanogram|3[- ]?plane)", re.IGNORECASE)
_SCOUT_MAX_IMAGES = 3
"""A part of a series in another orientation is taken for a scout only when this small..."""
_SCOUT_MIN_ANGLE_DEGREES = 45.0
"""...and turned at least this far from the series' main orientation."""

Header: TypeAlias = "HeaderRecord | Dataset"
"""A file's header fields (a plain record; a Dataset for enhanced multi-frame files)."""
Item: TypeAlias = "tuple[Path, Header]"
"""A file and its header."""
Progress = Callable[[int], None]
"""Called with the number of files read so far (every few hundred files)."""


@dataclass
class HeaderIndex:
    """Readable DICOM headers under a path, and every file left out with its reason."""

    headers: list[Item] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files_seen: int = 0
    dicomdirs: int = 0
    broken: dict[str, list[tuple[Path, str, str]]] = field(default_factory=dict)
    """SeriesInstanceUID -> ``(file, reason, SOPInstanceUID)`` of files of that series whose
    header was read but that are unusable (truncated, pixels stripped): unless an intact copy
    of the same instance is there, their series cannot be loaded whole."""


@dataclass(frozen=True)
class SeriesChoice:
    """The series chosen for one study, with the study's date."""

    series: SeriesInfo
    study_uid: str
    date: dt.date | None
    time: str


@dataclass
class DicomResult:
    """Patients found in a DICOM tree, and what was left out."""

    patients: list[Patient] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files_seen: int = 0
    dicom_files: int = 0
    dicomdirs: int = 0


def index_headers(path: Path, *, progress: Progress | None = None) -> HeaderIndex:
    """Read the header of every file under ``path`` (a folder, a DICOMDIR or one file).

    Pixel data is never read. A DICOMDIR found in the tree is followed: files it names that
    are missing are reported; the files it references are read like any other.
    """
    index = HeaderIndex()
    report = WalkReport()
    if path.is_file() and is_dicomdir_name(path):
        files = _dicomdir_files(path, index)
    elif path.is_file():
        files = [path]
    else:
        files = []
        for file, size in walk_files(path, report):
            index.files_seen += 1
            if is_dicomdir_name(file):
                files.extend(p for p in _dicomdir_files(file, index) if not _under(p, path))
                continue
            if size == 0:
                index.skipped.append(Skipped(path=str(file), reason="empty (0 bytes)"))
                continue
            files.append(file)
    index.skipped.extend(report.skipped)
    index.files_seen = max(index.files_seen, len(files))
    unique = list(dict.fromkeys(files))
    for file, (record, reason, partial) in zip(unique, _read_all(unique, progress), strict=True):
        if record is None:
            index.skipped.append(Skipped(path=str(file), reason=reason))
            uid, sop = partial
            if uid:
                index.broken.setdefault(uid, []).append((file, reason, sop))
            continue
        if _sop_class(record) == _DICOMDIR_SOP_CLASS:
            index.skipped.append(Skipped(path=str(file), reason="a DICOMDIR index under "
                                         "another name; its files are read from the tree"))
            continue
        index.headers.append((file, record))
    return index


PARALLEL_MIN_FILES = 600
"""Headers of at least this many files are read by two processes (when there are two CPUs)."""
_CHUNK_FILES = 200
"""Progress is reported every this many files."""

_Read: TypeAlias = "tuple[Header | None, str, tuple[str, str]]"
"""A file's header record, or None with the reason and the (series, instance) UIDs it gave."""


def _read_one(file: Path) -> _Read:
    record = scan_record(file)  # the common file, without pydicom
    if record is not None:
        return record, "", ("", "")
    from medseq.io.dicom import header_fields, read_header

    try:
        return header_fields(read_header(file)), "", ("", "")
    except DicomError as err:
        partial = getattr(err, "header", None)
        if partial is None:
            return None, err.reason, ("", "")
        fields = header_fields(partial)
        return None, err.reason, (_text(fields, "SeriesInstanceUID"),
                                  _text(fields, "SOPInstanceUID"))


def _read_all(files: list[Path], progress: Progress | None) -> Iterator[_Read]:
    """Every file's header, in order; two processes share a large tree when two CPUs exist.

    Reading a header is Python work bound by one core; results are identical either way.
    """
    from medseq.io.two_process import can_fork, map_in_two

    if len(files) >= PARALLEL_MIN_FILES and can_fork():
        yield from map_in_two(_read_one, files, progress=progress, every=_CHUNK_FILES)
        return
    for done, file in enumerate(files, start=1):
        if progress is not None and done % 250 == 0:
            progress(done)
        yield _read_one(file)


def discover_dicom(path: Path, *, series: str | None = None,
                   progress: Progress | None = None) -> DicomResult:
    """Patients, timepoints (one per study, date order) and chosen series under ``path``."""
    pattern = compile_series_pattern(series)
    index = index_headers(path, progress=progress)
    result = DicomResult(skipped=list(index.skipped), warnings=list(index.warnings),
                         files_seen=index.files_seen, dicom_files=len(index.headers),
                         dicomdirs=index.dicomdirs)
    tree: dict[str, dict[str, dict[str, list[Item]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for file, ds in index.headers:
        missing = [key for key in ("StudyInstanceUID", "SeriesInstanceUID") if not _text(ds, key)]
        patient_id = _text(ds, "PatientID")
        if not patient_id:
            missing.insert(0, "PatientID")
        if missing:
            result.skipped.append(Skipped(path=str(file), patient_id=patient_id or None,
                                          kind=SkipKind.FILE,
                                          reason=f"no {' or '.join(missing)}: cannot tell "
                                          "which patient, study or series it belongs to"))
            continue
        tree[patient_id][_text(ds, "StudyInstanceUID")][_text(ds, "SeriesInstanceUID")].append(
            (file, ds))
    for patient_id in sorted(tree):
        _add_patient(patient_id, tree[patient_id], pattern, result, broken=index.broken)
    return result


def choose_in_folder(folder: Path, *, series: str | None = None
                     ) -> tuple[SeriesChoice, list[Skipped], list[str]]:
    """The analysable series among all DICOM files under ``folder`` (a manifest's image cell).

    Raises:
        DicomError: no DICOM image series there, or none usable.
    """
    pattern = compile_series_pattern(series)
    index = index_headers(folder)
    groups: dict[str, list[Item]] = defaultdict(list)
    for file, ds in index.headers:
        uid = _text(ds, "SeriesInstanceUID")
        if not uid:
            index.skipped.append(Skipped(path=str(file), reason="no SeriesInstanceUID"))
            continue
        groups[uid].append((file, ds))
    if not groups:
        reasons = "; ".join(sorted({s.reason for s in index.skipped}))[:200]
        raise DicomError(f"no readable DICOM image files ({reasons or 'folder is empty'})",
                         path=folder)
    skipped = list(index.skipped)
    try:
        choice = _choose_series(groups, pattern, skipped, where=folder, patient_id=None,
                                broken=index.broken)
    except _NoImageSeriesError as err:
        raise DicomError(str(err), path=folder) from None
    studies = {_text(ds, "StudyInstanceUID") for _, ds in index.headers}
    warnings = list(index.warnings)
    if len(studies) > 1:
        warnings.append(f"{folder}: holds {len(studies)} studies; chose series "
                        f"{choice.series.series_uid} across all of them")
    return choice, skipped, warnings


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


def _add_patient(patient_id: str,
                 studies: dict[str, dict[str, list[Item]]],
                 pattern: re.Pattern[str] | None, result: DicomResult, *,
                 broken: dict[str, list[tuple[Path, str, str]]]) -> None:
    skipped: list[Skipped] = []
    study_reasons: list[str] = []
    choices: list[SeriesChoice] = []
    try:
        for study_uid, series_groups in studies.items():
            where = _common_folder(p for items in series_groups.values() for p, _ in items)
            try:
                choices.append(_choose_series(series_groups, pattern, skipped, where=where,
                                              patient_id=patient_id, broken=broken))
            except _NoImageSeriesError as err:
                skipped.append(Skipped(path=str(where), reason=f"study {study_uid}: {err}",
                                       patient_id=patient_id, kind=SkipKind.STUDY))
                study_reasons.append(str(err))
        if not choices:
            reasons = "; ".join(dict.fromkeys(study_reasons))
            raise LayoutError(f"patient {patient_id}: no study with an analysable image "
                              f"series ({reasons})",
                              path=_common_folder(p for st in studies.values()
                                                  for items in st.values() for p, _ in items))
        timepoints = _timepoints(patient_id, choices, result.warnings)
    except InputDataError as err:
        result.skipped.extend(skipped)
        result.skipped.append(Skipped(path=str(err.path or ""), reason=err.reason,
                                      patient_id=patient_id, kind=SkipKind.PATIENT))
        return
    result.skipped.extend(skipped)
    result.patients.append(Patient(patient_id=patient_id, timepoints=timepoints))


def _timepoints(patient_id: str, choices: list[SeriesChoice], warnings: list[str]
                ) -> tuple[Timepoint, ...]:
    choices.sort(key=lambda c: (c.date or dt.date.max, c.time, c.study_uid))
    names: dict[str, int] = defaultdict(int)
    timepoints = []
    for choice in choices:
        base = choice.date.isoformat() if choice.date else "undated"
        names[base] += 1
        name = base if names[base] == 1 else f"{base}-{names[base]}"
        timepoints.append(Timepoint(name=name, date=choice.date, days=None, image=choice.series,
                                    study_uid=choice.study_uid))
    for base, count in names.items():
        if count > 1 and base != "undated":
            warnings.append(f"patient {patient_id}: {count} studies on {base}, each a timepoint "
                            "on the same day; to keep one, list it in a manifest CSV")
    if all(choice.date is None for choice in choices):
        warnings.append(f"patient {patient_id}: no StudyDate, AcquisitionDate or SeriesDate; "
                        "timepoints ordered by StudyTime, days from baseline unknown")
    where = _common_folder(f for c in choices for f in c.series.files)
    return in_date_order(timepoints, patient_id=patient_id, where=where)


class _NoImageSeriesError(Exception):
    """A study holds no image series worth a timepoint (only non-images or localizers)."""


@dataclass(frozen=True)
class _Candidate:
    uid: str
    headers: list[Item]
    geometry: SeriesGeometry
    description: str

    def rank(self) -> tuple[float, ...]:
        ds = self.headers[0][1]
        original = 1.0 if "ORIGINAL" in _image_type(ds) else 0.0
        number = float(_number(ds, "SeriesNumber") or 0.0)
        return (float(self.geometry.shape[2]), -float(self.geometry.spacing[2]), original,
                -number)


def _choose_series(groups: dict[str, list[Item]],
                   pattern: re.Pattern[str] | None, skipped: list[Skipped], *,
                   where: Path, patient_id: str | None,
                   broken: dict[str, list[tuple[Path, str, str]]] | None = None) -> SeriesChoice:
    """Choose a study's series; report every other series in ``skipped`` with its reason.

    Raises:
        _NoImageSeriesError: nothing but non-image objects or localizers (not a timepoint).
        DicomError: image series exist but none is usable (the timepoint is broken).
    """
    from medseq.io.dicom_geometry import series_geometry

    def skip(items: Sequence[Item], reason: str) -> None:
        where_items = items[0][0] if len(items) == 1 else _common_folder(p for p, _ in items)
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
        if pattern is not None and not pattern.search(_text(items[0][1], "SeriesDescription")):
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
        present = {_text(ds, "SOPInstanceUID") for _, ds in main}
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
                                       name=str(_common_folder(p for p, _ in main)))
        except DicomError as err:
            broken_series.append((len(main), DicomError(f"{label}: {err.reason}",
                                                         path=err.path)))
            skip(main, f"{label}: {err.reason}")
            continue
        candidates.append(_Candidate(uid=uid, headers=main, geometry=geometry,
                                     description=_text(main[0][1], "SeriesDescription")))
    if not candidates:
        if broken_series:
            worst = max(broken_series, key=lambda b: b[0])[1]
            raise DicomError(worst.reason, path=worst.path or where)
        if localizer_only:
            raise _NoImageSeriesError("only localizer/scout images, no analysable CT, MR or PT "
                                 "series")
        if unmatched:
            raise _NoImageSeriesError(f"no image series whose SeriesDescription matches --series "
                                 f"{pattern.pattern if pattern else ''!r}")
        raise _NoImageSeriesError("no image series (only non-image objects such as SR, RTSTRUCT "
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
        date = parse_date(_text(ds, key))
        if date is not None:
            break
    series = SeriesInfo(
        format=ImageFormat.DICOM,
        files=tuple(p for p, _ in ordered),
        series_uid=best.uid,
        description=best.description,
        modality=_text(ds, "Modality").upper(),
        shape=tuple(int(n) for n in geometry.shape),  # type: ignore[arg-type]
        spacing=tuple(float(s) for s in geometry.spacing),  # type: ignore[arg-type]
        affine=tuple(tuple(float(v) for v in row) for row in np.asarray(geometry.affine)),
    )
    return SeriesChoice(series=series, study_uid=_text(ds, "StudyInstanceUID"), date=date,
                        time=_text(ds, "StudyTime"))


def _split_scouts(items: list[Item]) -> tuple[list[Item], list[tuple[list[Item], str]]]:
    """Separate localizer images from a series' main stack.

    Localizers are images whose ImageType says LOCALIZER (or SCOUT, TOPOGRAM), every image of
    a series described as a localizer, and small groups of images turned far from the rest of
    the series (a scout sharing the axial series' UID). Returns the main stack and the dropped
    parts with their reasons.
    """
    description = _text(items[0][1], "SeriesDescription")
    if _LOCALIZER_DESCRIPTION.search(description):
        return [], [(items, f"localizer series (SeriesDescription {description!r}); "
                            f"{len(items)} file(s)")]
    typed = [(p, ds) for p, ds in items if any(t in v for v in _image_type(ds)
                                                for t in _LOCALIZER_TYPES)]
    rest = [(p, ds) for p, ds in items if not any(t in v for v in _image_type(ds)
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
    if _frames(ds) > 1:
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
    modality = _text(ds, "Modality").upper()
    if modality in NON_IMAGE_MODALITIES:
        return f"{modality} ({NON_IMAGE_MODALITIES[modality]}), not an image"
    sop = _sop_class(ds)
    for prefix, what in _NON_IMAGE_SOP_PREFIXES.items():
        if sop == prefix or (prefix.endswith(".") and sop.startswith(prefix)):
            return f"{what} (SOP class {sop}), not an image"
    if "Rows" not in ds:
        return f"holds no image (no Rows; modality {modality or 'not given'})"
    return None


def _modality_reason(items: list[Item]) -> str | None:
    modality = _text(items[0][1], "Modality").upper()
    if modality not in IMAGE_MODALITIES:
        return (f"modality {modality or 'not given'} is not analysed "
                "(CT, MR and PT only)")
    return None


def _series_label(uid: str, items: Sequence[Item]) -> str:
    description = _text(items[0][1], "SeriesDescription")
    return f"series {uid}" + (f" ({description})" if description else "")


def _dicomdir_files(path: Path, index: HeaderIndex) -> list[Path]:
    index.dicomdirs += 1
    try:
        found = referenced_files(path)
    except DicomError as err:
        index.skipped.append(Skipped(path=str(path), reason=err.reason))
        return []
    for missing in found.missing:
        index.skipped.append(Skipped(path=str(missing),
                                     reason=f"referenced by DICOMDIR {path} but missing"))
    if found.missing:
        index.warnings.append(f"{path}: {len(found.missing)} of "
                              f"{len(found.missing) + len(found.present)} referenced files are "
                              "missing")
    return list(found.present)


def _under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _common_folder(paths: Iterable[Path]) -> Path:
    import os

    folders = {os.path.dirname(p) for p in paths}  # (str: hashing Paths costs more)
    if not folders:
        return Path()
    if len(folders) == 1:
        return Path(folders.pop())
    try:
        return Path(os.path.commonpath(list(folders)))
    except ValueError:
        return sorted(Path(f) for f in folders)[0]


def _text(ds: Header, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _image_type(ds: Header) -> list[str]:
    value = ds.get("ImageType")
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [str(v).strip().upper() for v in values]


def _sop_class(ds: Header) -> str:
    sop = _text(ds, "SOPClassUID")
    if not sop and hasattr(ds, "file_meta"):
        sop = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
    return sop


def _frames(ds: Header) -> int:
    value = _number(ds, "NumberOfFrames")
    return int(value) if value else 1


def _number(ds: Header, keyword: str) -> float | None:
    try:
        value = ds.get(keyword)
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
