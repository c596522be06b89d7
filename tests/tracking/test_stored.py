"""The tracking contract: one writer and one reader of tracks.json and the CSV rows, the
cache's stored tracking (read when fresh, recomputed when stale), and the one label rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseq.cli import app
from medseq.contracts.cache import read_manifest, write_manifest
from medseq.contracts.tracks import (
    TRACKS_NAME,
    LesionStatus,
    PatientTracking,
    Response,
    read_tracks,
)
from medseq.errors import CacheError
from medseq.tracking.outcome import RECIST_ORDER, tracking_labels
from medseq.tracking.outputs import (
    read_lesions_csv,
    read_response_csv,
    tracks_document,
    write_outputs,
)
from medseq.tracking.pipeline import track_cache
from medseq.tracking.stored import input_hash, store_tracks, tracks_for_cache
from tests.tracking.cache_factory import CacheBuilder, Disc, Scan

A = (-15.0, -10.0, 0.0)
B = (15.0, 12.0, 0.0)


def _cache(root: Path) -> Path:
    builder = CacheBuilder(root)
    # PR at t1, then a new lesion (PD); a split and a vanished track give every row status.
    builder.add("=1+2", Scan((Disc(A, 30.0), Disc(B, 20.0)), days=0),
                Scan((Disc(A, 18.0), Disc(B, 14.0)), days=60),
                Scan((Disc(A, 16.0), Disc((20.0, -20.0, 0.0), 12.0)), days=120))
    builder.add("split", Scan((Disc(A, 30.0),), days=0),
                Scan((Disc((A[0] - 7, A[1], 0.0), 12.0), Disc((A[0] + 7, A[1], 0.0), 12.0)),
                     days=45))
    builder.add("nomask", Scan((), days=0, has_mask=False), Scan((), days=30, has_mask=False))
    return builder.write()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _cache(tmp_path_factory.mktemp("cache"))


def _no_tracking(*args: object, **kwargs: object) -> None:
    raise AssertionError("tracking recomputed although a fresh copy is stored")


def test_one_writer_one_reader_round_trip(cache: Path, tmp_path: Path) -> None:
    results = track_cache(cache)
    statuses = {row.status for r in results for row in r.lesions}
    assert {LesionStatus.TRACKED, LesionStatus.NEW, LesionStatus.VANISHED,
            LesionStatus.SPLIT} <= statuses
    document = tracks_document(results, settings={"min_volume_ml": 0.01},
                               input_hash=input_hash(cache))
    paths = write_outputs(document, tmp_path / "out")

    read = read_tracks(paths[TRACKS_NAME])
    assert read == read_tracks(paths[TRACKS_NAME])
    assert read.model_dump(mode="json") == document.model_dump(mode="json")
    assert json.loads(paths[TRACKS_NAME].read_text()) == document.model_dump(mode="json")
    assert read.input_hash == input_hash(cache)
    assert read.patient("=1+2") is not None
    assert read.patient("=1+2").best_overall_response is Response.PR  # type: ignore[union-attr]

    lesions = read_lesions_csv(paths["lesions.csv"])
    written = [row for r in results for row in r.lesions]
    assert [row.model_dump(mode="json") for row in lesions] == [
        row.model_dump(mode="json") for row in written]
    assert lesions[0].patient_id == "=1+2"  # escaped in the CSV, read back without the quote
    assert "'=1+2" in paths["lesions.csv"].read_text()

    responses = read_response_csv(paths["response.csv"])
    expected = [(row.model_dump(mode="json"), r.best_overall_response)
                for r in results for row in r.responses]
    assert [(row.model_dump(mode="json", exclude={"best_overall_response"}),
             row.best_overall_response) for row in responses] == expected
    assert [row.response for row in responses if row.patient_id == "=1+2"] == [
        None, Response.PR, Response.PD]


def test_newer_schema_version_is_refused_in_one_line(cache: Path, tmp_path: Path) -> None:
    path = write_outputs(track_cache(cache), tmp_path / "out")[TRACKS_NAME]
    doc = json.loads(path.read_text())
    doc["schema_version"] = 2
    path.write_text(json.dumps(doc))
    with pytest.raises(CacheError) as err:
        read_tracks(path)
    message = str(err.value)
    assert "\n" not in message
    assert "schema version 2 is newer than this medseq reads (1); upgrade medseq" in message
    assert "tracks.json" in message


def test_document_of_the_current_format_without_input_hash_reads(tmp_path: Path) -> None:
    path = tmp_path / TRACKS_NAME
    path.write_text(json.dumps({
        "schema_version": 1, "medseq_version": "0.1.0", "settings": {},
        "patients": [{"patient_id": "P1", "has_mask": False, "tracked": False,
                      "note": "no lesion mask: not tracked", "best_overall_response": "NE",
                      "responder": None, "slice_thickness_mm": None, "targets": [],
                      "tracks": {}, "lesions": [], "responses": []}]}))
    doc = read_tracks(path)
    assert doc.input_hash is None
    assert doc.patients[0].responder is None


def test_fresh_stored_tracking_is_read_without_recomputation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _cache(tmp_path / "cache")
    first = tracks_for_cache(cache)  # computed once, and stored in the cache
    assert (cache / TRACKS_NAME).is_file()
    assert first.input_hash == input_hash(cache)
    monkeypatch.setattr("medseq.tracking.pipeline.track_cache", _no_tracking)
    second = tracks_for_cache(cache)
    assert second.model_dump(mode="json") == first.model_dump(mode="json")
    assert second.patient("=1+2").best_overall_response is Response.PR  # type: ignore[union-attr]


def test_stale_stored_tracking_is_recomputed(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "cache")
    stored = tracks_for_cache(cache)
    # The cache changes (here: a patient dropped from the manifest): its input hash changes.
    manifest = read_manifest(cache)
    del manifest.patients["split"]
    write_manifest(cache, manifest)
    assert input_hash(cache) != stored.input_hash
    fresh = tracks_for_cache(cache)
    assert [p.patient_id for p in fresh.patients] == ["=1+2", "nomask"]
    assert read_tracks(cache / TRACKS_NAME).input_hash == input_hash(cache)


def test_tracking_of_other_settings_is_not_stored(cache: Path) -> None:
    other = tracks_document(track_cache(cache, min_volume_ml=5.0),
                            input_hash=input_hash(cache, min_volume_ml=5.0))
    assert not store_tracks(cache, other)


def test_track_command_stores_the_cache_tracking_with_default_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _cache(tmp_path / "cache")
    runner = CliRunner()
    result = runner.invoke(app, ["track", str(cache), "-o", str(tmp_path / "o1"),
                                 "--min-volume", "0.5"])
    assert result.exit_code == 0, result.stderr
    assert not (cache / TRACKS_NAME).exists()  # other settings: not what train reads
    result = runner.invoke(app, ["track", str(cache), "-o", str(tmp_path / "o2")])
    assert result.exit_code == 0, result.stderr
    assert (cache / TRACKS_NAME).read_text() == (tmp_path / "o2" / TRACKS_NAME).read_text()
    monkeypatch.setattr("medseq.tracking.pipeline.track_cache", _no_tracking)
    assert tracks_for_cache(cache).patient("nomask") is not None


def test_one_label_rule() -> None:
    from medseq.contracts.run import RECIST_CLASSES

    assert [r.value for r in RECIST_ORDER] == list(RECIST_CLASSES)
    patients = [
        PatientTracking(patient_id="cr", has_mask=True, best_overall_response=Response.CR),
        PatientTracking(patient_id="pr", has_mask=True, best_overall_response=Response.PR),
        PatientTracking(patient_id="sd", has_mask=True, best_overall_response=Response.SD),
        PatientTracking(patient_id="pd", has_mask=True, best_overall_response=Response.PD),
        PatientTracking(patient_id="ne", has_mask=True, best_overall_response=Response.NE),
        PatientTracking(patient_id="nomask", has_mask=False, tracked=False,
                        best_overall_response=Response.NE),
        PatientTracking(patient_id="untracked", has_mask=True, tracked=False,
                        best_overall_response=Response.NE),
    ]
    doc = tracks_document(patients)
    ids = [p.patient_id for p in patients] + ["absent"]
    labels, excluded = tracking_labels(doc, ids)
    assert labels == {"cr": 1, "pr": 1, "sd": 0, "pd": 0}
    assert excluded == {"ne": "response not evaluable", "nomask": "no lesion mask",
                        "untracked": "not tracked", "absent": "not tracked"}
    assert tracking_labels(doc, ids, task="recist")[0] == {"cr": 0, "pr": 1, "sd": 2, "pd": 3}
    assert [p.responder for p in patients] == [True, True, False, False, None, None, None]
