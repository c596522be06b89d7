"""The ``medseq`` command line: one Typer app, one module per command.

Command modules are imported here, but they import torch, monai and SimpleITK only inside
the command bodies, so ``medseq --help`` answers in a fraction of a second.
"""

from __future__ import annotations

import importlib

import typer

from medseq import __version__

COMMANDS: tuple[tuple[str, str], ...] = (
    ("info", "medseq.commands.info"),
    ("scan", "medseq.commands.scan"),
    ("sample-data", "medseq.commands.sample_data"),
    ("preprocess", "medseq.commands.preprocess"),
    ("track", "medseq.commands.track"),
    ("train", "medseq.commands.train"),
    ("train-tracker", "medseq.commands.train_tracker"),
    ("evaluate", "medseq.commands.evaluate"),
    ("predict", "medseq.commands.predict"),
    ("report", "medseq.commands.report"),
)
"""(command name, module holding a ``command`` function), in the order ``--help`` lists them."""

app = typer.Typer(
    name="medseq",
    help=(
        "Longitudinal medical image series: find and load follow-up scans, preprocess, "
        "track lesions with RECIST 1.1, train and evaluate response models, report.\n\n"
        "Data goes to stdout, progress and logs to stderr. Exit codes: 0 success, "
        "1 usage or internal error, 2 invalid input data."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"medseq {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version_callback,
        is_eager=True,
    ),
) -> None:
    """Longitudinal medical image series toolkit."""


for _name, _module in COMMANDS:
    app.command(_name)(importlib.import_module(_module).command)


def main() -> None:
    """Console-script entry point."""
    app()
