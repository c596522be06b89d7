"""The CLI shell: help, version, info, error handling, fast start-up."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from medseq import __version__
from medseq.cli import COMMANDS, app

runner = CliRunner()


def test_version_prints_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"medseq {__version__}"


def test_every_command_has_help_with_an_example() -> None:
    for name, _ in COMMANDS:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Example" in result.stdout, f"{name} --help shows no example"


def test_info_json_lists_commands_layouts_and_syntaxes() -> None:
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["version"] == __version__
    assert info["commands"] == [name for name, _ in COMMANDS]
    assert set(info["input_layouts"]) == {"dicom", "nifti", "manifest"}
    uids = {ts["uid"]: ts["available"] for ts in info["transfer_syntaxes"]}
    assert uids["1.2.840.10008.1.2.4.90"] is True  # JPEG 2000 decodable here
    assert uids["1.2.840.10008.1.2.5"] is True  # RLE
    assert info["network_access"] is False


def test_help_and_info_import_no_heavy_package() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from medseq.cli import app\n"
        "r = CliRunner()\n"
        "assert r.invoke(app, ['--help']).exit_code == 0\n"
        "assert r.invoke(app, ['info', '--json']).exit_code == 0\n"
        "heavy = [m for m in ('torch', 'monai', 'SimpleITK', 'scipy') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_installed_entry_point_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "medseq", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"medseq {__version__}"
