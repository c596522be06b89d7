"""Training labels: from a CSV, from the cache manifest, or from RECIST tracking.

With an early label kind (:mod:`medseq.training.targets`) the label is about the scans after
the first k the model sees, from the cache's stored tracking; patients whose observed scans
already decide it are left out (``determined``). With kind ``overall``: responder = best overall
response CR or PR over ALL of a patient's scans (the rule of :mod:`medseq.tracking.outcome`), or
the manifest's label. A labels CSV wins over both (kind ``given``). Patients without crops,
masks or a label are excluded with a plain count of why.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medseq.contracts.cache import CacheManifest, PatientRecord
from medseq.contracts.run import RECIST_CLASSES
from medseq.csv_cells import unescape_cell
from medseq.errors import CacheError, InputDataError
from medseq.training.targets import EARLY_KINDS, Exclusion, LabelSpec, early_target

PARTIAL_MASKS = "a timepoint without a lesion mask"
"""Why a patient annotated only at some timepoints (crops cut from its baseline mask) is left
out of training and evaluation: its other crops have an empty mask channel."""

_RECIST_INDEX = {name: i for i, name in enumerate(RECIST_CLASSES)}
_TRUE = {"1", "true", "yes", "responder", "cr", "pr"}
_FALSE = {"0", "false", "no", "non-responder", "nonresponder", "sd", "pd"}


@dataclass(frozen=True)
class LabelSet:
    """The patients training can use, their labels, and who was left out and why."""

    labels: dict[str, int]
    """Pseudonymous patient id -> label index."""
    source: str
    """``csv:<path>``, ``manifest`` or ``tracking``."""
    excluded: dict[str, str] = field(default_factory=dict)
    """Patient id -> reason (the ``determined`` ones too)."""
    kind: str = "overall"
    """What the labels mean (:data:`medseq.contracts.run.LABEL_KINDS`)."""
    observe: int | None = None
    """The scans the early kinds' labels come after."""
    times: dict[str, float] = field(default_factory=dict)
    """``progression``: days from the last observed scan to progression or censoring."""
    determined: dict[str, str] = field(default_factory=dict)
    """Patients whose observed scans already decide the label -> why."""

    def exclusion_summary(self) -> str:
        """``"excluded 3: 2 no lesion crops, 1 no label"`` or an empty string; the determined
        ones counted together (``"31 response already seen in the first 2 scans"``)."""
        if not self.excluded:
            return ""
        counts = Counter(self._summary_reason(pid, reason)
                         for pid, reason in self.excluded.items())
        parts = ", ".join(f"{n} {reason}" for reason, n in counts.most_common())
        return f"excluded {len(self.excluded)}: {parts}"

    def _summary_reason(self, pid: str, reason: str) -> str:
        if pid not in self.determined:
            return reason
        return _BY_SCAN.sub(f"in the first {self.observe} scans", reason)


_BY_SCAN = re.compile(r"by scan \d+")


def resolve_labels(
    cache_dir: Path, manifest: CacheManifest, *, task: str, labels_csv: Path | None = None,
    spec: LabelSpec | None = None,
) -> LabelSet:
    """Labels for every usable patient of the cache.

    Order of sources: ``labels_csv`` if given (kind ``given``); else, for an early kind of
    ``spec``, :func:`~medseq.training.targets.early_target` on the cache's stored tracking;
    else (kind ``overall``, also when ``spec`` is None) the manifest's ``label`` when any
    patient has one, else the best overall RECIST response from tracking.

    Raises:
        ValueError: an early kind without ``spec.observe`` (see ``early_target``).
    """
    early = spec is not None and spec.kind in EARLY_KINDS and labels_csv is None
    if early and spec is not None and spec.observe is None:
        raise ValueError(f"label kind {spec.kind} needs observe (the scans the model sees)")
    excluded: dict[str, str] = {}
    usable: list[PatientRecord] = []
    for pid, record in sorted(manifest.patients.items()):
        if record.status != "ok":
            excluded[pid] = "failed preprocessing"
        elif not record.crops or not record.targets:
            excluded[pid] = "no lesion crops"
        elif not record.has_mask:
            excluded[pid] = PARTIAL_MASKS
        else:
            usable.append(record)
    kind = "overall"
    times: dict[str, float] = {}
    determined: dict[str, str] = {}
    if labels_csv is not None:
        found = _labels_from_csv(labels_csv, manifest, cache_dir, task=task)
        source, kind = f"csv:{labels_csv}", "given"
    elif early and spec is not None:
        found = _early_labels(cache_dir, usable, spec, task=task, excluded=excluded,
                              times=times, determined=determined)
        source, kind = "tracking", spec.kind
    elif task == "binary" and any(r.label is not None for r in usable):
        found = {r.patient_id: int(r.label) for r in usable if r.label is not None}
        source = "manifest"
    else:
        found = _labels_from_tracking(cache_dir, usable, task=task, excluded=excluded)
        source = "tracking"
    labels: dict[str, int] = {}
    for record in usable:
        pid = record.patient_id
        if pid in excluded:
            continue
        if pid in found:
            labels[pid] = found[pid]
        else:
            excluded[pid] = "no label"
    return LabelSet(labels=labels, source=source, excluded=dict(sorted(excluded.items())),
                    kind=kind, observe=spec.observe if spec is not None else None,
                    times=times, determined=dict(sorted(determined.items())))


