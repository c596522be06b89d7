"""DistributedDataParallel on CPU: torchrun, gloo backend, two processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.training.conftest import tiny_config


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(fake_cache: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed beside this Python")
    config = tmp_path / "train.yaml"
    # bf16 autocast too: DDP runs the same forward, whose recurrent layer must stay fp32.
    settings = tiny_config(epochs=2, threads=1, amp="bf16").model_dump(mode="json")
    config.write_text(yaml.safe_dump(settings))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDSEQ_DEBUG": "1"}
    out = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "medseq", "train",
         str(fake_cache), "-o", str(run), "--config", str(config), "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 processes" in (run / "log.txt").read_text()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # rank 0 alone writes: one line per fold and epoch, not two
    folds = [(r["fold"], r["epoch"]) for r in rows if r["fold"] != "all"]
    assert folds == [("0", 1), ("0", 2), ("1", 1), ("1", 2)]
    final = [r["epoch"] for r in rows if r["fold"] == "all"]
    assert final == list(range(1, len(final) + 1))
    assert final
    predictions = (run / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 12
    assert (run / "model.safetensors").is_file()
    assert not (run / "checkpoint").exists()
