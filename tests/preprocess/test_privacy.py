"""Identity stays private: owner-only keys, keyed-hashed DICOM UIDs, refused runs write nothing."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseq.cli import app
from medseq.preprocess.pseudonym import (
    copy_salt,
    hashed_uid,
    hide_uids,
    load_or_create_salt,
    read_salt,
    write_salt,
)
from tests.dicom_factory import write_series

runner = CliRunner()
GOOD_UIDS = ("1.2.826.0.1.3680043.8.498.1001", "1.2.826.0.1.3680043.8.498.1002")
BROKEN_UID = "1.2.826.0.1.3680043.8.498.2001"
STUDY_UID = "1.2.826.0.1.3680043.8.498.3001"


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    before = os.umask(mask)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def dicom_cohort(root: Path) -> Path:
    """GOOD: two small studies; BROKEN: a series with a missing slice (a UID in its error)."""
    for n, (date, uid) in enumerate(zip(("20240115", "20240415"), GOOD_UIDS, strict=True)):
        write_series(root / "good" / f"s{n}", shape=(32, 32, 12), spacing=(2.0, 2.0, 3.0),
                     patient_id="GOOD", study_date=date, series_uid=uid,
                     study_uid=STUDY_UID if n == 0 else None)
    write_series(root / "broken" / "s0", shape=(32, 32, 12), spacing=(2.0, 2.0, 3.0),
                 patient_id="BROKEN", series_uid=BROKEN_UID,
                 offsets=[0, 3, 6, 9, 12, 15, 18, 21, 27, 30, 33, 36])
    return root


@pytest.fixture(scope="module")
def dicom_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("privacy")
    with umask(0o022):
        result = runner.invoke(app, ["preprocess", str(dicom_cohort(root / "in")), "-o",
                                     str(root / "cache")])
    assert result.exit_code == 2, result.stderr  # BROKEN fails, GOOD is cached
    return root / "cache", result.stderr


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o000])
def test_every_written_copy_of_the_key_is_owner_only(tmp_path: Path, mask: int) -> None:
    with umask(mask):
        key = load_or_create_salt(tmp_path / "cache")
        write_salt(tmp_path / "predict-tmp", key)
        assert copy_salt(tmp_path / "cache", tmp_path / "run")
    for folder in ("cache", "predict-tmp", "run"):
        assert mode(tmp_path / folder / "salt.key") == 0o600, folder
        assert read_salt(tmp_path / folder) == key
    assert not copy_salt(tmp_path / "nowhere", tmp_path / "run2")
    assert not (tmp_path / "run2").exists()


def test_preprocess_key_is_owner_only(dicom_cache: tuple[Path, str]) -> None:
    cache, _ = dicom_cache
    assert mode(cache / "salt.key") == 0o600


def test_predict_temporary_key_is_owner_only(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy predict writes into its temporary cache, seen while that cache exists."""
    import medseq.preprocess.runner as runner_module
    from medseq.predict import load_run, predict_one
    from tests.commands.test_predict import fake_run, nifti_patient

    seen: list[int] = []

    class SeenError(Exception):
        pass

    def spy(cohort: object, cache_dir: Path, **kwargs: object) -> None:
        seen.append(mode(Path(cache_dir) / "salt.key"))
        raise SeenError

    monkeypatch.setattr(runner_module, "run_preprocess", spy)
    run = load_run(fake_run(tmp_path / "run"))
    with umask(0o022), pytest.raises(SeenError):
        predict_one(nifti_patient(tmp_path / "in"), run)
    assert seen == [0o600]


def test_dicom_uids_are_stored_keyed_hashed(dicom_cache: tuple[Path, str]) -> None:
    cache, stderr = dicom_cache
    key = read_salt(cache)
    assert key is not None
    texts = [(cache / "manifest.json").read_text(), stderr,
             *(p.read_text() for p in cache.glob("*/patient.json"))]
    assert len(texts) == 4
    for text in texts:
        for uid in (*GOOD_UIDS, BROKEN_UID, STUDY_UID):
            assert uid not in text
        assert "1.2.826.0.1.3680043" not in text  # no other UID (SOP instances, frames) either
    manifest = json.loads(texts[0])
    good = next(p for p in manifest["patients"].values() if p["status"] == "ok")
    assert [tp["series_uid"] for tp in good["timepoints"]] == [
        hashed_uid(uid, key) for uid in GOOD_UIDS]
    broken = next(p for p in manifest["patients"].values() if p["status"] == "failed")
    assert hashed_uid(BROKEN_UID, key) in broken["error"]
    assert "missing slice" in broken["error"]
    assert hashed_uid(BROKEN_UID, key) in stderr


def test_keep_ids_keeps_uids(tmp_path: Path) -> None:
    cohort = dicom_cohort(tmp_path / "in")
    result = runner.invoke(app, ["preprocess", str(cohort), "-o", str(tmp_path / "cache"),
                                 "--keep-ids"])
    assert result.exit_code == 2, result.stderr
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert [tp["series_uid"] for tp in manifest["patients"]["GOOD"]["timepoints"]] == list(
        GOOD_UIDS)
    assert BROKEN_UID in manifest["patients"]["BROKEN"]["error"]


def test_uids_in_text_are_hidden_but_numbers_are_not() -> None:
    key = b"k" * 32
    text = (f"series {BROKEN_UID} (AXIAL): file {BROKEN_UID}.7.dcm, 2.5 mm, version 1.2.3, "
            "spacing 0.8")
    hidden = hide_uids(text, key)
    assert BROKEN_UID not in hidden
    assert f"series {hashed_uid(BROKEN_UID, key)} (AXIAL)" in hidden
    assert f"file {hashed_uid(BROKEN_UID + '.7', key)}.dcm" in hidden
    assert hidden.endswith("2.5 mm, version 1.2.3, spacing 0.8")


def test_refused_keep_ids_run_writes_nothing(tmp_path: Path) -> None:
    """An id that cannot name a folder refuses --keep-ids: no cache folder, no salt.key."""
    for n, date in enumerate(("20240115", "20240415")):
        write_series(tmp_path / "in" / f"s{n}", shape=(32, 32, 12), spacing=(2.0, 2.0, 3.0),
                     patient_id="A/B", study_date=date)
    cache = tmp_path / "cache"
    result = runner.invoke(app, ["preprocess", str(tmp_path / "in"), "-o", str(cache),
                                 "--keep-ids"])
    assert result.exit_code == 2
    assert "cannot name a folder" in result.stderr
    assert not cache.exists()


def test_run_refused_for_mixing_keep_ids_leaves_the_cache_as_it_was(
        dicom_cache: tuple[Path, str], tmp_path: Path) -> None:
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(dicom_cache[0], cache)
    (cache / "salt.key").unlink()  # as if the key had been moved away for safe keeping
    before = _contents(cache)
    result = runner.invoke(app, ["preprocess", str(dicom_cohort(tmp_path / "in")), "-o",
                                 str(cache), "--keep-ids"])
    assert result.exit_code == 2
    assert "keep-ids" in result.stderr
    assert _contents(cache) == before
    assert not (cache / "salt.key").exists()


def _contents(folder: Path) -> dict[Path, bytes]:
    """Every file's bytes, but the writer-lock records: they name the last run, not the data."""
    return {p: p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".writer")}
