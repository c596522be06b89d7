"""Phantom cohorts shared by the preprocess tests (written once per session: they are slow-ish)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.preprocess.phantom import ScanSpec, rigid, write_manifest_cohort

MOTION_1 = rigid((3, -2, 5), (6, -4, 3))
MOTION_2 = rigid((-4, 3, -6), (-8, 5, 10))


@pytest.fixture(scope="session")
def phantom_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three patients: two with masks at every scan, one whose follow-up has no mask."""
    root = tmp_path_factory.mktemp("phantom_cohort")
    return write_manifest_cohort(root, {
        "Doe^Jane": [ScanSpec(0), ScanSpec(61, MOTION_1, 1.3), ScanSpec(120, MOTION_2, 0.7)],
        "Roe^Richard": [ScanSpec(0, MOTION_2), ScanSpec(45, MOTION_1, 1.1)],
        "NoMask01": [ScanSpec(0), ScanSpec(30, MOTION_2, mask=False)],
    }, labels={"Doe^Jane": 1, "Roe^Richard": 0, "NoMask01": 0})


@pytest.fixture(scope="session")
def reference_cache(phantom_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom cohort preprocessed by one uninterrupted run (tests must not modify it)."""
    from medseq.io.discover import discover
    from medseq.preprocess.config import PreprocessConfig
    from medseq.preprocess.runner import run_preprocess

    cache = tmp_path_factory.mktemp("reference_cache")
    summary = run_preprocess(discover(phantom_cohort), cache, config=PreprocessConfig())
    assert summary.processed == 3
    assert not summary.failed
    return cache


def cache_with_salt_of(reference: Path, cache: Path) -> Path:
    """A new cache folder holding ``reference``'s key, so pseudonyms (and files) match."""
    cache.mkdir(parents=True)
    shutil.copy(reference / "salt.key", cache / "salt.key")
    return cache


@pytest.fixture
def cohort_copy(phantom_cohort: Path, tmp_path: Path) -> Path:
    """A private copy of the phantom cohort that a test may modify."""
    target = tmp_path / "input"
    shutil.copytree(phantom_cohort.parent, target)
    return target / phantom_cohort.name


def manifest_content(cache: Path) -> dict[str, Any]:
    """manifest.json without what legitimately differs between equal runs (timings)."""
    data = json.loads((cache / "manifest.json").read_text())
    for patient in data["patients"].values():
        patient.pop("timings", None)
    return data


def file_hashes(cache: Path) -> dict[str, str]:
    """SHA-256 of every output file in a cache (not the manifest, key or lock)."""
    out = {}
    for path in sorted(cache.rglob("*")):
        if path.is_file() and path.parent != cache and path.name != "patient.json":
            out[str(path.relative_to(cache))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
