"""`medseq predict` leaves no temporary folder behind: SIGTERM and SIGHUP remove it (its
images, masks and copy of the pseudonym key) as Ctrl-C does; a killed run's is removed later."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.commands.test_predict import fake_run, nifti_patient
from tests.processes import env

# predict in a child process whose preprocessing pauses once the temporary folder holds the
# key: the signal then always arrives mid-run, whatever the machine's speed.
PAUSED_PREDICT = """
import sys, time, types
from pathlib import Path

# The model and tracking modules import torch and scipy (seconds) and are not reached here.
for name, names in [("medseq.models.inference", ["predict_patient"]),
                    ("medseq.tracking.pipeline", ["track_patient", "tracks_document"])]:
    sys.modules[name] = types.ModuleType(name)
    for attr in names:
        setattr(sys.modules[name], attr, None)

import medseq.predict as predict
import medseq.preprocess.runner as runner
from medseq.cli import app

marker = Path(sys.argv[1])

def paused(cohort, cache, **settings):
    part = marker.with_name("part")
    part.write_text(str(cache))
    part.rename(marker)  # whole, or not there yet
    time.sleep(120)

def run_without_weights(run_dir):  # the model card reader imports torch too
    salt = predict.read_salt(run_dir)
    return predict.LoadedRun(run_dir=run_dir, card=None, folds={}, config_hash=None, salt=salt,
                             fingerprint={})

runner.run_preprocess = paused
predict.load_run = run_without_weights
sys.argv = ["medseq", "predict", *sys.argv[2:]]
app()
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_termination_signal_removes_the_temporary_folder(tmp_path: Path, name: str) -> None:
    study = nifti_patient(tmp_path / "in")
    run = fake_run(tmp_path / "run")
    marker = tmp_path / "paused"
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", PAUSED_PREDICT, str(marker), str(study), "--model", str(run)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**env(), "TMPDIR": str(temp_root)})
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        workdir = Path(marker.read_text())
        assert workdir.parent == temp_root
        assert (workdir / "salt.key").is_file()
        process.send_signal(getattr(signal, name))
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + getattr(signal, name)
    assert err == f"error: terminated ({name})\n"
    assert out == ""
    assert list(temp_root.iterdir()) == []


def test_folders_of_killed_predictions_are_removed_by_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import tempfile

    from medseq.predict import _remove_abandoned_workdirs
    from medseq.processes import HOST_TAG
    from tests.processes import dead_pid

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    other_host = "0" * 6 if HOST_TAG != "0" * 6 else "1" * 6
    killed = tmp_path / f"medseq-predict-{HOST_TAG}-{dead_pid()}-a1b2c3"  # SIGKILL, OOM
    running = tmp_path / f"medseq-predict-{HOST_TAG}-{os.getpid()}-d4e5f6"
    elsewhere = tmp_path / f"medseq-predict-{other_host}-1-g7h8i9"  # shared TMPDIR
    for folder in (killed, running, elsewhere):
        folder.mkdir()
        (folder / "salt.key").write_text("ab" * 32 + "\n")
    _remove_abandoned_workdirs()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, elsewhere.name])
