"""Benchmark: wall time of ``medseq predict`` for one 3-scan medium patient in a cold process.

Generates one synthetic patient (192x192x96, 3 scans, NIfTI layout with masks) and a run
directory holding an untrained model with the default architecture (inference costs the same
trained or not), then runs, interleaved, ``python -m medseq predict PATIENT --model RUN --json``
and the reference ``python -c "import torch"`` (each a new interpreter, page cache warm).
Prints the median wall time, the ratio to the reference, and the shares of the predict time:

- imports and start-up: wall time minus the stages ``predict`` times itself;
- loading: discovery and reading the images and masks;
- registration: rigid registration of the follow-ups (SimpleITK);
- resampling and writing the temporary cache, tracking;
- model: loading the weights and the forward pass.

Usage:
    python benchmarks/predict.py [--runs 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_inputs(root: Path) -> tuple[Path, Path]:
    """One medium 3-scan NIfTI patient and a run directory with an untrained default model."""
    import torch

    from medseq.contracts.run import ModelCard, ModelConfig, ModelInputs
    from medseq.data.synthetic.cohort import generate_cohort
    from medseq.models.io import save_model
    from medseq.models.sequence import ResponseModel
    from medseq.preprocess.config import PreprocessConfig

    data = generate_cohort(root / "data", patients=1, timepoints=(3, 3), fmt="nifti",
                           size="medium", seed=7, lesions=(2, 3))
    patient = next(p for p in (data / "nifti").iterdir() if p.is_dir())
    torch.manual_seed(0)
    config = ModelConfig()
    model = ResponseModel(config)
    card = ModelCard(architecture=config, label_names=config.label_names,
                     inputs=ModelInputs(crop_shape=[2, 32, 32, 32]),
                     preprocess_config=PreprocessConfig().model_dump(mode="json"))
    run = root / "run"
    save_model(run, model.state_dict(), card)
    (run / "salt.key").write_text("ab" * 32 + "\n")
    return patient, run


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None, help="write the inputs here")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="medseq-bench-predict-"))
    root.mkdir(parents=True, exist_ok=True)
    patient, run = make_inputs(root)
    predict = [sys.executable, "-m", "medseq", "predict", str(patient), "--model", str(run),
               "--json"]
    reference = [sys.executable, "-c", "import torch"]
    timed(predict)  # warm the page cache
    timed(reference)
    walls: list[float] = []
    refs: list[float] = []
    stages: list[dict[str, float]] = []
    for _ in range(args.runs):
        wall, out = timed(predict)
        walls.append(wall)
        stages.append(json.loads(out)["timings_s"])
        refs.append(timed(reference)[0])
    wall = statistics.median(walls)
    ref = statistics.median(refs)

    def median(key: str) -> float:
        return statistics.median(s.get(key, 0.0) for s in stages)

    loading = median("discover") + median("preprocess.read")
    registration = median("preprocess.register")
    other_pre = median("preprocess") - median("preprocess.read") - registration
    tracking = median("track")
    model = median("model_load") + median("model")
    timed_total = median("discover") + median("preprocess") + tracking + model
    imports = max(wall - timed_total, 0.0)
    print(f"medseq predict, one 3-scan medium patient (192x192x96), {args.runs} cold runs")
    print(f"  wall time (median)          {wall:7.2f} s")
    print(f"  reference `import torch`    {ref:7.2f} s   ratio {wall / ref:5.1f}x")
    for name, seconds in (("imports and start-up", imports), ("loading", loading),
                          ("registration", registration),
                          ("resample, crops, temp cache", other_pre), ("tracking", tracking),
                          ("model (load + forward)", model)):
        print(f"  {name:28s}{seconds:7.2f} s   {100 * seconds / wall:5.1f}%")
    print(f"  inputs in {root}")


if __name__ == "__main__":
    main()
