"""Per-epoch training checkpoints for ``--resume``: safetensors for tensors, JSON for the rest.

A checkpoint holds the model, the best weights so far, the AdamW moments (tensors in safetensors,
hyper-parameters in JSON), the scheduler position, the early-stopping state and the fold's
metric history. Random draws are re-seeded from (seed, fold, epoch) at each epoch, so no RNG
state has to travel: a resumed run repeats exactly what an unbroken run does.

Commit protocol: the tensors go to a new file named by their hash
(``tensors-<sha256 prefix>.safetensors``), then ``state.json`` -- which names that file and its
SHA-256 -- replaces the previous one, and only then is the previous tensors file deleted. So
``state.json`` is the commit record: a kill at any point leaves the last whole epoch (the file it
names is still there) plus perhaps an uncommitted tensors file, which is ignored and removed. A
tensors file that does not match its record (damaged, or put there by hand) is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from medseq.errors import CacheError
from medseq.io.atomic import is_abandoned_temporary, write_bytes_atomic, write_text_atomic

CHECKPOINT_DIR = "checkpoint"
STATE_NAME = "state.json"
TENSORS_SUFFIX = ".safetensors"


def save_checkpoint(
    run_dir: Path,
    *,
    model_state: dict[str, torch.Tensor],
    best_state: dict[str, torch.Tensor] | None,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    info: dict[str, Any],
) -> None:
    """Commit ``run_dir/checkpoint/`` atomically: tensors file first, ``state.json`` last."""
    from safetensors.torch import save

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
    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    digest = hashlib.sha256(data).hexdigest()
    tensors_name = f"tensors-{digest[:16]}{TENSORS_SUFFIX}"
    write_bytes_atomic(folder / tensors_name, data)
    _sync_folder(folder)  # the tensors file's name is on disk before the record naming it
    document = {
        **info,
        "optimiser": {"param_groups": optim["param_groups"], "scalars": scalars},
        "scheduler": {k: v for k, v in scheduler.state_dict().items() if _jsonable(v)},
        "has_best": best_state is not None,
        "tensors": {"file": tensors_name, "sha256": f"sha256:{digest}", "bytes": len(data)},
    }
    write_text_atomic(folder / STATE_NAME, json.dumps(document, indent=1) + "\n")
    _sync_folder(folder)
    _remove_uncommitted(folder, keep=tensors_name)


def load_checkpoint(run_dir: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """(info JSON, tensors) of the last committed checkpoint, or None when there is none.

    Raises:
        CacheError: the checkpoint is unreadable, has no commit record (an older medseq's), or
            its tensors do not match the record; the message says to delete it.
    """
    from safetensors.torch import load

    folder = Path(run_dir) / CHECKPOINT_DIR
    state = folder / STATE_NAME
    if not state.is_file():
        return None
    restart = f"delete {folder} to restart the fold from its first epoch"
    try:
        info = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CacheError(f"unreadable checkpoint ({err}); {restart}", path=state) from None
    record = info.get("tensors") if isinstance(info, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("file"), str) \
            or "/" in record["file"] or not isinstance(record.get("sha256"), str):
        raise CacheError(f"checkpoint without a commit record (an older medseq, or a torn "
                         f"write); {restart}", path=state)
    tensors_path = folder / record["file"]
    try:
        data = tensors_path.read_bytes()
    except OSError as err:
        raise CacheError(f"torn checkpoint: {record['file']} named by {STATE_NAME} cannot be "
                         f"read ({err.strerror}); {restart}", path=folder) from None
    if "sha256:" + hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise CacheError(f"torn checkpoint: {record['file']} does not match the SHA-256 in "
                         f"{STATE_NAME}; {restart}", path=folder)
    try:
        tensors = dict(load(data))
    except Exception as err:
        raise CacheError(f"unreadable checkpoint ({err}); {restart}",
                         path=tensors_path) from None
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
    """Remove the checkpoint once its fold is finished and saved (the record first)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return
    (folder / STATE_NAME).unlink(missing_ok=True)
    _remove_uncommitted(folder, keep=None)
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when empty


def _remove_uncommitted(folder: Path, *, keep: str | None) -> None:
    """Delete tensors files other than ``keep`` and temporary files (the run folder is locked
    by this process, so nobody else writes here)."""
    for path in folder.iterdir():
        name = path.name
        if (name.endswith(TENSORS_SUFFIX) and not name.startswith(".") and name != keep) \
                or is_abandoned_temporary(name, sole_writer=True):
            path.unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so the renames in it survive a power loss (best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True
