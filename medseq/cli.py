"""The ``medseq`` command line: one Typer app, one module per command.

Command modules are imported here, but they import torch, monai and SimpleITK only inside
the command bodies, so ``medseq --help`` answers in a fraction of a second.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any, cast

import typer
from typer.core import TyperGroup, TyperOption

from medseq import __version__
from medseq.commands.registry import COMMANDS
from medseq.errors import ExitCode

__all__ = ["COMMANDS", "app", "main"]

def _click_error(name: str) -> type[BaseException]:
    """The click exception class ``name`` behind typer (vendored in typer >= 0.17, else click)."""
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == name:
            return cls
    raise ImportError(f"typer has no {name}")


_ClickException = _click_error("ClickException")


class _MedseqGroup(TyperGroup):
    """The root command: usage errors (unknown option, bad value, missing argument) are one
    ``error: ...`` line on stderr and exit 1, as ``docs/cli.md`` promises (click exits 2 and
    draws a box)."""

    def main(  # type: ignore[override]
        self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
        standalone_mode: bool = True, **extra: Any,
    ) -> Any:
        call: dict[str, Any] = {"args": args, "prog_name": prog_name,
                                "complete_var": complete_var, **extra}
        if not standalone_mode:
            return super().main(standalone_mode=False, **call)
        try:
            rv = super().main(standalone_mode=False, **call)
        except _ClickException as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # bare `medseq`: the help, no error
                cast(Any, err).show()
                sys.exit(int(ExitCode.OK))
            sys.stderr.write(f"error: {_usage_message(err)}\n")
            sys.exit(int(ExitCode.USAGE))
        except typer.Abort:
            sys.stderr.write("error: aborted\n")
            sys.exit(int(ExitCode.USAGE))
        sys.exit(rv if isinstance(rv, int) else int(ExitCode.OK))


def _usage_message(err: BaseException) -> str:
    message = " ".join(str(getattr(err, "format_message", lambda: str(err))()).split())
    ctx = getattr(err, "ctx", None)
    if ctx is not None:
        message = f"{message.rstrip('.')} (see {ctx.command_path} --help)"
    return message


def _hide_flag_types() -> None:
    """No ``<bool>`` placeholder after on/off flags in ``--help``: they take no value.

    typer >= 0.17 renders every flag as ``--resume <bool>``; older typer has no such method.
    """
    display: Callable[..., str | None] | None = getattr(TyperOption, "display_type_rich", None)
    if display is None or getattr(display, "_medseq", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else display(self, ctx)

    display_type_rich._medseq = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_types()

app = typer.Typer(
    name="medseq",
    cls=_MedseqGroup,
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
