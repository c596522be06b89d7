"""Shards of ``predict --all -o FILE``: ``--shard K/N`` writes ``FILE.shards/K-of-N.jsonl``
(its JSON lines) and ``K-of-N.json`` (its plan: settings, the cohort's ids and its own);
``predict --merge FILE`` joins them into ``FILE``, line for line what one process writes.

A shard takes the patients at positions K-1, K-1+N, ... of the cohort's pseudonym order, so the
merge interleaves the shards' lines back into that order. No file lock is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medseq.errors import CacheError
from medseq.io.atomic import write_text_atomic

SHOWN = 10


def shard_dir(output: Path) -> Path:
    return Path(output).with_name(Path(output).name + ".shards")


def _plan_path(output: Path, shard: tuple[int, int]) -> Path:
    return shard_dir(output) / f"{shard[0]}-of-{shard[1]}.json"


def _lines_path(output: Path, shard: tuple[int, int]) -> Path:
    return shard_dir(output) / f"{shard[0]}-of-{shard[1]}.jsonl"


def start_shard(output: Path, shard: tuple[int, int], *, settings: dict[str, Any],
                cohort: list[str], patients: list[str]) -> None:
    """Write the shard's plan (unfinished); files of another split (other N) are dropped."""
    folder = shard_dir(output)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("[!.]*-of-*.json*"):
        if f"-of-{shard[1]}." not in old.name:
            old.unlink(missing_ok=True)
    _lines_path(output, shard).unlink(missing_ok=True)
    _write_plan(output, shard, {"shard": list(shard), "settings": settings, "cohort": cohort,
                                "patients": patients, "finished": False})


def finish_shard(output: Path, shard: tuple[int, int], text: str) -> Path:
    """Write the shard's JSON lines, then mark its plan finished."""
    path = _lines_path(output, shard)
    write_text_atomic(path, text)
    plan = json.loads(_plan_path(output, shard).read_text(encoding="utf-8"))
    plan["finished"] = True
    _write_plan(output, shard, plan)
    return path


def merge_lines(output: Path) -> tuple[str, int]:
    """The merged JSON lines of ``output``'s shards and how many shards (nothing written).

    Raises:
        CacheError: no shards, shards of different settings (named), shards not finished
            (named, with their patients). Exit code 2.
    """
    folder = shard_dir(output)
    plans = []
    for path in sorted(folder.glob("[!.]*-of-*.json")):
        try:
            plan = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CacheError(f"unreadable shard plan ({err})", path=path) from None
        if not isinstance(plan, dict) or not {"shard", "settings", "cohort"} <= plan.keys():
            raise CacheError("not a medseq shard plan (shard, settings, cohort)", path=path)
        plans.append(plan)
    if not plans:
        raise CacheError(f"no shards in {folder.name}/: run predict --all --shard K/N -o "
                         f"{output} first", path=output)
    groups: dict[str, list[str]] = {}
    for plan in plans:
        key = json.dumps([plan["settings"], plan["cohort"], plan["shard"][1]], sort_keys=True)
        groups.setdefault(key, []).append(f"{plan['shard'][0]}/{plan['shard'][1]}")
    if len(groups) > 1:
        named = "; ".join(", ".join(names) for names in groups.values())
        raise CacheError(f"shards were made with different settings (model, input or "
                         f"options: {named}); rerun them with one configuration", path=output)
    n = plans[0]["shard"][1]
    finished = {p["shard"][0]: p for p in plans if p.get("finished")}
    if len(finished) != n:
        unfinished = [k for k in range(1, n + 1) if k not in finished]
        cohort = plans[0]["cohort"]
        missing = [pid for i, pid in enumerate(cohort) if i % n + 1 in unfinished]
        named = ", ".join(missing[:SHOWN]) + (f" and {len(missing) - SHOWN} more"
                                              if len(missing) > SHOWN else "")
        shards = ", ".join(f"{k}/{n}" for k in unfinished)
        raise CacheError(f"cannot merge: shards not finished: {shards}; missing patients: "
                         f"{named or 'none'}; rerun those shards, then merge again", path=output)
    parts = []
    for k in range(1, n + 1):
        path = _lines_path(output, (k, n))
        try:
            parts.append(path.read_text(encoding="utf-8").splitlines(keepends=True))
        except OSError as err:
            raise CacheError(f"cannot read shard lines ({err.strerror})", path=path) from None
        expected = len(range(k - 1, len(plans[0]["cohort"]), n))
        if len(parts[-1]) != expected:
            raise CacheError(f"{len(parts[-1])} lines where shard {k}/{n} planned {expected} "
                             "patients; rerun that shard, then merge again", path=path)
    merged = [parts[i % n][i // n] for i in range(sum(len(p) for p in parts))]
    return "".join(merged), n


def _write_plan(output: Path, shard: tuple[int, int], plan: dict[str, Any]) -> None:
    write_text_atomic(_plan_path(output, shard), json.dumps(plan, indent=2) + "\n")


__all__ = ["finish_shard", "merge_lines", "shard_dir", "start_shard"]
