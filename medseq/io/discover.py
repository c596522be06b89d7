"""Find the patients, timepoints and image series under one input path, reading headers only.

Three layouts are recognised, in this order:

1. a *manifest*: a ``.csv`` file with ``patient_id,timepoint,date,image,mask[,label]``, or a
   folder holding one named ``manifest.csv`` (what ``medseq sample-data`` writes);
2. the *NIfTI layout*: ``patient/<timepoint>/image.nii.gz`` (or ``.nii``), optional ``mask``;
3. a *DICOM tree*: any folder of DICOM files (any names, DICOMDIR optional), or one DICOMDIR.

What cannot be used is reported in :attr:`Cohort.skipped` with a one-line reason; a path where
no layout is recognised raises :class:`~medseq.errors.LayoutError`.

Example:
    >>> cohort = discover(Path("export"))
    >>> [tp.days for tp in cohort.patients[0].timepoints]
    [0, 91, 182]
"""

from __future__ import annotations

import os
from pathlib import Path

from medseq.errors import InputDataError, LayoutError
from medseq.io.cohort import Cohort, Layout, Patient, SkipKind, Skipped
from medseq.io.dicom_grouping import discover_dicom
from medseq.io.dicom_series_choice import compile_series_pattern
from medseq.io.dicom_tree import Progress
from medseq.io.manifest import discover_manifest
from medseq.io.nifti import is_nifti
from medseq.io.nifti_layout import discover_nifti, patient_folders

MANIFEST_CSV = "manifest.csv"
"""A folder holding a file of this name at its top is read as that manifest."""


def discover(path: Path, *, series: str | None = None, require_patients: bool = True,
             check_values: bool = True, progress: Progress | None = None) -> Cohort:
    """Read the input under ``path`` into a :class:`Cohort` (headers only).

    Args:
        path: A folder (DICOM tree or NIfTI layout), a manifest CSV, or a DICOMDIR file.
        series: Regular expression on SeriesDescription choosing each study's DICOM series.
        require_patients: Raise when no patient is usable (what every pipeline stage wants);
            ``medseq scan`` passes ``False`` to show why each was skipped.
        check_values: Read float NIfTI images to refuse NaN or infinity now.
        progress: Called with the number of DICOM files read so far.

    Raises:
        LayoutError: ``path`` is missing or empty, or holds no recognisable layout.
        InputDataError: no patient is usable (when ``require_patients``).
        UsageError: ``series`` is not a valid regular expression.
    """
    path = Path(os.path.abspath(Path(path).expanduser()))
    compile_series_pattern(series)  # a bad expression fails before any file is read
    cohort = _discover(path, series=series, check_values=check_values, progress=progress)
    if require_patients:
        require_usable(cohort)
    return cohort


def require_usable(cohort: Cohort) -> Cohort:
    """Return ``cohort`` if it has a usable patient; else raise with why each was skipped.

    Raises:
        InputDataError: no patient can be used.
    """
    if cohort.patients:
        return cohort
    patients = [s for s in cohort.skipped if s.kind is SkipKind.PATIENT]
    reasons = [_named(s, cohort.root) for s in patients or cohort.skipped]
    summary = "; ".join(list(dict.fromkeys(reasons))[:3])
    counted = (f"{len(patients)} patient(s) skipped" if patients
               else f"{len(cohort.skipped)} item(s) skipped")
    raise InputDataError(
        f"no usable patient in this {cohort.layout.value} input"
        + (f" ({counted}: {_clip(summary)})" if summary else "")
        + "; medseq scan lists every reason",
        path=cohort.root,
    )


def _discover(path: Path, *, series: str | None, check_values: bool,
              progress: Progress | None) -> Cohort:
    if not path.exists():
        if path.is_symlink():
            raise LayoutError("broken symbolic link", path=path)
        raise LayoutError("no such file or folder", path=path)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            found = discover_manifest(path, series=series, check_values=check_values)
            return _cohort(Layout.MANIFEST, path, found.patients, found.skipped, found.warnings)
        if is_nifti(path):
            raise LayoutError(
                "a single NIfTI file is not a layout: put it in patient/<timepoint>/image.nii.gz "
                "or list it in a manifest CSV (patient_id,timepoint,date,image,mask)", path=path)
        return _dicom(path, series=series, progress=progress)
    try:
        empty = not any(os.scandir(path))
    except OSError as err:
        raise LayoutError(f"cannot list folder ({err.strerror or err})", path=path) from None
    if empty:
        raise LayoutError("folder is empty: no DICOM files, NIfTI layout or manifest", path=path)
    if (path / MANIFEST_CSV).is_file():  # as `medseq sample-data` writes: the index of the folder
        return _discover(path / MANIFEST_CSV, series=series, check_values=check_values,
                         progress=progress)
    if patient_folders(path) is not None:
        layout = discover_nifti(path, check_values=check_values)
        if series is not None:
            layout.warnings.append("--series chooses among DICOM series; the NIfTI layout has "
                                   "one image per timepoint, so it was ignored")
        return _cohort(Layout.NIFTI, path, layout.patients, layout.skipped, layout.warnings)
    return _dicom(path, series=series, progress=progress)


def _dicom(path: Path, *, series: str | None, progress: Progress | None) -> Cohort:
    found = discover_dicom(path, series=series, progress=progress)
    if found.dicom_files == 0 and found.dicomdirs == 0:
        looked = (f"{found.files_seen} file(s) looked at, none a readable DICOM file"
                  if found.files_seen else "no readable files")
        examples = "; ".join(f"{Path(s.path).name}: {s.reason}" for s in found.skipped[:3])
        raise LayoutError(
            f"no recognisable input: {looked}" + (f" ({_clip(examples)})" if examples else "")
            + "; expected a DICOM tree, a NIfTI layout (patient/<timepoint>/image.nii.gz) or "
            "a manifest CSV", path=path)
    return _cohort(Layout.DICOM, path, found.patients, found.skipped, found.warnings)


def _cohort(layout: Layout, root: Path, patients: list[Patient], skipped: list[Skipped],
            warnings: list[str]) -> Cohort:
    return Cohort(layout=layout, root=root,
                  patients=tuple(sorted(patients, key=lambda p: p.patient_id)),
                  skipped=tuple(skipped), warnings=tuple(dict.fromkeys(warnings)))


def _named(skipped: Skipped, root: Path) -> str:
    """A skip reason with the file or folder it is about, relative to the input."""
    base = root if root.is_dir() else root.parent
    where = Path(skipped.path)
    if where in (root, base):
        return skipped.reason
    if where.is_relative_to(base):
        where = where.relative_to(base)
    return f"{where}: {skipped.reason}"


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
