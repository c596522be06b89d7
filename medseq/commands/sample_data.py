"""``medseq sample-data``: write a synthetic longitudinal CT cohort with exact ground truth."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path

import typer

from medseq.commands._common import reports_errors
from medseq.console import emit_json, stderr
from medseq.errors import UsageError


class CohortFormat(str, Enum):
    """How patients are written."""

    dicom = "dicom"
    nifti = "nifti"
    both = "both"


class CohortSize(str, Enum):
    """Voxel grid of every scan."""

    small = "small"
    medium = "medium"
    large = "large"


class DicomCompression(str, Enum):
    """Transfer syntax of the DICOM pixel data."""

    none = "none"
    rle = "rle"
    jpeg2000 = "jpeg2000"


@reports_errors
def command(
    out: Path = typer.Argument(..., help="Output folder; must be new or empty unless --force."),
    patients: int = typer.Option(12, "--patients", "-n", min=1, help="Number of patients."),
    timepoints: str = typer.Option(
        "2-6", "--timepoints", "-t", help="Scans per patient: T, or MIN-MAX drawn uniformly."
    ),
    fmt: CohortFormat = typer.Option(
        CohortFormat.both, "--format", help="dicom, nifti, or both (patients alternate)."
    ),
    size: CohortSize = typer.Option(
        CohortSize.small, "--size",
        help="small 96x96x48, medium 192x192x96, large 512x512x240 voxels.",
    ),
    seed: int = typer.Option(0, "--seed", help="Cohort seed: the same seed writes the same bytes."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes."),
    lesions: str = typer.Option(
        "1-5", "--lesions", help="Baseline lesions per patient: N or MIN-MAX."
    ),
    compression: DicomCompression = typer.Option(
        DicomCompression.none, "--dicom-compression",
        help="DICOM pixel encoding: none, rle (RLE Lossless) or jpeg2000 (JPEG 2000 Lossless).",
    ),
    force: bool = typer.Option(
        False, "--force",
        help="Write into a non-empty OUT (files of the same names are replaced; none are deleted).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Write a JSON summary to stdout."),
) -> None:
    """Generate a synthetic longitudinal CT cohort: images, lesion masks and ground truth.

    Writes DICOM (as a PACS export) and/or NIfTI scans of torso phantoms with lesions that grow
    or respond to treatment, binary lesion masks, ground_truth.json (lesion identities,
    measurements, repositioning, RECIST responses), labels.csv and manifest.csv.

    Example: medseq sample-data demo --patients 20 --timepoints 3-5 --workers 2
    """
    scans = _parse_range(timepoints, "--timepoints")
    lesion_range = _parse_range(lesions, "--lesions")
    _check_output(out, force=force)

    from medseq.data.synthetic import generate_cohort
    from medseq.data.synthetic.cohort import CohortSpec
    from medseq.progress import ProgressBar
    from medseq.schema import versioned

    try:  # Validate before the progress bar starts, so errors stay one clean line.
        CohortSpec(
            patients=patients, timepoints=scans, fmt=fmt.value, size=size.value, seed=seed,
            repositioning_mm=None, lesions=lesion_range, dicom_compression=compression.value,
        )
    except ValueError as err:
        raise UsageError(str(err)) from None
    started = time.perf_counter()
    with ProgressBar("sample-data", unit="patients", total=patients, transient=True) as bar:
        try:
            generate_cohort(
                out, patients=patients, timepoints=scans, fmt=fmt.value, size=size.value,
                seed=seed, workers=workers, lesions=lesion_range,
                dicom_compression=compression.value, progress=bar.update,
            )
        except ValueError as err:
            raise UsageError(str(err)) from None
    summary = _summary(out, time.perf_counter() - started)
    if json_output:
        emit_json(versioned(summary))
    stderr.print(
        f"wrote {summary['patients']} patients ({summary['responders']} responders), "
        f"{summary['scans']} scans, {summary['megabytes']:.1f} MB to {out} "
        f"in {summary['seconds']:.1f} s"
    )


def _parse_range(text: str, option: str) -> tuple[int, int]:
    """``"3"`` -> (3, 3); ``"2-6"`` -> (2, 6)."""
    try:
        parts = [int(p) for p in text.split("-")]
    except ValueError:
        raise UsageError(f"{option} must be N or MIN-MAX (for example 2-6), got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or parts[0] > parts[1]:
        raise UsageError(f"{option} must be N or MIN-MAX with MIN <= MAX, got {text!r}")
    return parts[0], parts[1]


def _check_output(out: Path, *, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError("exists and is not a folder", path=out)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(
            "folder is not empty; choose a new folder or pass --force to write into it "
            "(files of the same names are replaced, nothing is deleted)",
            path=out,
        )


def _summary(out: Path, seconds: float) -> dict[str, object]:
    import json

    truth = json.loads((out / "ground_truth.json").read_text())
    records = truth["patients"]
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "output": str(out),
        "patients": len(records),
        "responders": sum(r["label"] for r in records),
        "scans": sum(len(r["timepoints"]) for r in records),
        "dicom_patients": sum(r["format"] == "dicom" for r in records),
        "nifti_patients": sum(r["format"] == "nifti" for r in records),
        "megabytes": round(size / 1e6, 3),
        "seconds": round(seconds, 2),
        "generator": truth["generator"],
    }
