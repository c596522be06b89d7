"""``medseq train``: cross-validate and train the response model on a preprocessing cache."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medseq.commands._common import reports_errors
from medseq.errors import InterruptedByUserError, UsageError

if TYPE_CHECKING:
    from medseq.training.config import TrainConfig


@reports_errors
def command(
    cache: Path = typer.Argument(None, help="Preprocessing cache (from medseq preprocess)."),
    output: Path = typer.Option(None, "--output", "-o", help="Run directory to write."),
    config_file: Path = typer.Option(None, "--config", help="YAML training settings."),
    labels: Path = typer.Option(
        None, "--labels", help="CSV patient_id,label, used as given (default: the label.kind "
        "rule on RECIST tracking: best response after the observed scans)."
    ),
    observe: int = typer.Option(None, "--observe", min=0, help="Scans the model sees per "
                                "patient (default 2); 0 = all scans (retrospective)."),
    label: str = typer.Option(None, "--label", help="What to predict: best_after (default), "
                              "landmark, progression or overall."),
    folds: int = typer.Option(None, "--folds", help="Cross-validation folds (default 5)."),
    epochs: int = typer.Option(None, "--epochs", help="Maximum epochs per fold (default 40)."),
    seed: int = typer.Option(None, "--seed", help="Seed for splits, weights, sampling, "
                             "augmentation (default 0)."),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda (default auto)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in -o from its last "
                                "checkpoint, with its saved settings."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved "
                                      "settings as YAML and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
) -> None:
    """Train the CNN + time-aware recurrent response model with k-fold cross-validation.

    Writes config.yaml, splits.json, metrics.jsonl, predictions.jsonl (out-of-fold),
    model.safetensors + model.json and folds/<k>/ to the run directory. Under
    torchrun --nproc-per-node N -m medseq train ... it trains with DistributedDataParallel.

    By default the model sees each patient's first two scans and predicts the best RECIST
    response after them (early prediction); patients whose first two scans already decide it
    are left out and counted.

    Example: medseq train cache/ -o runs/r1 --folds 5 --epochs 30 --seed 1
    """
    from medseq.config import dump_yaml, load_config
    from medseq.training.config import TrainConfig

    overrides = {"folds": folds, "epochs": epochs, "seed": seed, "device": device,
                 "observe": observe or None, "label.kind": label}
    if resume:
        if output is None:
            raise UsageError("--resume needs -o RUN, the run to continue")
        given = [f"--{k.split('.')[0]}" for k, v in overrides.items()
                 if v is not None and k != "device"] + (["--observe"] if observe == 0 else [])
        if config_file is not None or labels is not None or given:
            raise UsageError("--resume takes its settings and labels from the run directory; "
                             "drop " + ", ".join(given + (["--config"] if config_file else [])
                                                  + (["--labels"] if labels else [])))
        saved = output / "config.yaml"
        if not saved.is_file():
            raise UsageError("nothing to resume: no config.yaml", path=output)
        config = load_config(TrainConfig, saved, {"device": device})
    else:
        config = load_config(TrainConfig, config_file, overrides)
        if observe == 0:  # every scan: null in the settings, which an override cannot say
            config = _with_every_scan(config)
    if print_config:
        typer.echo(dump_yaml(config), nl=False)
        return
    if cache is None or output is None:
        raise UsageError("give a cache and -o RUN (or --print-config)")
    from medseq.training.run import train_run

    try:
        summary = train_run(cache, output, config, labels_csv=labels, resume=resume,
                            progress=not quiet)
    except KeyboardInterrupt:
        raise InterruptedByUserError(_resume_hint(cache, output, device)) from None
    from medseq.console import stderr

    auc = f"{summary.oof_auc:.3f}" if summary.oof_auc is not None else "n/a"
    stderr.print(f"done: {summary.patients} patients, out-of-fold AUC {auc}, run in {output}",
                 markup=False, highlight=False)


def _with_every_scan(config: TrainConfig) -> TrainConfig:
    """``config`` with ``observe: null`` (validated again: some settings need it)."""
    from pydantic import ValidationError

    from medseq.config import first_validation_error
    from medseq.training.config import TrainConfig

    try:
        return TrainConfig.model_validate({**config.model_dump(), "observe": None})
    except ValidationError as err:
        where, message = first_validation_error(err)
        raise UsageError(f"--observe 0: setting {where or 'config'}: {message}") from None


def _resume_hint(cache: Path, output: Path, device: str | None) -> str:
    """What to say after Ctrl-C: the command that continues the run, once it has started."""
    if not (output / "config.yaml").is_file():
        return "interrupted before the run started; nothing to resume"
    words = ["medseq", "train", str(cache), "-o", str(output), "--resume"]
    if device is not None:
        words += ["--device", device]
    return ("interrupted; the last finished epoch is saved, continue with: "
            + shlex.join(words))
