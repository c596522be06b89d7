"""Build one timepoint's TID 1500 Measurement Report as a Comprehensive 3D SR (highdicom).

Per tracked lesion one measurement group, identified by its TrackingIdentifier (``L1``...) and a
TrackingUID that is the same in every timepoint's report:

- a lesion with voxels of its own: a *volumetric ROI* group (TID 1411) referencing its segment
  in the timepoint's SEG, with long axis and short axis (mm) and volume (ml);
- a vanished lesion: a group without ROI (TID 1501) with 0 mm, 0 mm and 0 ml;
- a lesion merged into another: a group without ROI and without measurements;

each with its tracking status as a qualitative evaluation. One more group without ROI, tracked
as ``RECIST 1.1``, holds the response evaluation method (RECIST 1.1), the follow-up's category
(Current Response: CR, PR, SD, PD or NE) and the sum of the targets' diameters. Every group
carries the time point context: ``tNN``, its order, and the days from the baseline scan. The
source images (and the SEG) are the SR's evidence.

Tracking status and response category have no DICOM codes; they use the private coding scheme
``99MEDSEQ`` declared in the SR's CodingSchemeIdentificationSequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medseq.dicom_objects.records import LesionReport, TimepointReport
from medseq.dicom_objects.uids import derived_uid

SCHEME = "99MEDSEQ"
STATUS_MEANINGS = {
    "tracked": "Tracked from the previous timepoint",
    "new": "New lesion",
    "split": "Split from a tracked lesion",
    "merged": "Merged into another tracked lesion",
    "vanished": "Vanished",
    "not_found": "Not found by the lesion tracker",
}
RESPONSE_MEANINGS = {
    "CR": "Complete response (RECIST 1.1)",
    "PR": "Partial response (RECIST 1.1)",
    "SD": "Stable disease (RECIST 1.1)",
    "PD": "Progressive disease (RECIST 1.1)",
    "NE": "Not evaluable (RECIST 1.1)",
}
RESPONSE_TRACKING_ID = "RECIST 1.1"


def build_sr(sources: Sequence[Any], report: TimepointReport, *, seg: Any | None,
             series_uid: str, sop_uid: str, series_number: int = 9702) -> Any:
    """A ``highdicom.sr.Comprehensive3DSR`` holding ``report`` (see the module docs).

    Args:
        sources: the source series' datasets (headers are enough); they identify patient and
            study and are the evidence.
        report: what to report.
        seg: the timepoint's SEG (its segments are referenced), or None without one.
        series_uid: SeriesInstanceUID of the new SR series.
        sop_uid: SOPInstanceUID of the SR.
        series_number: SeriesNumber of the SR series.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    time_point = hd.sr.TimePointContext(
        time_point=f"t{report.index:02d}",
        time_point_type=codes.UMLS.Baseline if report.index == 0 else None,
        time_point_order=report.index + 1,
        temporal_offset_from_event=hd.sr.LongitudinalTemporalOffsetFromEvent(
            value=float(report.days), unit=codes.UCUM.Day, event_type=codes.DCM.Baseline))
    series = str(sources[0].SeriesInstanceUID)
    groups = [_lesion_group(hd, codes, lesion, time_point, seg, series)
              for lesion in report.lesions]
    groups.append(_response_group(hd, codes, report, time_point))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("device", "medseq"), name="medseq", manufacturer_name="medseq"))
    procedure = (codes.LN.MRIUnspecifiedBodyRegion if report.modality == "MR"
                 else codes.LN.CTUnspecifiedBodyRegion)
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=procedure, imaging_measurements=groups,
        title=codes.cid7021.ImagingMeasurementReport)
    evidence = [*sources, seg] if seg is not None else list(sources)
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=content, series_instance_uid=series_uid,
        series_number=series_number, sop_instance_uid=sop_uid, instance_number=1,
        manufacturer="medseq", is_complete=True, is_final=False, is_verified=False,
        series_description="medseq lesion measurements")
    sr.CodingSchemeIdentificationSequence = [_scheme_item()]
    return sr


def _lesion_group(hd: Any, codes: Any, lesion: LesionReport, time_point: Any, seg: Any | None,
                  series: str) -> Any:
    tracking = hd.sr.TrackingIdentifier(uid=lesion.tracking_uid, identifier=lesion.track_id)
    status = lesion.status if lesion.status in STATUS_MEANINGS else "tracked"
    evaluations = [hd.sr.QualitativeEvaluation(
        name=hd.sr.CodedConcept("status", SCHEME, "Lesion tracking status"),
        value=hd.sr.CodedConcept(status, SCHEME, STATUS_MEANINGS[status]))]
    measurements = _measurements(hd, codes, lesion)
    if lesion.segment is not None and seg is not None:
        segment = hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
            segment_number=int(lesion.segment),
            source_series=hd.sr.SourceSeriesForSegmentation(series))
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_segment=segment,
            time_point_context=time_point, finding_type=codes.SCT.Lesion,
            measurements=measurements, qualitative_evaluations=evaluations)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, time_point_context=time_point,
        finding_type=codes.SCT.Lesion, measurements=measurements or None,
        qualitative_evaluations=evaluations)


def _measurements(hd: Any, codes: Any, lesion: LesionReport) -> list[Any]:
    milliliter = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
    values = ((codes.SCT.LongAxis, lesion.longest_diameter_mm, codes.UCUM.Millimeter),
              (codes.SCT.ShortAxis, lesion.short_axis_mm, codes.UCUM.Millimeter),
              (codes.SCT.Volume, lesion.volume_ml, milliliter))
    return [hd.sr.Measurement(name=name, value=round(float(value), 4), unit=unit)
            for name, value, unit in values if value is not None]


def _response_group(hd: Any, codes: Any, report: TimepointReport, time_point: Any) -> Any:
    tracking = hd.sr.TrackingIdentifier(uid=derived_uid("response", report.patient_key),
                                        identifier=RESPONSE_TRACKING_ID)
    evaluations = [hd.sr.QualitativeEvaluation(name=codes.DCM.ResponseEvaluationMethod,
                                               value=codes.DCM.RECIST1Point1)]
    if report.response in RESPONSE_MEANINGS:
        evaluations.append(hd.sr.QualitativeEvaluation(
            name=codes.DCM.CurrentResponse,
            value=hd.sr.CodedConcept(str(report.response), SCHEME,
                                     RESPONSE_MEANINGS[str(report.response)])))
    measurements = None
    if report.sod_mm is not None:
        measurements = [hd.sr.Measurement(
            name=hd.sr.CodedConcept("sod", SCHEME, "Sum of target lesion diameters"),
            value=round(float(report.sod_mm), 4), unit=codes.UCUM.Millimeter)]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, time_point_context=time_point,
        measurements=measurements, qualitative_evaluations=evaluations)


def _scheme_item() -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "medseq lesion tracking and response codes"
    item.CodingSchemeResponsibleOrganization = "medseq developers"
    return item
