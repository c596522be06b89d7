"""Under a real scheduler: a 4-task SLURM array of ``preprocess --shard auto`` and a dependent
``preprocess --merge`` job give the cache of a single-process run.

Needs Debian's slurmctld, slurmd and slurm-client (``.ci/run`` installs them). Skipped where they
are missing, except under ``CI=true``, where it must run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.preprocess.conftest import cache_with_salt_of
from tests.preprocess.test_shards import assert_same_cache
from tests.processes import env
from tests.slurm_cluster import local_slurm, slurm_installed

WAIT_S = 90.0

if not slurm_installed():
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but slurmctld/slurmd/slurm-client are not installed (.ci/run)",
                    pytrace=False)
    pytest.skip("SLURM is not installed (apt-get install slurmctld slurmd slurm-client)",
                allow_module_level=True)


def _script(path: Path, command: str) -> Path:
    path.write_text(f"#!/bin/bash\nset -eu\nexec {command}\n")
    path.chmod(0o755)
    return path


def test_a_slurm_array_and_dependent_merge_equal_one_process(
        phantom_cohort: Path, reference_cache: Path, tmp_path: Path) -> None:
    cache = cache_with_salt_of(reference_cache, tmp_path / "cache")
    logs = tmp_path / "logs"
    logs.mkdir()
    medseq = f"{sys.executable} -m medseq preprocess"
    array = _script(tmp_path / "array.sh", f"{medseq} {phantom_cohort} -o {cache} --shard auto")
    merge = _script(tmp_path / "merge.sh", f"{medseq} --merge {cache}")
    with local_slurm(env=env()) as slurm:
        submitted = slurm.run("sbatch", "--parsable", "--array=0-3", "--cpus-per-task=1",
                              f"--output={logs}/array-%A_%a.out", str(array))
        assert submitted.returncode == 0, submitted.stderr
        array_id = submitted.stdout.strip().split(";")[0]
        submitted = slurm.run("sbatch", "--parsable", f"--dependency=afterok:{array_id}",
                              f"--output={logs}/merge-%j.out", str(merge))
        assert submitted.returncode == 0, submitted.stderr
        merge_id = submitted.stdout.strip().split(";")[0]
        state = slurm.wait(merge_id, timeout=WAIT_S)
        outputs = "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(logs.iterdir()))
        assert state == "COMPLETED", f"{state}\n{outputs}\n{slurm.logs()}"
    assert sorted(p.name for p in (cache / ".shards").iterdir()) == [
        f"{k}-of-4.json" for k in range(1, 5)]
    assert_same_cache(cache, reference_cache)
