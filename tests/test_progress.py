"""Progress on stderr: a live bar on terminals, a plain line every few seconds elsewhere."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from medseq.progress import ProgressBar
from medseq.training.progress import MIN_VAL_PER_CLASS, Reporter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _console(*, terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=200), buffer


def test_not_a_terminal_prints_a_line_every_few_seconds_and_at_the_end() -> None:
    console, buffer = _console(terminal=False)
    clock = FakeClock()
    with ProgressBar("preprocess", unit="patients", console=console, clock=clock,
                     interval_s=5.0) as bar:
        for done in range(1, 13):
            clock.now += 1.0  # one patient a second
            bar.update(done, 12)
    lines = buffer.getvalue().splitlines()
    # t=1 (first update), t=6 and t=11 (5 s apart), then the end (t=12)
    assert [line.split(":")[1].split()[0] for line in lines] == ["1/12", "6/12", "11/12", "12/12"]
    assert lines[1] == "preprocess: 6/12 patients (50%), 60.0/min, 0:06 elapsed, ETA 0:06"
    assert lines[-1] == "preprocess: 12/12 patients (100%), 60.0/min, 0:12 elapsed"


def test_plain_lines_without_total_or_updates() -> None:
    console, buffer = _console(terminal=False)
    clock = FakeClock()
    with ProgressBar("reading headers", unit="files", console=console, clock=clock):
        pass
    assert buffer.getvalue() == ""  # nothing happened: no line
    with ProgressBar("reading headers", unit="files", console=console, clock=clock) as bar:
        clock.now += 2.0
        bar.update(250)
        bar.update(500)  # within the interval: no line until the end
    assert buffer.getvalue().splitlines() == [
        "reading headers: 250 files, 7500.0/min, 0:02 elapsed",
        "reading headers: 500 files, 15000.0/min, 0:02 elapsed",
    ]


def test_a_terminal_gets_the_live_bar_and_quiet_gets_nothing() -> None:
    console, buffer = _console(terminal=True)
    with ProgressBar("preprocess", unit="patients", console=console) as bar:
        assert bar.live
        bar.update(3, 4)
    assert "3/4" in buffer.getvalue()
    console, buffer = _console(terminal=False)
    with ProgressBar("preprocess", console=console, enabled=False) as bar:
        bar.update(3, 4)
        bar.print("hello")
    assert buffer.getvalue() == ""


def _reporter_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    validation: tuple[int, int]) -> tuple[str, str]:
    log = tmp_path / "log.txt"
    with Reporter(log) as reporter:
        reporter.start_model("fold 1/5", 3, validation=validation)
        for epoch in (1, 2, 3):
            reporter.epoch("fold 1/5", {"epoch": epoch, "train_loss": 0.7, "val_loss": 0.69,
                                        "val_auc": 1.0})
    return capsys.readouterr().err, log.read_text()


def test_a_tiny_validation_split_shows_no_auc(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    err, log = _reporter_lines(tmp_path, capsys, validation=(1, 1))
    assert "val AUC" not in err
    assert "val AUC" not in log
    assert "too small for a meaningful AUC" in err
    assert "too small" in log
    assert "fold 1/5: 3/3 epochs" in err  # the end line, with the losses
    assert "val loss 0.6900" in err
    assert "fold 1/5 epoch 2: loss 0.7000  val loss 0.6900" in log  # every epoch in the log


def test_a_large_enough_validation_split_shows_the_auc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err, log = _reporter_lines(tmp_path, capsys,
                               validation=(MIN_VAL_PER_CLASS, MIN_VAL_PER_CLASS))
    assert "val AUC 1.000" in err
    assert "val AUC 1.000" in log
    assert "too small" not in err
