"""``medseq train-tracker``: train the follow-up lesion segmenter on a cache with masks."""

from __future__ import annotations

from pathlib import Path

import typer

from medseq.commands._common import reports_errors
from medseq.errors import UsageError


@reports_errors
def command(
    cache: Path = typer.Argument(..., help="Preprocessing cache whose timepoints have masks."),
    output: Path = typer.Option(..., "--output", "-o", metavar="TRACKRUN",
                                help="Tracker folder to write."),
    config_file: Path = typer.Option(None, "--config", help="YAML tracker settings."),
    steps: int = typer.Option(None, "--steps", help="Optimiser steps (default 4000)."),
    seed: int = typer.Option(None, "--seed", help="Seed for the split, weights and samples."),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda (default auto)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in -o from its last "
                                "checkpoint, with its saved settings."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
) -> None:
    """Train the promptable follow-up lesion segmenter and new-lesion detector (docs/track.md).

    Writes TRACKRUN/tracker.safetensors + tracker.json (and metrics.json); `medseq track
    --tracker TRACKRUN` then needs masks at baseline only.

    Example: medseq train-tracker cache/ -o tracker/ --steps 600 --seed 0
    """
    from medseq.config import load_config
    from medseq.console import stderr
    from medseq.tracker.config import TrackerConfig
    from medseq.tracker.train import train_tracker

    overrides = {"steps": steps, "seed": seed, "device": device}
    if resume and (config_file is not None or steps is not None or seed is not None):
        raise UsageError("--resume takes its settings from the run folder; drop --config, "
                         "--steps and --seed")
    config = load_config(TrackerConfig, config_file, overrides)

    def log(line: str) -> None:
        if not quiet:
            stderr.print(line, markup=False, highlight=False)

    summary = train_tracker(cache, output, config, resume=resume, log=log)
    dice = f"{summary.val_dice:.3f}" if summary.val_dice is not None else "n/a"
    threshold = (f"{summary.detect_threshold:.3f}" if summary.detect_threshold is not None
                 else "none (detector off)")
    stderr.print(f"done: {summary.patients} training patients, held-out median Dice {dice}, "
                 f"detection threshold {threshold}, "
                 f"{summary.seconds:.0f} s; tracker in {output}", markup=False, highlight=False)
