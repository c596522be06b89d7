"""Compare tracking results with a synthetic cohort's ``ground_truth.json``.

Each tracked lesion is identified with the ground-truth lesion whose centroid (on the same scan)
is nearest, within ``tolerance_mm``. A *correspondence* is the claim "this lesion at timepoint t
is the same lesion as the one that opened its track"; the ground truth holds one for every lesion
seen before t. Precision and recall are over those claims; new lesions are scored apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseq.contracts.tracks import PatientTracking
from medseq.csv_cells import csv_text


@dataclass
class TruthComparison:
    """How tracking results agree with the ground truth."""

    predicted_links: int = 0
    true_links: int = 0
    correct_links: int = 0
    new_predicted: int = 0
    new_true: int = 0
    new_correct: int = 0
    unidentified: int = 0
    """Tracked lesions with no ground-truth lesion at their centroid."""
    diameter_errors_voxels: list[float] = field(default_factory=list)
    short_axis_errors_voxels: list[float] = field(default_factory=list)
    volume_errors_pct: list[float] = field(default_factory=list)
    response_agree: int = 0
    response_total: int = 0
    bor_agree: int = 0
    bor_total: int = 0
    disagreements: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.correct_links / self.predicted_links if self.predicted_links else 1.0

    @property
    def recall(self) -> float:
        return self.correct_links / self.true_links if self.true_links else 1.0

    def as_dict(self) -> dict[str, Any]:
        def worst(values: list[float]) -> float:
            return float(max((abs(v) for v in values), default=0.0))

        return {
            "match_precision": self.precision, "match_recall": self.recall,
            "links": {"predicted": self.predicted_links, "true": self.true_links,
                      "correct": self.correct_links},
            "new_lesions": {"predicted": self.new_predicted, "true": self.new_true,
                            "correct": self.new_correct},
            "unidentified_lesions": self.unidentified,
            "max_diameter_error_voxels": worst(self.diameter_errors_voxels),
            "max_short_axis_error_voxels": worst(self.short_axis_errors_voxels),
            "max_volume_error_pct": worst(self.volume_errors_pct),
            "response_agreement": f"{self.response_agree}/{self.response_total}",
            "best_overall_response_agreement": f"{self.bor_agree}/{self.bor_total}",
            "disagreements": self.disagreements[:20],
        }


def compare_with_truth(results: Sequence[PatientTracking], truth: Mapping[str, Any], *,
                       ids: Mapping[str, str] | None = None,
                       tolerance_mm: float = 2.0) -> TruthComparison:
    """Score ``results`` against a parsed ``ground_truth.json``.

    Args:
        results: what :func:`medseq.tracking.pipeline.track_cache` returned.
        truth: the parsed ground truth.
        ids: cache id -> ground-truth patient id (pseudonyms); identity by default.
        tolerance_mm: how far a tracked centroid may sit from the true one.
    """
    ids = ids or {}
    patients = {p["patient_id"]: p for p in truth["patients"]}
    out = TruthComparison()
    for result in results:
        gt = patients.get(ids.get(result.patient_id, result.patient_id))
        if gt is None or not result.tracked:
            continue
        _compare_patient(result, gt, out, tolerance_mm)
    return out


def write_lesion_info(truth: Mapping[str, Any], path: Path, *,
                      ids: Mapping[str, str] | None = None) -> Path:
    """Write a ``--lesion-info`` CSV giving each baseline lesion's organ (by its centroid).

    Args:
        truth: the parsed ground truth.
        path: where to write the CSV.
        ids: ground-truth patient id -> cache id; identity by default.
    """
    ids = ids or {}
    rows: list[list[Any]] = [["patient_id", "timepoint", "x", "y", "z", "organ", "nodal"]]
    for patient in truth["patients"]:
        pid = ids.get(patient["patient_id"], patient["patient_id"])
        for lesion in patient["timepoints"][0]["lesions"]:
            x, y, z = lesion["centroid_mm"]
            rows.append([pid, 0, x, y, z, lesion["organ"], "no"])
    Path(path).write_text(csv_text(rows), encoding="utf-8")
    return Path(path)


def _compare_patient(result: PatientTracking, gt: Mapping[str, Any], out: TruthComparison,
                     tolerance_mm: float) -> None:
    pid = result.patient_id
    seen: set[str] = set()
    first_gt: dict[str, str | None] = {}
    by_tp: dict[int, list[Any]] = {}
    for row in result.lesions:
        by_tp.setdefault(row.timepoint, []).append(row)
    for t, tp in enumerate(gt["timepoints"]):
        truth_lesions = tp["lesions"]
        centroids = np.array([les["centroid_mm"] for les in truth_lesions]).reshape(-1, 3)
        in_plane = float(np.mean(tp["spacing"][:2]))
        present = {les["lesion_id"] for les in truth_lesions}
        for les in truth_lesions:
            if les["lesion_id"] in seen:
                out.true_links += 1
            elif t > 0:
                out.new_true += 1
        for row in by_tp.get(t, []):
            if row.centroid_mm is None:
                continue
            gt_id = None
            if len(centroids):
                distance = np.linalg.norm(centroids - np.asarray(row.centroid_mm), axis=1)
                nearest = int(np.argmin(distance))
                if distance[nearest] <= tolerance_mm:
                    gt_id = truth_lesions[nearest]["lesion_id"]
                    les = truth_lesions[nearest]
                    out.diameter_errors_voxels.append(
                        ((row.longest_diameter_mm or 0.0) - les["longest_diameter_mm"]) / in_plane)
                    out.short_axis_errors_voxels.append(
                        ((row.short_axis_mm or 0.0) - les["short_axis_mm"]) / in_plane)
                    out.volume_errors_pct.append(
                        100.0 * ((row.volume_ml or 0.0) - les["volume_ml"]) / les["volume_ml"])
            if gt_id is None:
                out.unidentified += 1
            first_gt.setdefault(row.track_id, gt_id)
            if t == 0:
                continue
            if row.status == "new":
                out.new_predicted += 1
                if gt_id is not None and gt_id not in seen:
                    out.new_correct += 1
                else:
                    out.disagreements.append(f"{pid} t{t}: {row.track_id} called new")
                continue
            out.predicted_links += 1
            if gt_id is not None and first_gt[row.track_id] == gt_id and gt_id in seen:
                out.correct_links += 1
            else:
                out.disagreements.append(
                    f"{pid} t{t}: {row.track_id} ({first_gt[row.track_id]}) linked to {gt_id}")
        seen |= present
    responses = [r for r in result.responses if r.timepoint > 0]
    for resp, tp in zip(responses, gt["timepoints"][1:], strict=False):
        out.response_total += 1
        mine = resp.response.value if resp.response else None
        if mine == tp["recist"]["response"]:
            out.response_agree += 1
        else:
            out.disagreements.append(
                f"{pid} t{resp.timepoint}: response {mine} vs {tp['recist']['response']}")
    out.bor_total += 1
    if result.best_overall_response.value == gt["best_overall_response"]:
        out.bor_agree += 1
    else:
        out.disagreements.append(f"{pid}: best {result.best_overall_response.value} vs "
                                 f"{gt['best_overall_response']}")
