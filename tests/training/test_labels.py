"""Where labels come from, and who is left out and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseq.contracts.cache import read_manifest
from medseq.contracts.tracks import PatientTracking, Response
from medseq.errors import InputDataError
from medseq.tracking.outputs import tracks_document
from medseq.tracking.stored import input_hash, store_tracks
from medseq.training.labels import resolve_labels
from medseq.training.targets import LabelSpec
from tests.training.fake_cache import write_fake_cache
from tests.training.test_targets import CR, NEW, PD, PR, SD, course


def test_manifest_labels_and_exclusions(fake_cache: Path) -> None:
    found = resolve_labels(fake_cache, read_manifest(fake_cache), task="binary")
    assert found.source == "manifest"
    assert len(found.labels) == 12
    assert sorted(set(found.labels.values())) == [0, 1]
    assert found.excluded == {"Q000": "no lesion crops"}
    assert found.exclusion_summary() == "excluded 1: 1 no lesion crops"


def test_a_patient_annotated_only_at_baseline_is_left_out(fake_cache: Path,
                                                          tmp_path: Path) -> None:
    """Its crops exist (cut from the baseline mask) but its follow-ups' mask channels are
    empty: never a training example."""
    import shutil

    from medseq.contracts.cache import write_manifest
    from medseq.training.labels import PARTIAL_MASKS

    fake_cache = Path(shutil.copytree(fake_cache, tmp_path / "cache"))
    manifest = read_manifest(fake_cache)
    record = manifest.patients["P001"]
    assert record.crops
    assert record.targets
    partial = record.model_copy(update={"has_mask": False})
    write_manifest(fake_cache, manifest.model_copy(
        update={"patients": {**manifest.patients, "P001": partial}}))
    found = resolve_labels(fake_cache, read_manifest(fake_cache), task="binary")
    assert found.excluded == {"Q000": "no lesion crops", "P001": PARTIAL_MASKS}
    assert "P001" not in found.labels


def test_csv_labels_override_and_unlisted_patients_are_excluded(
    fake_cache: Path, tmp_path: Path
) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("patient_id,label\nP000,1\nP001,no\nP002,PR\nOTHER,1\n")
    found = resolve_labels(fake_cache, read_manifest(fake_cache), task="binary", labels_csv=csv)
    assert found.labels == {"P000": 1, "P001": 0, "P002": 1}
    assert found.source == f"csv:{csv}"
    assert found.exclusion_summary() == "excluded 10: 9 no label, 1 no lesion crops"


def test_csv_with_original_ids_is_matched_through_the_cache_key(tmp_path: Path) -> None:
    from medseq.preprocess.pseudonym import pseudonym

    cache = write_fake_cache(tmp_path / "cache", n_patients=2, size=8)
    key = bytes(range(32))
    (cache / "salt.key").write_text(key.hex() + "\n")
    manifest = read_manifest(cache)
    record = manifest.patients.pop("P000")
    record.patient_id = pseudonym("MRN-123", key)
    manifest.patients[record.patient_id] = record
    csv = tmp_path / "labels.csv"
    csv.write_text("patient_id,label\nMRN-123,1\nP001,0\n")
    found = resolve_labels(cache, manifest, task="binary", labels_csv=csv)
    assert found.labels == {record.patient_id: 1, "P001": 0}


def test_recist_labels_from_csv(fake_cache: Path, tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("patient_id,label\nP000,CR\nP001,pd\n")
    found = resolve_labels(fake_cache, read_manifest(fake_cache), task="recist", labels_csv=csv)
    assert found.labels == {"P000": 0, "P001": 3}


@pytest.mark.parametrize(("text", "match"), [
    ("patient_id,label\nP000,maybe\n", "line 2: label 'maybe'"),
    ("id,outcome\nP000,1\n", "columns patient_id,label"),
])
def test_bad_csv_is_an_input_error(fake_cache: Path, tmp_path: Path, text: str, match: str) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text(text)
    with pytest.raises(InputDataError, match=match):
        resolve_labels(fake_cache, read_manifest(fake_cache), task="binary", labels_csv=csv)


def test_default_labels_come_from_tracking_over_all_scans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = write_fake_cache(tmp_path / "cache", n_patients=5, size=8, with_labels=False)
    responses = [Response.CR, Response.PR, Response.SD, Response.PD, Response.NE]
    # The cache's stored tracking (fresh: its input hash is the cache's) is read, not recomputed.
    document = tracks_document(
        [PatientTracking(patient_id=f"P{i:03d}", has_mask=True, best_overall_response=r)
         for i, r in enumerate(responses)], input_hash=input_hash(cache))
    assert store_tracks(cache, document)
    monkeypatch.setattr("medseq.tracking.pipeline.track_cache", _no_tracking)
    found = resolve_labels(cache, read_manifest(cache), task="binary")
    assert found.source == "tracking"
    assert found.labels == {"P000": 1, "P001": 1, "P002": 0, "P003": 0}
    assert found.excluded == {"P004": "response not evaluable"}
    recist = resolve_labels(cache, read_manifest(cache), task="recist")
    assert recist.labels == {"P000": 0, "P001": 1, "P002": 2, "P003": 3}


def _no_tracking(*args: object, **kwargs: object) -> None:
    raise AssertionError("tracking recomputed although the cache stores it")


def test_early_labels_come_from_the_scans_after_the_observed_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = write_fake_cache(tmp_path / "cache", n_patients=5, size=8)  # manifest labels too
    courses = [
        ((0, None), (60, SD), (120, PR)),             # responds after the first 2 scans
        ((0, None), (60, PR), (120, CR)),             # already responded: determined
        ((0, None), (60, NEW), (120, SD)),            # already progressed: determined
        ((0, None), (60, SD), (120, SD), (200, PD)),  # progresses later
        ((0, None), (60, SD)),                        # nothing after the observed scans
    ]
    document = tracks_document(
        [course(*scans, pid=f"P{i:03d}") for i, scans in enumerate(courses)],
        input_hash=input_hash(cache))
    assert store_tracks(cache, document)
    monkeypatch.setattr("medseq.tracking.pipeline.track_cache", _no_tracking)
    manifest = read_manifest(cache)
    found = resolve_labels(cache, manifest, task="binary", spec=LabelSpec("best_after", 2))
    assert (found.kind, found.source) == ("best_after", "tracking")
    assert found.labels == {"P000": 1, "P003": 0}
    assert found.determined == {"P001": "response already seen by scan 1",
                                "P002": "progression already seen by scan 1"}
    assert found.excluded == {**found.determined, "P004": "no scan after the first 2"}
    assert found.exclusion_summary() == (
        "excluded 3: 1 response already seen in the first 2 scans, "
        "1 progression already seen in the first 2 scans, 1 no scan after the first 2")
    progression = resolve_labels(cache, manifest, task="binary",
                                 spec=LabelSpec("progression", 2))
    assert progression.labels == {"P000": 0, "P001": 0, "P003": 1}
    assert progression.times == {"P000": 60.0, "P001": 60.0, "P003": 140.0}
    assert progression.determined == {"P002": "progression already seen by scan 1"}
    # Kind overall keeps the manifest's labels; a CSV's labels are the user's ("given").
    overall = resolve_labels(cache, manifest, task="binary", spec=LabelSpec("overall", 2))
    assert (overall.kind, overall.source, overall.determined) == ("overall", "manifest", {})
    csv = tmp_path / "labels.csv"
    csv.write_text("patient_id,label\nP001,1\n")
    given = resolve_labels(cache, manifest, task="binary", labels_csv=csv,
                           spec=LabelSpec("best_after", 2))
    assert (given.kind, given.labels) == ("given", {"P001": 1})
    with pytest.raises(ValueError, match="needs observe"):
        resolve_labels(cache, manifest, task="binary", spec=LabelSpec("landmark", None))
