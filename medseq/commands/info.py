"""``medseq info``: what this installation can do, answered without importing torch."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform

import typer

from medseq import __version__
from medseq.commands._common import reports_errors
from medseq.console import emit_json, stdout_console
from medseq.schema import SCHEMA_VERSION

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
    from medseq.commands.registry import COMMANDS

    parts = {name: _installed_version(name) for name in PARTS}
    commands = [name for name, _ in COMMANDS]
    syntaxes = [
        {"uid": uid, "name": name, "decoder": decoder,
         "available": decoder == "numpy" or parts.get(decoder) is not None}
        for uid, (name, decoder) in TRANSFER_SYNTAXES.items()
    ]
    info: dict[str, object] = {
        "schema_version": SCHEMA_VERSION,
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
    lines = [f"medseq {__version__} (Python {info['python']})", "commands: " + ", ".join(commands)]
    lines += [f"layout {name}: {text}" for name, text in LAYOUTS.items()]
    for ts in syntaxes:
        mark = "yes" if ts["available"] else "no "
        lines.append(f"  [{mark}] {ts['name']} ({ts['uid']})")
    lines += [f"  {name}: {version or 'not installed'}" for name, version in parts.items()]
    out = stdout_console()
    for line in lines:
        out.print(line, markup=False)  # `[yes]` is text, not rich markup


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
