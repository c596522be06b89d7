"""A run killed mid-way leaves no half file, and the next run completes the cache exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import medseq.io.nifti
from medseq.io.discover import discover
from medseq.preprocess.config import PreprocessConfig
from medseq.preprocess.runner import run_preprocess
from tests.preprocess.conftest import cache_with_salt_of, file_hashes, manifest_content


def assert_no_half_files(cache: Path) -> None:
    """Every file under a final name is complete (the temporary names start with a dot)."""
    for path in cache.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.name.endswith((".nii", ".nii.gz")):
            np.asarray(nib.load(path).dataobj)
        elif path.suffix == ".npy":
            np.load(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())


def test_interrupted_run_resumes_to_the_same_cache(
        phantom_cohort: Path, reference_cache: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = cache_with_salt_of(reference_cache, tmp_path / "cache")
    real_save = medseq.io.nifti.save_nifti
    saved: dict[str, int] = {}

    def save_then_die(volume: object, path: Path) -> None:
        # Die on the second file of the second patient, whichever patient the (random) salt
        # puts second: a fixed call count would land in the first patient when it has more scans.
        folder = Path(path).parent.name
        saved[folder] = saved.get(folder, 0) + 1
        if len(saved) == 2 and saved[folder] == 2:
            raise KeyboardInterrupt
        real_save(volume, path)  # type: ignore[arg-type]

    monkeypatch.setattr(medseq.io.nifti, "save_nifti", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_preprocess(discover(phantom_cohort), cache, config=PreprocessConfig())
    monkeypatch.undo()
    assert_no_half_files(cache)
    assert len(json.loads((cache / "manifest.json").read_text())["patients"]) == 1

    summary = run_preprocess(discover(phantom_cohort), cache, config=PreprocessConfig())
    assert (summary.processed, summary.skipped) == (2, 1)
    assert manifest_content(cache) == manifest_content(reference_cache)
    assert file_hashes(cache) == file_hashes(reference_cache)


def test_killed_process_resumes_to_the_same_cache(
        phantom_cohort: Path, reference_cache: Path, tmp_path: Path) -> None:
    cache = cache_with_salt_of(reference_cache, tmp_path / "cache")
    process = subprocess.Popen(
        [sys.executable, "-m", "medseq", "preprocess", str(phantom_cohort), "-o", str(cache)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    manifest = cache / "manifest.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if manifest.exists() and json.loads(manifest.read_text() or "{}").get("patients"):
                break
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert_no_half_files(cache)

    summary = run_preprocess(discover(phantom_cohort), cache, config=PreprocessConfig())
    assert summary.processed + summary.skipped == 3
    assert not summary.failed
    assert manifest_content(cache) == manifest_content(reference_cache)
    assert file_hashes(cache) == file_hashes(reference_cache)
