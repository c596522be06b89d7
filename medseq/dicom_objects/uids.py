"""Deterministic UIDs: the same inputs give the same UID in every run (idempotent exports).

A UID is ``2.25.`` followed by the integer of a name-based (SHA-1, version 5) UUID of the parts,
the ISO/IEC 9834-8 form DICOM allows without an organisation root. A lesion's TrackingUID is
derived from the patient's tracking result and its track id only, so it is the same in every
timepoint's SR and SEG.
"""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "medseq:dicom-objects")


def derived_uid(*parts: str) -> str:
    """A valid DICOM UID (``2.25.<number>``, at most 44 characters) determined by ``parts``."""
    name = "\x1f".join(parts)  # a separator no part holds: ("ab", "c") != ("a", "bc")
    return f"2.25.{uuid.uuid5(_NAMESPACE, name).int}"


def tracking_uid(run_key: str, track_id: str) -> str:
    """The TrackingUID of lesion ``track_id`` in one patient's tracking result ``run_key``."""
    return derived_uid("tracking", run_key, track_id)
