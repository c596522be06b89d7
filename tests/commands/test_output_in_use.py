"""A second ``track`` or ``train`` into a folder another process is writing is refused (exit 1)
and changes nothing there."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from medseq.cli import app
from tests.processes import lock_holder
from tests.training.conftest import tiny_config
from tests.training.fake_cache import write_fake_cache

runner = CliRunner()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_cache(tmp_path_factory.mktemp("in_use") / "cache", n_patients=4, size=8)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_second_track_into_one_output_is_refused(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "lesions.csv").write_text("the first run's table\n")
    with lock_holder(out) as first:
        before = _snapshot(out)
        result = runner.invoke(app, ["track", str(cache), "-o", str(out)])
        assert result.exit_code == 1
        assert result.stderr == (f"error: {out}: output folder in use by process {first.pid}; "
                                 "wait for it to finish, or use another folder\n")
        assert _snapshot(out) == before


@pytest.mark.parametrize("resume", [False, True])
def test_second_train_into_one_run_is_refused(cache: Path, tmp_path: Path, resume: bool) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(tiny_config().model_dump(mode="json")))
    args = ["train", str(cache), "-o", str(run), "--resume" if resume else "--quiet"]
    with lock_holder(run) as first:
        before = _snapshot(run)
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        assert result.stderr == (f"error: {run}: run folder in use by process {first.pid}; "
                                 "wait for it to finish, or use another folder\n")
        assert _snapshot(run) == before
