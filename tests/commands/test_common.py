"""Shared command behaviour: errors become one line and an exit code, never a traceback."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from medseq.commands._common import parse_shard, reports_errors
from medseq.errors import DicomError, UsageError


def _app(exc: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @reports_errors
    def boom(name: str = typer.Option("x", help="n")) -> None:
        raise exc

    return app


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    [
        (DicomError("missing slice 4 of 10", path="/data/s1"), 2, "error: /data/s1: missing slice"),
        (UsageError("--shard must look like K/N"), 1, "error: --shard must look like K/N"),
        (
            RuntimeError("boom\nsecond line"),
            1,
            "error: internal error (RuntimeError: boom second line)",
        ),
    ],
)
def test_errors_become_one_stderr_line(exc: BaseException, code: int, text: str) -> None:
    result = CliRunner().invoke(_app(exc), [])
    assert result.exit_code == code
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(text)
    assert "Traceback" not in result.stderr


def test_parse_shard() -> None:
    assert parse_shard(None) is None
    assert parse_shard("2/8") == (2, 8)
    for bad in ("0/3", "4/3", "a/b", "3", "1/0"):
        with pytest.raises(UsageError):
            parse_shard(bad)


def test_warnings_print_brackets_literally(capsys: pytest.CaptureFixture[str]) -> None:
    # rich would read `[1]` and `[yes]` as markup and drop them
    from medseq.console import warn

    warn("scan[1].dcm: [yes] kept")
    assert capsys.readouterr().err == "warning: scan[1].dcm: [yes] kept\n"