def _labels_from_csv(
    path: Path, manifest: CacheManifest, cache_dir: Path, *, task: str
) -> dict[str, int]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as err:
        raise InputDataError(f"cannot read labels ({err.strerror})", path=path) from None
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or not {"patient_id", "label"} <= set(reader.fieldnames):
        raise InputDataError("labels CSV needs the columns patient_id,label", path=path)
    known = set(manifest.patients)
    pseudonym = _pseudonymiser(cache_dir)
    labels: dict[str, int] = {}
    for line, row in enumerate(reader, start=2):
        raw_id = unescape_cell((row.get("patient_id") or "").strip())
        if not raw_id:
            continue
        pid = raw_id if raw_id in known else pseudonym(raw_id)
        if pid is None or pid not in known:
            continue  # a patient of another cohort; the count of unlabelled ones says enough
        labels[pid] = _parse_label(row.get("label") or "", task=task, path=path, line=line)
    return labels


def _parse_label(value: str, *, task: str, path: Path, line: int) -> int:
    text = value.strip().lower()
    if task == "recist":
        if text.upper() in _RECIST_INDEX:
            return _RECIST_INDEX[text.upper()]
        if text.isdigit() and int(text) < len(RECIST_CLASSES):
            return int(text)
        raise InputDataError(f"line {line}: label {value!r} is not one of CR, PR, SD, PD",
                             path=path)
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise InputDataError(f"line {line}: label {value!r} is not 0/1 (or CR/PR/SD/PD)", path=path)


def _pseudonymiser(cache_dir: Path) -> Callable[[str], str | None]:
    """Map an original patient id to the cache's pseudonym (None without the cache's key)."""
    from medseq.preprocess.pseudonym import pseudonym, read_salt

    try:
        key = read_salt(cache_dir)
    except CacheError:
        key = None
    if key is None:
        return lambda raw_id: None
    return lambda raw_id: pseudonym(raw_id, key)


def _labels_from_tracking(
    cache_dir: Path, usable: list[PatientRecord], *, task: str, excluded: dict[str, str]
) -> dict[str, int]:
    """The label rule (:mod:`medseq.tracking.outcome`) on the cache's stored tracking."""
    from medseq.tracking.outcome import tracking_labels
    from medseq.tracking.stored import tracks_for_cache

    labels, without = tracking_labels(tracks_for_cache(Path(cache_dir)),
                                      [r.patient_id for r in usable], task=task)
    excluded.update(without)
    return labels


def _early_labels(
    cache_dir: Path, usable: list[PatientRecord], spec: LabelSpec, *, task: str,
    excluded: dict[str, str], times: dict[str, float], determined: dict[str, str],
) -> dict[str, int]:
    """:func:`~medseq.training.targets.early_target` on the cache's stored tracking."""
    from medseq.tracking.stored import tracks_for_cache

    by_id = {patient.patient_id: patient for patient in tracks_for_cache(Path(cache_dir)).patients}
    labels: dict[str, int] = {}
    for record in usable:
        pid = record.patient_id
        patient = by_id.get(pid)
        if patient is None:
            excluded[pid] = "not tracked"
            continue
        target = early_target(patient, spec, task=task)
        if isinstance(target, Exclusion):
            excluded[pid] = target.reason
            if target.determined:
                determined[pid] = target.reason
            continue
        labels[pid] = target.label
        if target.time_days is not None:
            times[pid] = target.time_days
    return labels
