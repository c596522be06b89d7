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
    assert info["schema_version"] == 1
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


def test_usage_errors_are_one_line_and_exit_1() -> None:
    # docs/cli.md: 1 for usage errors (click's own default is 2 with a box)
    cases = [
        (["train", "--bogus"], "No such option: --bogus"),
        (["sample-data", "out", "--patients", "abc"], "Invalid value for '--patients'"),
        (["nocommand"], "No such command 'nocommand'"),
        (["evaluate"], "Missing argument"),
    ]
    for argv, expected in cases:
        result = runner.invoke(app, argv)
        assert result.exit_code == 1, (argv, result.exit_code)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (argv, result.stderr)
        assert lines[0].startswith("error: "), lines[0]
        assert expected in lines[0], lines[0]
        assert "╭" not in result.stderr
        assert result.stdout == ""


def test_usage_error_from_the_installed_entry_point_exits_1() -> None:
    out = subprocess.run([sys.executable, "-m", "medseq", "info", "--bogus"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert out.stderr.startswith("error: No such option: --bogus (see ")
    assert out.stderr.endswith("medseq info --help)\n")
    assert len(out.stderr.splitlines()) == 1


def test_bare_medseq_prints_help_and_exits_0() -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 0
    assert "Commands" in result.stdout


def test_help_shows_flags_without_a_value_placeholder() -> None:
    for name, _ in COMMANDS:
        result = runner.invoke(app, [name, "--help"], terminal_width=120)
        assert result.exit_code == 0, name
        assert "<bool>" not in result.stdout, name
    result = runner.invoke(app, ["train", "--help"], terminal_width=120)
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    resume = next(line for line in rows if "--resume" in line)
    assert "Continue the run" in resume
    folds = next(line for line in rows if "--folds" in line)
    assert "<int>" in folds  # options that take a value still show its type


def test_info_keeps_its_yes_no_marks() -> None:
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    assert "[yes] JPEG 2000 Lossless (1.2.840.10008.1.2.4.90)" in result.stdout
    assert "mask[,label]" in result.stdout
