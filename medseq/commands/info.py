"""``medseq info``: what this installation can do, answered without importing torch."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform

import typer

from medseq import __version__
from medseq.commands._common import reports_errors
from medseq.console import emit_json, stdout_console

LAYOUTS: dict[str, str] = {
    "dicom": "any folder tree of DICOM files (any names, DICOMDIR optional), grouped by "
    "PatientID -> StudyInstanceUID -> SeriesInstanceUID",
    "nifti": "patient/<timepoint>/image.nii.gz with optional mask.nii.gz; dates from "
    "timepoints.csv or ISO dates in folder names",
    "manifest": "CSV with columns patient_id,timepoint,date,image,mask[,label]",
}

TRANSFER_SYNTAXES: dict[str, tuple[str, str]] = {
    "1.2.840.10008.1.2": ("Implicit VR Little Endian", "numpy"),
    "1.2.840.10008.1.2.1": ("Explicit VR Little Endian", "numpy"),
    "1.2.840.10008.1.2.1.99": ("Deflated Explicit VR Little Endian", "numpy"),
    "1.2.840.10008.1.2.2": ("Explicit VR Big Endian", "numpy"),
    "1.2.840.10008.1.2.5": ("RLE Lossless", "pylibjpeg-rle"),
    "1.2.840.10008.1.2.4.50": ("JPEG Baseline (8-bit)", "pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.51": ("JPEG Extended (12-bit)", "pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.57": ("JPEG Lossless", "pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.70": ("JPEG Lossless SV1", "pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.80": ("JPEG-LS Lossless", "pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.81": ("JPEG-LS Near-lossless", "pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.90": ("JPEG 2000 Lossless", "pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.4.91": ("JPEG 2000", "pylibjpeg-openjpeg"),
}
"""Transfer syntax UID -> (name, the package that decodes it)."""

PARTS: tuple[str, ...] = (
    "numpy", "scipy", "pydicom", "nibabel", "SimpleITK", "torch", "monai", "safetensors",
    "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle", "matplotlib",
    "jinja2", "dcm2niix", "pydicom-data",
)


@reports_errors
def command(
    json_output: bool = typer.Option(False, "--json", help="Write JSON to stdout."),
) -> None:
    """Show the version, commands, input layouts, transfer syntaxes and installed parts.

    Example: medseq info --json | jq .transfer_syntaxes
    """
    from medseq.cli import COMMANDS

    parts = {name: _installed_version(name) for name in PARTS}
    commands = [name for name, _ in COMMANDS]
    syntaxes = [
        {"uid": uid, "name": name, "decoder": decoder,
         "available": decoder == "numpy" or parts.get(decoder) is not None}
        for uid, (name, decoder) in TRANSFER_SYNTAXES.items()
    ]
    info: dict[str, object] = {
        "version": __version__,
        "python": platform.python_version(),
        "commands": commands,
        "input_layouts": LAYOUTS,
        "transfer_syntaxes": syntaxes,
        "installed": parts,
        "network_access": False,
    }
    if json_output:
        emit_json(info)
        return
    out = stdout_console()
    out.print(f"medseq {__version__} (Python {info['python']})")
    out.print("commands: " + ", ".join(commands))
    for name, text in LAYOUTS.items():
        out.print(f"layout {name}: {text}")
    for ts in syntaxes:
        mark = "yes" if ts["available"] else "no "
        out.print(f"  [{mark}] {ts['name']} ({ts['uid']})")
    for name, version in parts.items():
        out.print(f"  {name}: {version or 'not installed'}")


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
