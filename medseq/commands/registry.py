"""The command registry: every ``medseq`` command and the module that holds it.

``medseq.cli`` builds the app from it and ``medseq info`` lists it, so ``info`` does not import
the CLI back.
"""

from __future__ import annotations

COMMANDS: tuple[tuple[str, str], ...] = (
    ("info", "medseq.commands.info"),
    ("scan", "medseq.commands.scan"),
    ("sample-data", "medseq.commands.sample_data"),
    ("preprocess", "medseq.commands.preprocess"),
    ("track", "medseq.commands.track"),
    ("export-dicom", "medseq.commands.export_dicom"),
    ("train", "medseq.commands.train"),
    ("train-tracker", "medseq.commands.train_tracker"),
    ("evaluate", "medseq.commands.evaluate"),
    ("predict", "medseq.commands.predict"),
    ("report", "medseq.commands.report"),
)
"""(command name, module holding a ``command`` function), in the order ``--help`` lists them."""
