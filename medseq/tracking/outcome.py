"""The label rule: a patient's training or evaluation label from its tracked response.

One rule for ``train`` (labels without ``--labels``) and ``evaluate --data`` (an external cohort
without manifest labels): the best overall RECIST 1.1 response over ALL of a patient's scans.
Binary: responder (CR or PR) = 1, else 0. RECIST: the category's index in CR, PR, SD, PD.
A patient without a lesion mask, not tracked, or whose response is not evaluable has no label;
the reason is given instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from medseq.contracts.tracks import PatientTracking, Response, TracksDocument

RECIST_ORDER: tuple[Response, ...] = (Response.CR, Response.PR, Response.SD, Response.PD)
"""Label index of each category for the ``recist`` task (as ``models.config.RECIST_CLASSES``)."""
RESPONDERS = (Response.CR, Response.PR)


def response_label(patient: PatientTracking, *, task: str = "binary") -> int | None:
    """The patient's label, or None when it has none (:func:`no_label_reason` says why)."""
    if no_label_reason(patient):
        return None
    response = patient.best_overall_response
    if task == "recist":
        return RECIST_ORDER.index(response)
    return int(response in RESPONDERS)


def no_label_reason(patient: PatientTracking) -> str:
    """Why the patient has no label from tracking; empty when it has one."""
    if not patient.has_mask:
        return "no lesion mask"
    if not patient.tracked:
        return "not tracked"
    if patient.best_overall_response not in RECIST_ORDER:
        return "response not evaluable"
    return ""


def tracking_labels(document: TracksDocument, patient_ids: Iterable[str], *,
                    task: str = "binary") -> tuple[dict[str, int], dict[str, str]]:
    """Labels of ``patient_ids`` from ``document``, and the reason for each one without."""
    by_id = {patient.patient_id: patient for patient in document.patients}
    labels: dict[str, int] = {}
    excluded: dict[str, str] = {}
    for pid in patient_ids:
        patient = by_id.get(pid)
        label = response_label(patient, task=task) if patient is not None else None
        if label is None:
            excluded[pid] = no_label_reason(patient) if patient is not None else "not tracked"
        else:
            labels[pid] = label
    return labels, excluded
