"""Lock-free shards: each shard commits only its own patients, ``preprocess --merge`` derives
the manifest, and the merged cache equals a single-process run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from medseq.cli import app
from medseq.commands._common import parse_shard, slurm_array_shard
from medseq.contracts.cache import read_manifest
from medseq.errors import InputDataError, OutputInUseError
from medseq.io.discover import discover
from medseq.preprocess.config import PreprocessConfig
from medseq.preprocess.runner import run_preprocess
from medseq.preprocess.shards import merge_cache
from medseq.tracking.stored import input_hash
from tests.preprocess.conftest import cache_with_salt_of, file_hashes, manifest_content
from tests.processes import env, lock_holder

runner = CliRunner()


def _records(cache: Path) -> dict[str, Any]:
    """Every patient.json without its timings."""
    out = {}
    for path in sorted(cache.glob("*/patient.json")):
        data = json.loads(path.read_text())
        data.pop("timings", None)
        out[path.parent.name] = data
    return out


def _outputs(cache: Path) -> dict[str, str]:
    return {k: v for k, v in file_hashes(cache).items() if not k.startswith(".")}


def _visible(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")
                  if not any(part.startswith(".") for part in p.relative_to(cache).parts))


def assert_same_cache(cache: Path, reference: Path) -> None:
    """Byte-identical outputs; manifest and records equal but for the timings."""
    assert _visible(cache) == _visible(reference)
    assert _outputs(cache) == _outputs(reference)
    assert manifest_content(cache) == manifest_content(reference)
    assert _records(cache) == _records(reference)


def _stamps(cache: Path) -> list[tuple[str, int]]:
    """Every path's modification time, but the writer-lock records (they name the last run)."""
    return sorted((p.name, p.stat().st_mtime_ns) for p in cache.rglob("*")
                  if not p.name.startswith(".writer"))


def _shards(cohort: Path, cache: Path, n: int) -> None:
    found = discover(cohort)
    for k in range(1, n + 1):
        summary = run_preprocess(found, cache, config=PreprocessConfig(), shard=(k, n))
        assert not summary.failed


@pytest.mark.parametrize("n", [1, 2, 4])
def test_merged_shards_equal_a_single_process_run(
        n: int, phantom_cohort: Path, reference_cache: Path, tmp_path: Path) -> None:
    cache = cache_with_salt_of(reference_cache, tmp_path / "cache")
    _shards(phantom_cohort, cache, n)
    assert not (cache / "manifest.json").exists()  # shards never write the index
    assert sorted(p.name for p in (cache / ".shards").iterdir()) == [
        f"{k}-of-{n}.json" for k in range(1, n + 1)]
    derived = read_manifest(cache)  # derived on read from the commit records
    assert sorted(derived.patients) == sorted(_records(reference_cache))
    result = runner.invoke(app, ["preprocess", "--merge", str(cache)])
    assert result.exit_code == 0, result.stderr
    assert_same_cache(cache, reference_cache)
    first = (cache / "manifest.json").read_bytes()
    again = merge_cache(cache)  # idempotent
    assert not again.changed
    assert (cache / "manifest.json").read_bytes() == first


