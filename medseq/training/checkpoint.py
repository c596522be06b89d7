"""Per-epoch training checkpoints for ``--resume``: safetensors for tensors, JSON for the rest.

A checkpoint holds the model, the best weights so far, the AdamW moments (tensors in safetensors,
hyper-parameters in JSON), the scheduler position, the early-stopping state and the fold's
metric history. Random draws are re-seeded from (seed, fold, epoch) at each epoch, so no RNG
state has to travel: a resumed run repeats exactly what an unbroken run does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from medseq.errors import CacheError
from medseq.io.atomic import atomic_path, write_text_atomic

CHECKPOINT_DIR = "checkpoint"


def save_checkpoint(
    run_dir: Path,
    *,
    model_state: dict[str, torch.Tensor],
    best_state: dict[str, torch.Tensor] | None,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    info: dict[str, Any],
) -> None:
    """Write ``run_dir/checkpoint/state.{safetensors,json}`` (tensors first, JSON last)."""
    from safetensors.torch import save_file

    folder = Path(run_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, value in model_state.items():
        tensors[f"model.{name}"] = value
    for name, value in (best_state or {}).items():
        tensors[f"best.{name}"] = value
    optim = optimiser.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in optim["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(folder / "state.safetensors") as tmp:
        save_file(tensors, str(tmp))
    document = {
        **info,
        "optimiser": {"param_groups": optim["param_groups"], "scalars": scalars},
        "scheduler": {k: v for k, v in scheduler.state_dict().items() if _jsonable(v)},
        "has_best": best_state is not None,
    }
    write_text_atomic(folder / "state.json", json.dumps(document, indent=1) + "\n")


def load_checkpoint(run_dir: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """(info JSON, tensors) of the last checkpoint, or None when there is none."""
    from safetensors.torch import load_file

    folder = Path(run_dir) / CHECKPOINT_DIR
    if not (folder / "state.json").is_file():
        return None
    try:
        info = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        tensors = dict(load_file(str(folder / "state.safetensors")))
    except Exception as err:
        raise CacheError(f"unreadable checkpoint ({err}); delete it to restart the fold",
                         path=folder) from None
    return info, tensors


def restore_optimiser(
    optimiser: torch.optim.Optimizer, info: dict[str, Any], tensors: dict[str, torch.Tensor],
    device: torch.device,
) -> None:
    """Load the AdamW state written by :func:`save_checkpoint`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, param_id, key = name.split(".", 2)
            # Adam keeps ``step`` on the CPU unless fused/capturable; moments on the device.
            state.setdefault(int(param_id), {})[key] = value if key == "step" else value.to(device)
    for param_id, entries in info["optimiser"]["scalars"].items():
        state.setdefault(int(param_id), {}).update(entries)
    groups = info["optimiser"]["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimiser.load_state_dict({"state": state, "param_groups": groups})


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix.`` with the prefix removed."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def clear_checkpoint(run_dir: Path) -> None:
    """Remove the checkpoint once its fold is finished and saved."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    for name in ("state.json", "state.safetensors"):
        (folder / name).unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True
