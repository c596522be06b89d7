"""The label mask a SEG or RTSTRUCT gives: one lesion label per selected segment or ROI.

Selection (``--roi REGEX``, case-insensitive search on ROIName or SegmentLabel; default all)
keeps the file's order, and the selected ROIs or segments are numbered 1..n in that order (for a
SEG without ``--roi``, label n is segment n). Where two selected ROIs or segments claim one voxel
the later one (higher label) wins, and a warning names both and the voxel count: lesions are
disjoint in medseq, and dropping the whole timepoint over an edge drawn twice helps no one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseq.dicom_objects.errors import AnnotationError
from medseq.errors import UsageError


@dataclass(frozen=True)
class MaskLabel:
    """One lesion label of a :class:`LabelMask` and where it came from."""

    label: int
    name: str
    """ROIName or SegmentLabel."""
    number: int
    """ROINumber or SegmentNumber in the file."""
    tracking_uid: str | None = None
    tracking_id: str | None = None


@dataclass(frozen=True)
class LabelMask:
    """A lesion label map on an image grid, read from a DICOM object."""

    array: np.ndarray
    """Integer labels (0 background, 1..n lesions) on the image's ``(i, j, k)`` grid."""
    labels: tuple[MaskLabel, ...]
    source: Path
    kind: str
    """``SEG`` or ``RTSTRUCT``."""
    warnings: tuple[str, ...] = field(default_factory=tuple)


def compile_roi_pattern(roi: str | None) -> re.Pattern[str] | None:
    """Compile ``--roi``; a bad expression is a usage error naming it."""
    if roi is None:
        return None
    try:
        return re.compile(roi, re.IGNORECASE)
    except re.error as err:
        raise UsageError(f"--roi {roi!r} is not a valid regular expression ({err})") from None


def select(names: Sequence[tuple[int, str]], pattern: re.Pattern[str] | None, *,
           path: Path, what: str) -> list[tuple[int, str]]:
    """The ``(number, name)`` pairs ``pattern`` selects, in file order; none is an error."""
    chosen = [(n, name) for n, name in names if pattern is None or pattern.search(name)]
    if not chosen:
        listed = ", ".join(repr(name) for _, name in names[:8]) or "none"
        if pattern is None:
            raise AnnotationError(f"holds no {what}", path=path)
        raise AnnotationError(f"no {what} name matches --roi {pattern.pattern!r} "
                              f"(names: {listed})", path=path)
    return chosen


def combine(layers: Sequence[tuple[MaskLabel, np.ndarray]], shape: tuple[int, int, int], *,
            path: Path, what: str) -> tuple[np.ndarray, list[str]]:
    """Paint boolean layers into one label array in order; later layers win overlaps."""
    top = max((label.label for label, _ in layers), default=0)
    array = np.zeros(shape, dtype=np.uint8 if top <= 255 else np.uint16)
    warnings: list[str] = []
    for label, layer in layers:
        taken = layer & (array != 0)
        if taken.any():
            for other in np.unique(array[taken]):
                count = int(np.count_nonzero(array[taken] == other))
                first = next(lab for lab, _ in layers if lab.label == int(other))
                warnings.append(
                    f"{path}: {what}s {first.number} ({first.name}) and {label.number} "
                    f"({label.name}) overlap in {count} voxel(s); they went to the later one, "
                    f"{label.number} ({label.name})")
        array[layer] = label.label
    return array, warnings