def test_a_killed_shard_rerun_gives_the_same_merge(
        phantom_cohort: Path, reference_cache: Path, tmp_path: Path) -> None:
    cache = cache_with_salt_of(reference_cache, tmp_path / "cache")
    run_preprocess(discover(phantom_cohort), cache, config=PreprocessConfig(), shard=(1, 2))
    child = subprocess.Popen([sys.executable, "-m", "medseq", "preprocess", str(phantom_cohort),
                              "-o", str(cache), "--shard", "2/2"], env=env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    plan = cache / ".shards" / "2-of-2.json"
    deadline = time.monotonic() + 60
    while not plan.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    if not json.loads(plan.read_text())["finished"]:  # killed mid-run: the merge refuses
        result = runner.invoke(app, ["preprocess", "--merge", str(cache)])
        assert result.exit_code == 2
        assert "shard 2/2 did not finish; missing patients: " in result.stderr
        assert not (cache / "manifest.json").exists()
    run_preprocess(discover(phantom_cohort), cache, config=PreprocessConfig(), shard=(2, 2))
    merge_cache(cache)
    assert_same_cache(cache, reference_cache)


def test_a_merge_with_a_missing_shard_names_its_patients(
        phantom_cohort: Path, reference_cache: Path, tmp_path: Path) -> None:
    cache = cache_with_salt_of(reference_cache, tmp_path / "cache")
    found = discover(phantom_cohort)
    run_preprocess(found, cache, config=PreprocessConfig(), shard=(1, 2))
    plan = json.loads((cache / ".shards" / "1-of-2.json").read_text())
    missing = sorted(set(plan["cohort"]) - set(plan["patients"]))
    (cache / "manifest.json").write_text("{}")  # must stay as it is
    result = runner.invoke(app, ["preprocess", "--merge", str(cache)])
    assert result.exit_code == 2
    assert result.stderr == (f"error: {cache}: cannot merge: shard 2/2 never started; missing "
                             f"patients: {', '.join(missing)}; rerun those shards, then merge "
                             "again\n")
    assert (cache / "manifest.json").read_text() == "{}"


def test_shards_of_different_configurations_are_refused(
        phantom_cohort: Path, reference_cache: Path, tmp_path: Path) -> None:
    cache = cache_with_salt_of(reference_cache, tmp_path / "cache")
    found = discover(phantom_cohort)
    run_preprocess(found, cache, config=PreprocessConfig(), shard=(1, 2))
    other = PreprocessConfig(crop_size=16)
    run_preprocess(found, cache, config=other, shard=(2, 2))
    before = _stamps(cache)
    result = runner.invoke(app, ["preprocess", "--merge", str(cache)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "shards were made with different configurations (shard" not in result.stderr
    assert "different configurations (1/2 with config" in result.stderr
    assert "2/2 with config" in result.stderr
    assert _stamps(cache) == before


def test_shard_auto_outside_an_array_job_is_refused(phantom_cohort: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, ["preprocess", str(phantom_cohort), "-o", str(tmp_path / "c"),
                                 "--shard", "auto"])
    assert result.exit_code == 2
    assert result.stderr == ("error: --shard auto: SLURM_ARRAY_TASK_ID and "
                             "SLURM_ARRAY_TASK_COUNT are not set (not a SLURM array task); "
                             "give --shard K/N\n")
    assert not (tmp_path / "c").exists()


def test_shard_auto_reads_the_slurm_array_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert slurm_array_shard({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4",
                              "SLURM_ARRAY_TASK_MIN": "0"}) == (1, 4)
    assert slurm_array_shard({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4",
                              "SLURM_ARRAY_TASK_MIN": "1"}) == (4, 4)
    assert slurm_array_shard({"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "4",
                              "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2"}) == (4, 4)
    with pytest.raises(InputDataError, match="array task 5 is not one of 4"):
        slurm_array_shard({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4"})
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    assert parse_shard("auto") == (2, 3)


def test_readers_rebuild_the_index_when_records_are_newer(
        phantom_cohort: Path, reference_cache: Path, tmp_path: Path) -> None:
    cache = cache_with_salt_of(reference_cache, tmp_path / "cache")
    _shards(phantom_cohort, cache, 2)
    merge_cache(cache)
    stored = (cache / "manifest.json").read_bytes()
    tracked_from = input_hash(cache)
    plan = json.loads((cache / ".shards" / "2-of-2.json").read_text())
    redone = plan["patients"][0]
    (cache / redone / "t00_image.nii").unlink()  # so shard 2/2 redoes that patient
    time.sleep(0.01)
    run_preprocess(discover(phantom_cohort), cache, config=PreprocessConfig(), shard=(2, 2))
    assert (cache / "manifest.json").read_bytes() == stored  # shards never write it
    record = json.loads((cache / redone / "patient.json").read_text())
    assert read_manifest(cache).patients[redone].timings == record["timings"]
    assert json.loads(stored)["patients"][redone]["timings"] != record["timings"]
    # Stored tracking of the cache is stale now, though manifest.json did not change.
    assert input_hash(cache) != tracked_from


def test_a_merge_is_refused_while_another_run_writes_the_cache(
        phantom_cohort: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _shards(phantom_cohort, cache, 2)
    with lock_holder(cache, what="cache"), pytest.raises(OutputInUseError, match="in use"):
        merge_cache(cache)
    assert not (cache / "manifest.json").exists()
    assert merge_cache(cache).changed  # once the writer is gone
