"""A tiny generated cohort shared by the tests of this folder (generated once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseq.data.synthetic import generate_cohort

TINY = {"patients": 3, "timepoints": (2, 3), "fmt": "both", "size": "small", "seed": 7}


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small patients (two DICOM, one NIfTI), two or three scans each."""
    return generate_cohort(tmp_path_factory.mktemp("tiny") / "cohort", **TINY)  # type: ignore[arg-type]
