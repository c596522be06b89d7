"""Whose names the exported objects carry: the source study's (``--keep-ids``) or pseudonyms.

highdicom copies the patient and study modules of the first source image into every SR and SEG
it builds, so identification is settled on the sources: :func:`pseudonymised` returns header
copies with the patient module, the study's identifying attributes, people, institutions,
dates and private elements removed, and a pseudonymous patient (medseq's cache id) and a new
study instance UID (keyed by the cache's pseudonym key) put in their place. UIDs of the source
series, instances and frame of reference stay: without them no viewer can show the results on
the images. Days from baseline are in the SR's time point context.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from medseq.dicom_objects.uids import derived_uid

PSEUDONYMISED = "pseudonymised"
DEIDENTIFICATION_METHOD = "medseq pseudonym; names, dates, study ids removed; UIDs kept"
KEPT = "kept"

_REMOVED_GROUPS = (0x0010, 0x0032, 0x0038, 0x4008)
"""Patient, study (retired), visit and results groups: removed whole."""
_REMOVED_KEYWORDS = (
    "AccessionNumber", "IssuerOfAccessionNumberSequence", "StudyID", "StudyDescription",
    "StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate",
    "AcquisitionTime", "AcquisitionDateTime", "ContentDate", "ContentTime",
    "InstanceCreationDate", "InstanceCreationTime", "ReferringPhysicianName",
    "ReferringPhysicianIdentificationSequence", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PerformingPhysicianName", "OperatorsName", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "StationName", "DeviceSerialNumber", "RequestingPhysician",
    "RequestAttributesSequence", "ProcedureCodeSequence", "AdmittingDiagnosesDescription",
    "ReferencedPatientSequence", "ReferencedStudySequence", "RequestedProcedureDescription",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    "PerformedProcedureStepID", "PerformedProcedureStepDescription", "OtherPatientIDsSequence",
    "ClinicalTrialSponsorName", "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID",
)


def pseudonymised(sources: Sequence[Any], *, alias: str, key: str) -> list[Any]:
    """Header copies of ``sources`` identified only by ``alias`` (see the module docs).

    Args:
        sources: the source image datasets (read without pixels).
        alias: the patient's pseudonymous id.
        key: secret material (the cache's pseudonym key, hex) that keys the new study UID, so
            it cannot be recomputed from the source study UID alone.
    """
    out = []
    for ds in sources:
        clean = copy.deepcopy(ds)
        clean.remove_private_tags()
        for tag in [elem.tag for elem in clean if elem.tag.group in _REMOVED_GROUPS]:
            del clean[tag]
        for keyword in _REMOVED_KEYWORDS:
            if keyword in clean:
                delattr(clean, keyword)
        clean.PatientName = f"{alias}^"  # one name component, said explicitly
        clean.PatientID = alias
        clean.PatientBirthDate = ""
        clean.PatientSex = ""
        clean.PatientIdentityRemoved = "YES"
        clean.DeidentificationMethod = DEIDENTIFICATION_METHOD
        clean.StudyInstanceUID = derived_uid("study", key, str(ds.StudyInstanceUID))
        clean.StudyID = ""
        clean.AccessionNumber = ""
        clean.StudyDate = ""
        clean.StudyTime = ""
        clean.ReferringPhysicianName = ""
        out.append(clean)
    return out
