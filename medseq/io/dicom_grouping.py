"""Group the DICOM files under a path into patients, studies (one timepoint each) and series.

Files may have any name or none, sit anywhere, lack the preamble and mix patients: grouping uses
PatientID -> StudyInstanceUID (one timepoint) -> SeriesInstanceUID, never names or folders.
Each study's series is chosen by :mod:`medseq.io.dicom_series_choice`; SEG and RTSTRUCT
objects are set aside and attached to the series they reference as lesion masks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from medseq.errors import DicomError, InputDataError, LayoutError
from medseq.io.cohort import MaskSource, Patient, SkipKind, Skipped, Timepoint
from medseq.io.dicom_fields import ANNOTATION_KINDS, Item, common_folder, header_text, sop_class
from medseq.io.dicom_series_choice import (
    NoImageSeriesError,
    SeriesChoice,
    choose_series,
    compile_series_pattern,
)
from medseq.io.dicom_tree import Progress, index_headers
from medseq.io.timeline import in_date_order


@dataclass
class DicomResult:
    """Patients found in a DICOM tree, and what was left out."""

    patients: list[Patient] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files_seen: int = 0
    dicom_files: int = 0
    dicomdirs: int = 0


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
    annotations: list[tuple[Path, str | None]] = []
    for file, ds in index.headers:
        if sop_class(ds) in ANNOTATION_KINDS:  # a mask for the series it references
            annotations.append((file, header_text(ds, "PatientID") or None))
            continue
        missing = [key for key in ("StudyInstanceUID", "SeriesInstanceUID")
                   if not header_text(ds, key)]
        patient_id = header_text(ds, "PatientID")
        if not patient_id:
            missing.insert(0, "PatientID")
        if missing:
            result.skipped.append(Skipped(path=str(file), patient_id=patient_id or None,
                                          kind=SkipKind.FILE,
                                          reason=f"no {' or '.join(missing)}: cannot tell "
                                          "which patient, study or series it belongs to"))
            continue
        study = header_text(ds, "StudyInstanceUID")
        tree[patient_id][study][header_text(ds, "SeriesInstanceUID")].append((file, ds))
    for patient_id in sorted(tree):
        _add_patient(patient_id, tree[patient_id], pattern, result, broken=index.broken)
    if annotations:
        _attach_masks(annotations, result)
    return result


def _attach_masks(annotations: list[tuple[Path, str | None]], result: DicomResult) -> None:
    """Make each SEG/RTSTRUCT the mask of the timepoint whose image series it references.

    Objects that cannot be attached (their series is not a chosen image series, another frame
    of reference, a second object for one series...) go to ``result.skipped`` with the reason.
    """
    from medseq.dicom_objects.attach import (
        IndexedSeries,
        attach_annotations,
        read_annotation_object,
    )

    index: dict[str, IndexedSeries] = {}
    for p, patient in enumerate(result.patients):
        for t, tp in enumerate(patient.timepoints):
            if tp.image.series_uid:
                index[tp.image.series_uid] = IndexedSeries(
                    series_uid=tp.image.series_uid,
                    frame_of_reference_uid=tp.image.frame_of_reference_uid or "",
                    timepoint=(p, t))
    objects = []
    owner = dict(annotations)
    for path, patient_id in sorted(annotations):
        obj = read_annotation_object(path)
        if obj is None:
            result.skipped.append(Skipped(path=str(path), patient_id=patient_id,
                                          reason="SEG or RTSTRUCT whose header cannot be read"))
        else:
            objects.append(obj)
    attachment = attach_annotations(objects, index)
    for path, reason in attachment.refused:
        result.skipped.append(Skipped(path=str(path), reason=f"not used as a mask: {reason}",
                                      patient_id=owner.get(path)))
    patients = [list(patient.timepoints) for patient in result.patients]
    for series_uid, attached in sorted(attachment.by_series.items()):
        p, t = index[series_uid].timepoint
        first, *others = sorted(attached, key=lambda obj: str(obj.path))
        patients[p][t] = dataclasses.replace(patients[p][t], mask=first.path,
                                             mask_source=MaskSource(first.kind))
        for other in others:
            result.skipped.append(Skipped(
                path=str(other.path), patient_id=owner.get(other.path),
                reason=f"not used as a mask: series {series_uid} has its mask from "
                       f"{first.path.name} already (one SEG or RTSTRUCT per timepoint)"))
    result.patients = [dataclasses.replace(patient, timepoints=tuple(timepoints))
                       for patient, timepoints in zip(result.patients, patients, strict=True)]


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
        uid = header_text(ds, "SeriesInstanceUID")
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
        choice = choose_series(groups, pattern, skipped, where=folder, patient_id=None,
                                broken=index.broken)
    except NoImageSeriesError as err:
        raise DicomError(str(err), path=folder) from None
    studies = {header_text(ds, "StudyInstanceUID") for _, ds in index.headers}
    warnings = list(index.warnings)
    if len(studies) > 1:
        warnings.append(f"{folder}: holds {len(studies)} studies; chose series "
                        f"{choice.series.series_uid} across all of them")
    return choice, skipped, warnings


def _add_patient(patient_id: str,
                 studies: dict[str, dict[str, list[Item]]],
                 pattern: re.Pattern[str] | None, result: DicomResult, *,
                 broken: dict[str, list[tuple[Path, str, str]]]) -> None:
    skipped: list[Skipped] = []
    study_reasons: list[str] = []
    choices: list[SeriesChoice] = []
    try:
        for study_uid, series_groups in studies.items():
            where = common_folder(p for items in series_groups.values() for p, _ in items)
            try:
                choices.append(choose_series(series_groups, pattern, skipped, where=where,
                                              patient_id=patient_id, broken=broken))
            except NoImageSeriesError as err:
                skipped.append(Skipped(path=str(where), reason=f"study {study_uid}: {err}",
                                       patient_id=patient_id, kind=SkipKind.STUDY))
                study_reasons.append(str(err))
        if not choices:
            reasons = "; ".join(dict.fromkeys(study_reasons))
            raise LayoutError(f"patient {patient_id}: no study with an analysable image "
                              f"series ({reasons})",
                              path=common_folder(p for st in studies.values()
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
    where = common_folder(f for c in choices for f in c.series.files)
    return in_date_order(timepoints, patient_id=patient_id, where=where)
