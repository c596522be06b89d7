"""Concurrent and killed runs never lose work: one writer per cache, shards side by side,
leftovers of dead writers removed, workers gone with their parent."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medseq.io.discover import discover
from medseq.preprocess.config import PreprocessConfig
from medseq.preprocess.runner import run_preprocess
from medseq.processes import HOST_TAG
from tests.preprocess.conftest import cache_with_salt_of, file_hashes, manifest_content
from tests.processes import dead_pid, descendants, env, lock_holder, running


def _preprocess(cohort: Path, cache: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "medseq", "preprocess", str(cohort), "-o",
                             str(cache), *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env())


def test_two_identical_runs_started_together_never_damage_the_cache(
        phantom_cohort: Path, reference_cache: Path, tmp_path: Path) -> None:
    cache = cache_with_salt_of(reference_cache, tmp_path / "cache")
    runs = [_preprocess(phantom_cohort, cache) for _ in range(2)]
    results = []
    for run in runs:
        _, err = run.communicate(timeout=300)
        results.append((run.pid, run.returncode, err))
    codes = sorted(code for _, code, _ in results)
    # Usually one run gets the cache and the other is refused at once; if the machine is so
    # slow that the second starts after the first ended, it finds everything up to date.
    assert codes in ([0, 1], [0, 0]), results
    for pid, code, err in results:
        if code == 1:
            other = next(p for p, _, _ in results if p != pid)
            assert err == (f"error: {cache}: cache in use by process {other}; wait for it to "
                           "finish, or use another folder\n")
    assert manifest_content(cache) == manifest_content(reference_cache)
    assert file_hashes(cache) == file_hashes(reference_cache)


def test_a_second_run_is_refused_and_deletes_nothing(phantom_cohort: Path, tmp_path: Path
                                                     ) -> None:
    cache = tmp_path / "cache"
    with lock_holder(cache, what="cache") as first:
        live = cache / f".manifest.json.{HOST_TAG}-{first.pid}.a1b2c3d4.tmp.json"
        live.write_text("{}")
        second = subprocess.run([sys.executable, "-m", "medseq", "preprocess",
                                 str(phantom_cohort), "-o", str(cache)],
                                capture_output=True, text=True, env=env(), timeout=120)
        assert second.returncode == 1
        assert second.stderr == (f"error: {cache}: cache in use by process {first.pid}; wait "
                                 "for it to finish, or use another folder\n")
        assert sorted(p.name for p in cache.iterdir()) == sorted([".writer.lock", live.name])


def test_a_shard_keeps_a_live_writers_temporaries_and_removes_dead_ones(
        phantom_cohort: Path, reference_cache: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(reference_cache, cache)
    patients = sorted(json.loads((cache / "manifest.json").read_text())["patients"])
    mine = cache / patients[1]  # shard 2/2 takes the second patient in id order
    (mine / "t00_image.nii").unlink()  # so shard 2/2 redoes it (and clears its folder)
    with lock_holder(cache, shard=(1, 2), what="cache") as other:
        gone = dead_pid()
        live = [cache / f".manifest.json.{HOST_TAG}-{other.pid}.a1b2c3d4.tmp.json",
                mine / f".t00_mask.nii.{HOST_TAG}-{other.pid}.e5f6g7h8.tmp.nii",
                cache / patients[0] / f".crops.npy.{HOST_TAG}-{other.pid}.i9j0k1l2.tmp.npy"]
        dead = [cache / f".manifest.json.{HOST_TAG}-{gone}.m3n4o5p6.tmp.json",
                mine / f".t00_mask.nii.{HOST_TAG}-{gone}.q7r8s9t0.tmp.nii",
                cache / patients[0] / f".crops.npy.{HOST_TAG}-{gone}.u1v2w3x4.tmp.npy"]
        for path in live + dead:
            path.write_text("x")
        summary = run_preprocess(discover(phantom_cohort), cache, config=PreprocessConfig(),
                                 shard=(2, 2))
        assert (summary.processed, summary.failed) == (1, [])
        assert [p.exists() for p in live] == [True, True, True]
        assert [p.exists() for p in dead] == [False, False, False]
    # Alone with the cache, a run removes every leftover: no other writer can own one.
    run_preprocess(discover(phantom_cohort), cache, config=PreprocessConfig())
    assert not [p for p in cache.rglob(".*") if ".tmp" in p.name]
    assert file_hashes(cache) == file_hashes(reference_cache)


KILL_IN_MANIFEST_WRITE = """
import os, signal, sys
import medseq.io.atomic as atomic
from medseq.cli import app

real_replace = os.replace

def replace(src, dst):
    if str(dst).endswith("manifest.json"):
        os.kill(os.getpid(), signal.SIGKILL)  # killed between writing and renaming
    real_replace(src, dst)

atomic.os.replace = replace
sys.argv = ["medseq", "preprocess", sys.argv[1], "-o", sys.argv[2]]
app()
"""


def test_a_rerun_removes_the_manifest_temporary_of_a_killed_run(
        phantom_cohort: Path, reference_cache: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(reference_cache, cache)  # up to date: the rerun only has to clean up
    killed = subprocess.run([sys.executable, "-c", KILL_IN_MANIFEST_WRITE, str(phantom_cohort),
                             str(cache)], capture_output=True, env=env(), timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert len(list(cache.glob(".manifest.json.*.tmp.json"))) == 1
    summary = run_preprocess(discover(phantom_cohort), cache, config=PreprocessConfig())
    assert (summary.processed, summary.skipped) == (0, 3)
    assert list(cache.glob(".manifest.json.*")) == []
    assert manifest_content(cache) == manifest_content(reference_cache)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes in /proc")
def test_workers_exit_when_the_run_is_killed(phantom_cohort: Path, tmp_path: Path) -> None:
    run = _preprocess(phantom_cohort, tmp_path / "cache", "--workers", "2")
    deadline = time.monotonic() + 120
    children: set[int] = set()
    try:
        # The resource tracker, the fork server and two workers below the run.
        while len(children) < 4 and time.monotonic() < deadline and run.poll() is None:
            children = descendants(run.pid)
            time.sleep(0.01)
        assert run.poll() is None
        assert len(children) >= 4, children
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
    deadline = time.monotonic() + 10
    while any(running(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in children if running(pid)]
    for pid in left:  # do not leave them behind when the check fails
        os.kill(pid, signal.SIGKILL)
    assert left == [], "processes outlived the killed run"
