"""Training speed: patients/s per step, and whether the data loader keeps up with the model.

Run from the repository root::

    python benchmarks/train.py                      # CPU, a generated 32^3 fake cache
    python benchmarks/train.py --cache CACHE        # a real medseq preprocess cache
    python benchmarks/train.py --device cuda        # GPU with bf16 autocast, peak memory

It prints (1) patients/s of a training step (forward, backward, AdamW) on batches already in
memory, in fp32 and in bf16 autocast, and (2) the ratio of an epoch's time on tensors already in
memory to the same epoch through the real loader (mmap'd crops, augmentation, padding):
1.0 means the loader costs nothing; the target is >= 0.9. Runs are interleaved and the median
of ``--repeats`` is reported, because this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medseq.contracts.cache import read_manifest  # noqa: E402
from medseq.models.sequence import ResponseModel  # noqa: E402
from medseq.training.config import TrainConfig, model_inputs  # noqa: E402
from medseq.training.dataset import CacheDataset, collate  # noqa: E402
from medseq.training.loop import compute_loss  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="preprocess cache (default: a fake one)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--patients", type=int, default=24, help="fake cache size")
    parser.add_argument("--crop", type=int, default=32, help="fake cache crop size")
    parser.add_argument("--limit", type=int, default=24, help="patients used from --cache")
    parser.add_argument("--input-size", type=int, default=None,
                        help="resize crops to this edge (the input_size setting)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--encoder", default="small", choices=["small", "resnet10", "resnet18"])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or _fake_cache(Path(tmp), args.patients, args.crop)
        manifest = read_manifest(cache)
        records = [r for r in manifest.ok_patients() if r.crops][: args.limit]
        labels = {r.patient_id: int(r.label or 0) for r in records}
        config = TrainConfig.model_validate({"model": {"encoder": args.encoder},
                                             "batch_size": args.batch_size,
                                             "input_size": args.input_size})
        device = torch.device(args.device)
        dataset = CacheDataset(cache, records, labels, augment=config.augment, seed=0,
                               inputs=model_inputs(config, None))
        loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False,
                            collate_fn=collate, num_workers=args.workers)
        in_memory = list(loader)
        results: dict[str, object] = {
            "device": _device_name(device), "threads": torch.get_num_threads(),
            "patients": len(records), "batch_size": args.batch_size, "encoder": args.encoder,
            "crop_shape": list(in_memory[0]["crops"].shape[3:]),
            "mean_timepoints": statistics.mean(len(r.timepoints) for r in records),
            "mean_lesions": statistics.mean(len(r.targets) for r in records),
        }
        variants = [("fp32", False, False), ("bf16+channels_last", True, True)]
        if device.type == "cpu":
            variants.insert(1, ("fp32+channels_last", False, True))
        step_times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        epoch_memory: list[float] = []
        epoch_loader: list[float] = []
        models = {name: _model(config, device, cl) for name, _, cl in variants}
        optimisers = {name: torch.optim.AdamW(m.parameters(), lr=1e-3)
                      for name, m in models.items()}
        for name, bf16, _ in variants:  # warm-up
            _steps(models[name], optimisers[name], in_memory[:1], config, device, bf16)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.repeats):
            for name, bf16, _ in variants:
                batches = (in_memory * args.steps)[: args.steps]
                seconds = _steps(models[name], optimisers[name], batches, config, device, bf16)
                patients = sum(int(b["label"].shape[0]) for b in batches)
                step_times[name].append(patients / seconds)
            best = variants[-1][0] if device.type == "cuda" else "fp32+channels_last"
            bf16 = device.type == "cuda"
            epoch_memory.append(_steps(models[best], optimisers[best], in_memory, config,
                                       device, bf16))
            dataset.set_epoch(len(epoch_loader) + 1)
            epoch_loader.append(_steps(models[best], optimisers[best], loader, config, device,
                                       bf16))
        results["patients_per_s"] = {k: round(statistics.median(v), 2)
                                     for k, v in step_times.items()}
        results["epoch_seconds_in_memory"] = round(statistics.median(epoch_memory), 3)
        results["epoch_seconds_loader"] = round(statistics.median(epoch_loader), 3)
        results["loader_ratio"] = round(
            statistics.median(m / lo for m, lo in zip(epoch_memory, epoch_loader, strict=True)), 3
        )
        results["loader_workers"] = args.workers
        if device.type == "cuda":
            results["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30,
                                                   2)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for key, value in results.items():
        print(f"{key:26s} {value}")
    print(f"{'target':26s} loader_ratio >= 0.9 "
          f"({'met' if float(results['loader_ratio']) >= 0.9 else 'NOT met'})")  # type: ignore[arg-type]


def _model(config: TrainConfig, device: torch.device, channels_last: bool) -> ResponseModel:
    torch.manual_seed(0)
    model = ResponseModel(config.model).to(device)
    if channels_last:
        model.use_channels_last()
    return model.train()


def _steps(model: ResponseModel, optimiser: torch.optim.Optimizer, batches: object,
           config: TrainConfig, device: torch.device, bf16: bool) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    for batch in batches:  # type: ignore[attr-defined]
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(batch["crops"], batch["lesion_mask"], batch["lengths"], batch["days"],
                        batch["days_since_previous"], batch["lesion_features"],
                        batch["scan_features"])
            loss = compute_loss(out, batch, None, config)
        loss.backward()
        optimiser.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - began


def _fake_cache(root: Path, patients: int, crop: int) -> Path:
    from tests.training.fake_cache import write_fake_cache

    return write_fake_cache(root / "cache", n_patients=patients, size=crop, max_timepoints=4,
                            max_lesions=3)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


if __name__ == "__main__":
    main()
